"""Socket factory: every bus socket is made here, with bounded, safe options.

- LINGER is bounded, so closing never hangs on a dead peer;
- send timeouts, so a full or absent peer raises instead of blocking forever;
- IMMEDIATE on connecting sockets, so messages are not queued for peers that are not there;
- MAXMSGSIZE (the message limit and a small margin), so no larger frame reaches memory;
- a receive high-water mark on request sockets (ROUTER, REP) sized from a byte budget
  (``receive_budget_bytes`` ÷ ``max_message_bytes`` messages, per connected peer);
- ipc socket files are created 0660 (0600 for owner-only sockets such as the admin control
  sockets), and guarded by a lock file: a second live server is
  refused, a stale file left by a dead one is taken over;
- tcp endpoints are served with CURVE and an allow-list of client keys (bus/auth.py);
  plain tcp only on loopback and only when ``allow_plain_loopback`` says so.

It also holds the two ways a loop waiting in ``zmq.Poller.poll`` without a timeout is woken
from another thread or a signal handler: :class:`Waker` and :class:`WakeEvent`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq

from bus import auth
from bus.endpoints import ipc_path, is_loopback_tcp
from bus.errors import BusError, EndpointInUse
from bus.threads import current_service

#: default size limit of one bus message (ZMQ_MAXMSGSIZE); config key bus.max_message_bytes
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: how long close() may wait to flush pending messages
DEFAULT_LINGER_MS = 1000
#: how long a send may block before it raises
DEFAULT_SEND_TIMEOUT_MS = 5000
#: high-water mark (messages) in each direction
DEFAULT_HWM = 1000
#: bytes of messages a receiving socket may hold per peer (config bus.receive_budget_bytes)
DEFAULT_RECEIVE_BUDGET_BYTES = 64 * 1024 * 1024
#: how far over max_message_bytes a frame may be and still reach the service, which
#: rejects it with the reason "too_large" (counted, and answered on the ingest path);
#: anything larger is dropped by libzmq with the sender's connection, never read whole
OVERSIZE_MARGIN = 64 * 1024
#: socket types whose RCVHWM comes from the byte budget: those whose clients wait for an
#: answer (ingest, control). Not PULL: when a PUSH peer closes right after sending (a
#: collector script's `with Publisher(): ...`), libzmq drops what its connection held
#: beyond the receiver's RCVHWM — with 16, 220 of 300 small events were lost (measured).
#: A PULL socket keeps ``hwm``; the forwarder reads it as fast as it commits.
RECEIVING = frozenset({zmq.ROUTER, zmq.REP})
#: longest ipc path libzmq accepts (sun_path is 108 bytes including the NUL)
MAX_IPC_PATH = 107
#: mode of ipc socket files: owner and group may connect, nobody else
IPC_MODE = 0o660
#: mode of owner-only ipc socket files (the admin control sockets)
OWNER_ONLY_MODE = 0o600


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketOptions:
    """Options applied to every bus socket; built from the ``[bus]`` config section."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    linger_ms: int = DEFAULT_LINGER_MS
    send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS
    hwm: int = DEFAULT_HWM
    #: bytes a receiving socket may hold per peer; its RCVHWM is this ÷ max_message_bytes
    receive_budget_bytes: int = DEFAULT_RECEIVE_BUDGET_BYTES
    #: z85 CURVE key pair of this process: a server's key (required for tcp endpoints); the
    #: agent's own services also connect with it, and it is always admitted
    curve_secret_key: bytes | None = None
    curve_public_key: bytes | None = None
    #: z85 public key of the server a client connects to (default: curve_public_key)
    curve_server_key: bytes | None = None
    #: directory of the admitted client public keys (bus/auth.py)
    curve_clients_dir: str = ""
    #: serve tcp on loopback without CURVE (any local user then reaches the endpoint)
    allow_plain_loopback: bool = False

    @property
    def receive_hwm(self) -> int:
        """RCVHWM of a receiving socket: the byte budget in messages, at least 1, at most
        ``hwm`` (libzmq counts messages, not bytes)."""
        budget = max(1, self.receive_budget_bytes // max(1, self.max_message_bytes))
        return min(self.hwm, budget)


def make_socket(ctx: zmq.Context, kind: int, opts: SocketOptions | None = None) -> zmq.Socket:
    """A new socket of ``kind`` with the safe options applied."""
    opts = opts or SocketOptions()
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, opts.linger_ms)
    sock.setsockopt(zmq.SNDTIMEO, opts.send_timeout_ms)
    sock.setsockopt(zmq.SNDHWM, opts.hwm)
    # What one client can make a receiving socket hold is RCVHWM × MAXMSGSIZE: bounded by
    # the byte budget instead of hwm × 4 MiB.
    sock.setsockopt(zmq.RCVHWM, opts.receive_hwm if kind in RECEIVING else opts.hwm)
    # libzmq drops the connection of a peer that sends more than MAXMSGSIZE, without a
    # word. A small margin over the limit lets a frame a little too big reach the service,
    # which rejects it with the reason "too_large"; nothing larger reaches memory.
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes(opts))
    return sock


