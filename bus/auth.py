"""Who may talk on a tcp bus endpoint: CURVE key files, the allow-list of client public
keys, and the ZAP handler that applies it.

A tcp endpoint is served with CURVE: the traffic is encrypted and every client proves that
it holds the secret key of its public key. CURVE alone admits *any* key, so each context
that serves a tcp endpoint also runs one :class:`ZapHandler` (libzmq's authentication
protocol, ZAP): a client whose public key is not in the allow-list is refused during the
handshake, before it can send a message. The allow-list is the agent's own public key
(the agent's services connect with the bus's own key pair) and the keys in
``[bus] curve_clients_dir``, read again when that directory changes (a key added or
removed is in force for the next connection; no restart).

Key files, as ``zmq.auth.create_certificates`` writes them or bare:

- a **public key** (``<name>.key`` in the clients dir): a zmq.auth certificate
  (``public-key = "<z85>"``) or the 40-character z85 key alone;
- a **key pair** (``bus.curve_secret_key_file``, a client's own key): a zmq.auth secret
  certificate (``public-key = ...`` and ``secret-key = ...``) or the two z85 keys, public
  then secret, separated by white space.

A secret key file must be readable by its owner only; the clients dir and its key files
must not be writable by anyone but their owner; the owner must be root or the user that
reads them. Anything else is refused (:class:`KeyFileError`): whoever could write there
could admit themselves.

Needs only pyzmq and the standard library (the SDK uses the client half). Logs through
the standard ``logging`` module (logger ``agentbus.bus``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.utils import z85

from bus.errors import EXIT_USAGE, BusError
from bus.threads import start_thread

log = logging.getLogger("agentbus.bus")

#: where libzmq sends its authentication requests (RFC 27), one handler per context
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
#: a client key file in the clients dir
CLIENT_KEY_SUFFIX = ".key"
#: SDK clients: the server's public key (a key file, or the z85 key itself)
ENV_SERVER_KEY = "AGENTBUS_CURVE_SERVER_KEY"
#: SDK clients: the client's own key pair file (0600)
ENV_CLIENT_KEY = "AGENTBUS_CURVE_CLIENT_KEY"
#: at most this many "refused" log lines per minute and endpoint
REFUSED_LOG_PER_MINUTE = 10

_CERT_KEY = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]*)"', re.MULTILINE)


class KeyFileError(BusError):
    """A CURVE key file or the clients dir is unreadable, malformed or too open."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A z85 CURVE key pair (40 ASCII bytes each)."""

    public: bytes
    secret: bytes


# -- key files --------------------------------------------------------------------------
def _z85_key(text: str, path: Path) -> bytes:
    key = text.strip().encode("ascii", errors="replace")
    try:
        if len(key) == 40 and len(z85.decode(key)) == 32:
            return key
    except Exception:  # z85.decode raises assorted errors on bad characters
        pass
    raise KeyFileError(f"{path}: not a z85 CURVE key (40 characters)")


def parse_keys(text: str, path: Path) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a key file's text, in either format."""
    found: dict[str, str] = {m.group(1): m.group(2) for m in _CERT_KEY.finditer(text)}
    if found:
        if "public" not in found:
            raise KeyFileError(f"{path}: a certificate without a public-key line")
        public = _z85_key(found["public"], path)
        secret = _z85_key(found["secret"], path) if found.get("secret") else None
        return public, secret
    words = text.split()
    if not 1 <= len(words) <= 2:
        raise KeyFileError(f"{path}: expected a z85 public key, or public and secret keys")
    return _z85_key(words[0], path), (_z85_key(words[1], path) if len(words) == 2 else None)


def _check_owner(st: os.stat_result, path: Path, what: str) -> None:
    if st.st_uid not in (0, os.geteuid()):
        raise KeyFileError(
            f"{what} {path} belongs to uid {st.st_uid}: it must belong to root or to the "
            "agent's user"
        )


def check_private(path: Path, what: str) -> os.stat_result:
    """Refuse a secret key file that anyone but its owner may read or write."""
    return _check_mode(path, what, 0o077, "others may read it; chmod 600 {path}")


def check_not_writable(path: Path, what: str) -> os.stat_result:
    """Refuse a file or directory of public keys that others may change."""
    return _check_mode(
        path, what, 0o022, "others may write it, and so admit their own key; chmod go-w {path}"
    )


def _check_mode(path: Path, what: str, forbidden: int, why: str) -> os.stat_result:
    try:
        st = path.stat()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    _check_owner(st, path, what)
    if st.st_mode & forbidden:
        mode = stat.S_IMODE(st.st_mode)
        raise KeyFileError(f"{what} {path} is mode {mode:04o}: {why.format(path=path)}")
    return st


def read_key_pair(path: str | Path, what: str = "key file") -> KeyPair:
    """A key pair from a file readable by its owner only."""
    path = Path(path)
    check_private(path, what)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc}") from None
    public, secret = parse_keys(text, path)
    if secret is None:
        raise KeyFileError(f"{what} {path} holds no secret key")
    return KeyPair(public, secret)


