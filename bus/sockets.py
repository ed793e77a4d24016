"""Socket factory: every bus socket is made here, with bounded, safe options.

- LINGER is bounded, so closing never hangs on a dead peer;
- send timeouts, so a full or absent peer raises instead of blocking forever;
- IMMEDIATE on connecting sockets, so messages are not queued for peers that are not there;
- MAXMSGSIZE (twice the message limit), so a hugely oversized frame is dropped by libzmq;
- ipc socket files are created 0660 under a restrictive umask, and guarded by a lock file:
  a second live server is refused, a stale file left by a dead one is taken over.

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

from bus.endpoints import ipc_path, is_loopback_tcp
from bus.errors import BusError, EndpointInUse

#: default size limit of one bus message (ZMQ_MAXMSGSIZE); config key bus.max_message_bytes
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: how long close() may wait to flush pending messages
DEFAULT_LINGER_MS = 1000
#: how long a send may block before it raises
DEFAULT_SEND_TIMEOUT_MS = 5000
#: high-water mark (messages) in each direction
DEFAULT_HWM = 1000
#: longest ipc path libzmq accepts (sun_path is 108 bytes including the NUL)
MAX_IPC_PATH = 107
#: mode of ipc socket files: owner and group may connect, nobody else
IPC_MODE = 0o660

_umask_lock = threading.Lock()


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketOptions:
    """Options applied to every bus socket; built from the ``[bus]`` config section."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    linger_ms: int = DEFAULT_LINGER_MS
    send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS
    hwm: int = DEFAULT_HWM
    #: z85 CURVE secret key of this host's bus (servers); required for non-loopback tcp
    curve_secret_key: bytes | None = None
    #: z85 CURVE public key of the bus (clients connect with it)
    curve_public_key: bytes | None = None


def make_socket(ctx: zmq.Context, kind: int, opts: SocketOptions | None = None) -> zmq.Socket:
    """A new socket of ``kind`` with the safe options applied."""
    opts = opts or SocketOptions()
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, opts.linger_ms)
    sock.setsockopt(zmq.SNDTIMEO, opts.send_timeout_ms)
    sock.setsockopt(zmq.SNDHWM, opts.hwm)
    sock.setsockopt(zmq.RCVHWM, opts.hwm)
    # libzmq drops the connection of a peer that sends more than MAXMSGSIZE, without a word.
    # Set it at twice the limit so a frame a little too big reaches the service, which
    # rejects it with the reason "too_large"; far bigger frames never reach memory.
    sock.setsockopt(zmq.MAXMSGSIZE, 2 * opts.max_message_bytes)
    return sock


class Binding:
    """A server socket bound to its endpoint; holds the endpoint's lock until closed."""

    def __init__(self, sock: zmq.Socket, endpoint: str, lock_fd: int | None) -> None:
        self.sock = sock
        self.endpoint = endpoint
        self._lock_fd = lock_fd

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket, remove its ipc file and release the lock.

        The lock file stays: removing it could let two processes lock two different files.
        """
        if not self.sock.closed:
            self.sock.close(linger=linger_ms)
        if self._lock_fd is not None:
            path = ipc_path(self.endpoint)
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # ours: we still hold the lock
            os.close(self._lock_fd)
            self._lock_fd = None


def bind(sock: zmq.Socket, endpoint: str, opts: SocketOptions | None = None) -> Binding:
    """Bind ``sock`` to ``endpoint`` safely; raises EndpointInUse if a live process owns it.

    On any failure the socket is closed (it is of no use unbound), so a caller that gives up
    leaves nothing behind that would hang ``Context.term()``.
    """
    try:
        return _bind(sock, endpoint, opts or SocketOptions())
    except BaseException:
        sock.close(linger=0)
        raise


def _bind(sock: zmq.Socket, endpoint: str, opts: SocketOptions) -> Binding:
    path = ipc_path(endpoint)
    if path is None:
        _secure_tcp_server(sock, endpoint, opts)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise EndpointInUse(f"{endpoint} is already in use by another process") from None
            raise BusError(f"cannot bind {endpoint}: {exc}") from None
        return Binding(sock, endpoint, None)

    if len(str(path)) > MAX_IPC_PATH:
        raise BusError(
            f"ipc path {path} is longer than {MAX_IPC_PATH} characters; use a shorter run_dir"
        )
    try:
        path.parent.mkdir(mode=0o770, parents=True, exist_ok=True)
    except OSError as exc:
        raise BusError(f"cannot create run directory {path.parent}: {exc.strerror}") from None
    lock_fd = _take_lock(path)
    try:
        # Holding the lock proves no live owner: a file still here is stale.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with _umask_lock:
            old = os.umask(0o117)
            try:
                sock.bind(endpoint)
            finally:
                os.umask(old)
        os.chmod(path, IPC_MODE)
    except zmq.ZMQError as exc:
        os.close(lock_fd)
        raise BusError(f"cannot bind {endpoint}: {exc}") from None
    except BaseException:
        os.close(lock_fd)
        raise
    return Binding(sock, endpoint, lock_fd)


def connect(sock: zmq.Socket, endpoint: str, opts: SocketOptions | None = None) -> None:
    """Connect a client socket; sets IMMEDIATE and the CURVE client keys where needed."""
    opts = opts or SocketOptions()
    if sock.type in (zmq.PUSH, zmq.DEALER, zmq.REQ):
        sock.setsockopt(zmq.IMMEDIATE, 1)
    if endpoint.startswith("tcp://") and opts.curve_public_key:
        public, secret = zmq.curve_keypair()
        sock.curve_serverkey = opts.curve_public_key
        sock.curve_publickey = public
        sock.curve_secretkey = secret
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


def _secure_tcp_server(sock: zmq.Socket, endpoint: str, opts: SocketOptions) -> None:
    if is_loopback_tcp(endpoint) and not opts.curve_secret_key:
        return
    if not opts.curve_secret_key:
        raise BusError(
            f"{endpoint} is reachable from other hosts: set bus.curve_secret_key_file "
            "(and give clients the public key) or bind to 127.0.0.1"
        )
    sock.curve_server = True
    sock.curve_secretkey = opts.curve_secret_key


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