def max_frame_bytes(opts: SocketOptions) -> int:
    """The ZMQ_MAXMSGSIZE of every bus socket: the message limit and a small margin."""
    return opts.max_message_bytes + min(OVERSIZE_MARGIN, opts.max_message_bytes)


class Binding:
    """A server socket bound to its endpoint; holds the endpoint's lock until closed."""

    def __init__(
        self,
        sock: zmq.Socket,
        endpoint: str,
        lock_fd: int | None,
        zap: auth.ZapHandler | None = None,
        zap_domain: str = "",
    ) -> None:
        self.sock = sock
        self.endpoint = endpoint
        self._lock_fd = lock_fd
        #: the context's ZAP handler while this socket is a CURVE server, and its domain
        self.zap = zap
        self.zap_domain = zap_domain

    def refused(self) -> int:
        """Clients refused by the allow-list on this endpoint so far."""
        return self.zap.refused.get(self.zap_domain, 0) if self.zap is not None else 0

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket, remove its ipc file and release the lock.

        The lock file stays: removing it could let two processes lock two different files.
        """
        if not self.sock.closed:
            self.sock.close(linger=linger_ms)
        if self.zap is not None:
            auth.release(self.zap)
            self.zap = None
        if self._lock_fd is not None:
            path = ipc_path(self.endpoint)
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # ours: we still hold the lock
            os.close(self._lock_fd)
            self._lock_fd = None


def bind(
    sock: zmq.Socket, endpoint: str, opts: SocketOptions | None = None, *, mode: int = IPC_MODE
) -> Binding:
    """Bind ``sock`` to ``endpoint`` safely; raises EndpointInUse if a live process owns it.

    ``mode`` is the ipc socket file's (:data:`OWNER_ONLY_MODE` for an owner-only socket).
    On any failure the socket is closed (it is of no use unbound), so a caller that gives up
    leaves nothing behind that would hang ``Context.term()``.
    """
    try:
        return _bind(sock, endpoint, opts or SocketOptions(), mode)
    except BaseException:
        sock.close(linger=0)
        raise


def _bind(sock: zmq.Socket, endpoint: str, opts: SocketOptions, mode: int) -> Binding:
    path = ipc_path(endpoint)
    if path is None:
        zap, domain = _secure_tcp_server(sock, endpoint, opts)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            if zap is not None:
                auth.release(zap)
            if exc.errno == errno.EADDRINUSE:
                raise EndpointInUse(f"{endpoint} is already in use by another process") from None
            raise BusError(f"cannot bind {endpoint}: {exc}") from None
        except BaseException:
            if zap is not None:
                auth.release(zap)
            raise
        if zap is not None:  # port 0: the port it got
            zap.endpoints[domain] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return Binding(sock, endpoint, None, zap, domain)

    if len(str(path)) > MAX_IPC_PATH:
        raise BusError(
            f"ipc path {path} is longer than {MAX_IPC_PATH} characters; use a shorter run_dir"
        )
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        raise BusError(f"cannot create run directory {path.parent}: {exc.strerror}") from None
    lock_fd = _take_lock(path)
    try:
        # Holding the lock proves no live owner: a file still here is stale.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # No umask juggling here: the umask is the whole process's, and in one process a
        # thread creating a directory meanwhile would get this socket's mode. Until the
        # chmod the file has the process's umask (077 in every agentbus process) inside a
        # run dir closed to others, and the admin sockets also check the peer's uid.
        sock.bind(endpoint)
        os.chmod(path, mode)
    except zmq.ZMQError as exc:
        os.close(lock_fd)
        raise BusError(f"cannot bind {endpoint}: {exc}") from None
    except BaseException:
        os.close(lock_fd)
        raise
    return Binding(sock, endpoint, lock_fd)


def connect(sock: zmq.Socket, endpoint: str, opts: SocketOptions | None = None) -> None:
    """Connect a client socket; sets IMMEDIATE and the CURVE client keys where needed.

    For a tcp endpoint the client's keys are, in order: the options' key pair (the
    agent's own services: its bus key pair, which its servers always admit), else the
    files named by ``AGENTBUS_CURVE_SERVER_KEY`` / ``AGENTBUS_CURVE_CLIENT_KEY`` (a
    third-party client's own pair, admitted by the operator); else plain tcp.
    """
    opts = opts or SocketOptions()
    if sock.type in (zmq.PUSH, zmq.DEALER, zmq.REQ):
        sock.setsockopt(zmq.IMMEDIATE, 1)
    if endpoint.startswith("tcp://"):
        keys = _client_keys(opts)
        if keys is not None:
            sock.curve_serverkey = keys.server
            sock.curve_publickey = keys.own.public
            sock.curve_secretkey = keys.own.secret
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        raise BusError(f"cannot connect to {endpoint}: {exc}") from None


def _take_lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise EndpointInUse(
            f"ipc://{path} is already served by a live process (pid {owner}); stop it first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _client_keys(opts: SocketOptions) -> auth.ClientKeys | None:
    if opts.curve_secret_key and opts.curve_public_key:
        server = opts.curve_server_key or opts.curve_public_key
        return auth.ClientKeys(server, auth.KeyPair(opts.curve_public_key, opts.curve_secret_key))
    return auth.client_keys_from_env()


_plain_warned: set[str] = set()


def _secure_tcp_server(
    sock: zmq.Socket, endpoint: str, opts: SocketOptions
) -> tuple[auth.ZapHandler | None, str]:
    """CURVE and the allow-list for a tcp server socket; the ZAP handler it holds and its
    ZAP domain (None and "" for plain tcp)."""
    if not opts.curve_secret_key:
        if not is_loopback_tcp(endpoint):
            raise BusError(
                f"{endpoint} is reachable from other hosts: set bus.curve_secret_key_file "
                "(and admit each client's public key in bus.curve_clients_dir)"
            )
        if not opts.allow_plain_loopback:
            raise BusError(
                f"{endpoint} without CURVE lets every local user reach the bus: set "
                "bus.curve_secret_key_file (and admit clients in bus.curve_clients_dir), "
                "or bus.allow_plain_loopback = true"
            )
        if endpoint not in _plain_warned:
            _plain_warned.add(endpoint)
            auth.log.warning(
                "bus: %s serves plain tcp (bus.allow_plain_loopback): any local user can "
                "send and read on it",
                endpoint,
            )
        return None, ""
    public = opts.curve_public_key or zmq.curve_public(opts.curve_secret_key)
    allow = auth.AllowList(opts.curve_clients_dir, frozenset({public}))
    allow.load()
    zap = auth.acquire(sock.context, allow)
    # a domain of its own: refusals are counted per endpoint, for the service that bound it
    domain = zap.register(endpoint, current_service())
    sock.zap_domain = domain.encode()
    sock.curve_server = True
    sock.curve_secretkey = opts.curve_secret_key
    return zap, domain


class Waker:
    """A file descriptor a ``zmq.Poller`` waits on next to sockets; readable once woken.

    :meth:`wake` may be called from any thread and from a signal handler (one ``write``).
    The waiting thread calls :meth:`drain` when the fd is readable, *before* it looks at
    what changed, so a wake-up that comes meanwhile is never lost.
    """

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):  # Linux: one fd
            self._rfd = self._wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self._rfd, self._wfd = os.pipe()
            os.set_blocking(self._rfd, False)
            os.set_blocking(self._wfd, False)
        # re-entrant: a signal handler may wake() in the thread that is in close()
        self._lock = threading.RLock()

    def fileno(self) -> int:
        return self._rfd

    def wake(self) -> None:
        with self._lock:
            if self._wfd < 0:
                return  # closed: nobody waits any more
            try:
                os.write(self._wfd, b"\x01\0\0\0\0\0\0\0")  # an eventfd takes 8 bytes
            except BlockingIOError:
                pass  # full: readable anyway

    def drain(self) -> None:
        with self._lock:
            if self._rfd < 0:
                return
            try:
                while os.read(self._rfd, 4096):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        with self._lock:
            for fd in {self._rfd, self._wfd}:
                if fd >= 0:
                    os.close(fd)
            self._rfd = self._wfd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class WakeEvent(threading.Event):
    """A ``threading.Event`` whose :meth:`fileno` is readable while it is set.

    Register it in a ``zmq.Poller`` next to the sockets and wait without a timeout: a
    :meth:`set` from any thread or a signal handler wakes the poll (pyzmq retries a poll
    interrupted by a signal after the handler ran, so a plain Event would not). Nobody
    drains it: every poller sees it readable until :meth:`clear`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._waker = Waker()
        self._flag_lock = threading.RLock()

    def fileno(self) -> int:
        return self._waker.fileno()

    def set(self) -> None:
        with self._flag_lock:
            super().set()
            self._waker.wake()

    def clear(self) -> None:
        with self._flag_lock:
            super().clear()
            self._waker.drain()
            if self.is_set():  # set by a signal handler in this very thread meanwhile
                self._waker.wake()

    def close(self) -> None:
        """Release the fd; set() still works (as a plain Event) afterwards."""
        self._waker.close()


def poll_ms(seconds: float | None) -> int | None:
    """A ``zmq.Poller.poll`` timeout from seconds: None (no timeout) stays None, and a
    positive wait is rounded up, so a deadline is not woken for 1 ms early (and again)."""
    if seconds is None:
        return None
    return max(0, math.ceil(seconds * 1000))