def read_public_key(path: str | Path) -> bytes:
    """The public key of a key file (a pair's secret half, if there, is ignored)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc}") from None
    return parse_keys(text, path)[0]


def load_clients_dir(directory: str | Path) -> dict[bytes, str]:
    """Every admitted client key of ``directory`` → the file it came from (strict)."""
    directory = Path(directory)
    check_not_writable(directory, "bus.curve_clients_dir")
    keys: dict[bytes, str] = {}
    for path in sorted(directory.glob("*" + CLIENT_KEY_SUFFIX)):
        check_not_writable(path, "client key file")
        keys[read_public_key(path)] = path.name
    return keys


# -- the allow-list ---------------------------------------------------------------------
class AllowList:
    """The client keys a CURVE server admits: ``always`` plus the clients dir's keys.

    :meth:`load` reads the dir strictly (a start refuses a bad one); afterwards
    :meth:`admits` reads it again whenever the dir changed (its mtime: adding, removing or
    renaming a key file changes it). A dir that became unsafe admits only ``always`` until
    it is fixed; a bad file is skipped; both are logged.
    """

    def __init__(self, clients_dir: str, always: frozenset[bytes] = frozenset()) -> None:
        self.clients_dir = clients_dir
        self.always = always
        self._keys: dict[bytes, str] = {}
        self._seen: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read the clients dir now; KeyFileError if it or a key file is unsafe or bad."""
        if not self.clients_dir:
            return
        st = Path(self.clients_dir).stat() if Path(self.clients_dir).exists() else None
        keys = load_clients_dir(self.clients_dir)
        with self._lock:
            self._keys = keys
            self._seen = (st.st_mtime_ns, st.st_ino) if st else None

    def admits(self, key: bytes) -> tuple[bool, str]:
        """Whether ``key`` (z85) is admitted, and the key file's name (or why not)."""
        if key in self.always:
            return True, "own key"
        self._refresh()
        name = self._keys.get(key)
        return (True, name) if name else (False, "key not in the allow-list")

    def _refresh(self) -> None:
        if not self.clients_dir:
            return
        with self._lock:
            try:
                st = os.stat(self.clients_dir)
            except OSError:
                st = None
            seen = (st.st_mtime_ns, st.st_ino) if st else None
            if seen == self._seen:
                return
            self._seen = seen
            try:
                self._keys = load_clients_dir(self.clients_dir)
            except KeyFileError as exc:
                self._keys = {}
                log.error("bus: client keys not read again, none admitted until fixed: %s", exc)
            else:
                log.info(
                    "bus: %d client key(s) admitted from %s", len(self._keys), self.clients_dir
                )


# -- the ZAP handler --------------------------------------------------------------------
class ZapHandler:
    """Answers libzmq's authentication requests for one context from its own thread.

    Every CURVE server socket of the context gets a ZAP domain of its own
    (:meth:`register`), so refusals are counted per endpoint (:attr:`refused`). Idle, the thread sleeps in one poll without
    a timeout: a handshake or :meth:`stop` wakes it.
    """

    def __init__(self, ctx: zmq.Context, allow: AllowList) -> None:
        self.ctx = ctx
        self.allow = allow
        #: handshakes refused, by ZAP domain
        self.refused: dict[str, int] = {}
        #: handshakes admitted, by ZAP domain
        self.admitted: dict[str, int] = {}
        #: each domain's endpoint (as bound: the real port) and the service that bound it
        #: (bus.threads mark; None: an unmarked thread)
        self.endpoints: dict[str, str] = {}
        self.owners: dict[str, str | None] = {}
        self._log_window: dict[str, tuple[float, int]] = {}
        self._sock = ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            self._sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self._sock.close(linger=0)
            raise BusError(f"cannot serve bus authentication: {exc}") from None
        self._stop = zmq.Socket(ctx, zmq.PAIR)  # an inproc pipe: stop() needs no fd
        self._stop_end = zmq.Socket(ctx, zmq.PAIR)
        pipe = f"inproc://agentbus-zap-stop-{id(self)}"
        self._stop.bind(pipe)
        self._stop_end.connect(pipe)
        self._thread = start_thread(self._serve, "bus-auth")

    def register(self, endpoint: str, owner: str | None) -> str:
        """A new ZAP domain for a server socket about to bind ``endpoint``."""
        with _handlers_lock:
            domain = f"agentbus-{next(_domains)}"
            self.endpoints[domain] = endpoint
            self.owners[domain] = owner
        return domain

    def alive(self) -> bool:
        return self._thread.is_alive() and not self.ctx.closed

    def stop(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._stop_end.send(b"", zmq.NOBLOCK)
        self._thread.join(timeout=2)
        self._stop_end.close(linger=0)

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._stop, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if self._stop in ready:
                    return
                frames = self._sock.recv_multipart()
                self._sock.send_multipart(self._answer(frames))
        except zmq.ZMQError:
            return  # the context is being terminated
        finally:
            self._sock.close(linger=0)
            self._stop.close(linger=0)

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        # RFC 27: version, request id, domain, address, identity, mechanism, credentials
        if len(frames) < 6:
            return [b"1.0", b"", b"500", b"bad ZAP request", b"", b""]
        version, request_id, domain_b, address_b, _identity, mechanism = frames[:6]
        domain = domain_b.decode(errors="replace")
        address = address_b.decode(errors="replace")
        if mechanism == b"CURVE" and len(frames) == 7 and len(frames[6]) == 32:
            ok, why = self.allow.admits(z85.encode(frames[6]))
        else:
            ok, why = False, f"{mechanism.decode(errors='replace') or 'no'} security"
        if ok:
            self.admitted[domain] = self.admitted.get(domain, 0) + 1
            return [version, request_id, b"200", b"OK", why.encode(), b""]
        self.refused[domain] = self.refused.get(domain, 0) + 1
        self._log_refused(domain, address, why)
        return [version, request_id, b"400", why.encode(), b"", b""]

    def _log_refused(self, domain: str, address: str, why: str) -> None:
        now = time.monotonic()
        start, shown = self._log_window.get(domain, (now, 0))
        if now - start >= 60:
            start, shown = now, 0
        self._log_window[domain] = (start, shown + 1)
        if shown < REFUSED_LOG_PER_MINUTE:
            endpoint = self.endpoints.get(domain, domain)
            log.warning("bus: %s refused a client from %s: %s", endpoint, address, why)


#: the handler of each context serving a CURVE endpoint, and how many bindings use it
_handlers: dict[int, tuple[ZapHandler, int]] = {}
_handlers_lock = threading.Lock()
_domains = itertools.count(1)


def acquire(ctx: zmq.Context, allow: AllowList) -> ZapHandler:
    """The context's ZAP handler, started on first use; :func:`release` it when done.

    One per context (libzmq has one ZAP endpoint per context): every CURVE server socket
    of the process shares it, so they must share one allow-list.
    """
    with _handlers_lock:
        entry = _handlers.get(id(ctx))
        if entry is not None and not entry[0].alive():
            entry = None  # its context was destroyed under it: a new context, same id
        if entry is not None:
            handler, users = entry
            if (handler.allow.clients_dir, handler.allow.always) != (
                allow.clients_dir,
                allow.always,
            ):
                raise BusError("every CURVE endpoint of a process must use one allow-list")
            _handlers[id(ctx)] = (handler, users + 1)
            return handler
        handler = ZapHandler(ctx, allow)
        _handlers[id(ctx)] = (handler, 1)
        return handler


def release(handler: ZapHandler) -> None:
    """One binding fewer uses ``handler``; the last one stops it (so the context can end)."""
    with _handlers_lock:
        entry = _handlers.get(id(handler.ctx))
        if entry is None or entry[0] is not handler:
            return
        if entry[1] > 1:
            _handlers[id(handler.ctx)] = (handler, entry[1] - 1)
            return
        del _handlers[id(handler.ctx)]
    handler.stop()


def refused_counts(ctx: zmq.Context | None = None, *, service: str | None = None) -> dict[str, int]:
    """Refused handshakes by endpoint, for every context of the process (or one); with
    ``service``, only on the endpoints that service bound (or an unmarked thread did)."""
    with _handlers_lock:
        handlers = [h for key, (h, _n) in _handlers.items() if ctx is None or key == id(ctx)]
    out: dict[str, int] = {}
    for h in handlers:
        for domain, n in list(h.refused.items()):
            if service is not None and h.owners.get(domain) not in (None, service):
                continue
            endpoint = h.endpoints.get(domain, domain)
            out[endpoint] = out.get(endpoint, 0) + n
    return out


# -- clients ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClientKeys:
    """What a client needs to connect to a CURVE endpoint: the server's public key and its
    own key pair."""

    server: bytes
    own: KeyPair


def client_keys_from_env(environ: dict[str, str] | None = None) -> ClientKeys | None:
    """Client keys named by ``AGENTBUS_CURVE_SERVER_KEY`` (a key file, or the z85 key) and
    ``AGENTBUS_CURVE_CLIENT_KEY`` (the client's key pair file, 0600); None if unset."""
    env = os.environ if environ is None else environ
    server, own = env.get(ENV_SERVER_KEY, ""), env.get(ENV_CLIENT_KEY, "")
    if not server and not own:
        return None
    if not (server and own):
        raise KeyFileError(f"set both {ENV_SERVER_KEY} and {ENV_CLIENT_KEY}, or neither")
    if len(server) == 40 and not os.path.exists(server):
        server_key = _z85_key(server, Path(ENV_SERVER_KEY))
    else:
        server_key = read_public_key(server)
    return ClientKeys(server_key, read_key_pair(own, ENV_CLIENT_KEY))
