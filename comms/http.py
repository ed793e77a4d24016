"""HTTP sessions to the server: keep-alive pool, our User-Agent, the chosen TLS checks.

One :class:`requests.Session` per service (thread-safe enough for one request per thread
from a shared pool). Every call must pass an explicit ``timeout``; :func:`timeouts` builds
the (connect, read) pair from the config.

TLS verification modes (``agent.verification_mode``):

- ``full``: the certificate chain is checked against ``ca_file`` (or the system/certifi
  bundle) and the hostname must match.
- ``certificate``: the chain is checked, the hostname is not (servers reached by IP or by an
  internal name their certificate does not carry).
- ``none``: nothing is checked; logged as a warning when the session is made.

What comes back is bounded (:func:`send`): every request asks for ``Accept-Encoding:
identity``; a compressed answer is refused (:class:`~comms.errors.Compressed`), never
inflated; the body is read streamed, raw bytes only, up to the :class:`Cap` of its endpoint
(``Content-Length`` refused early when it says more, but never trusted alone). Over the cap
→ :class:`~comms.errors.TooLarge` and nothing of the body is kept.
"""

from __future__ import annotations

import contextlib
import platform
import socket
import ssl
import threading
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from loguru import logger
from requests.adapters import HTTPAdapter

from comms.errors import (
    BadResponse,
    Compressed,
    Redirected,
    ServerUnreachable,
    TLSFailure,
    TooLarge,
)
from core.config import Config
from core.version import __version__

#: connections kept open per host
DEFAULT_POOL_SIZE = 10
VERIFICATION_MODES = ("full", "certificate", "none")
#: bytes read from the socket at a time while reading an answer body
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Cap:
    """The most bytes read of one answer: ``ok`` for a 2xx body, ``error`` for any other.

    The keys name the config settings, so the error tells the operator what to raise.
    """

    ok: int
    ok_key: str
    error: int
    error_key: str = "[agent] max_response_bytes"

    def for_status(self, status: int) -> tuple[int, str]:
        return (self.ok, self.ok_key) if 200 <= status < 300 else (self.error, self.error_key)


def answer_cap(config: Config) -> Cap:
    """Enrollment, tokens, events answers and every error: ``[agent] max_response_bytes``."""
    limit = int(config.agent.max_response_bytes)
    return Cap(limit, "[agent] max_response_bytes", limit)


def poll_cap(config: Config) -> Cap:
    """The commands long-poll: ``[commander] max_poll_bytes``."""
    return Cap(
        int(config.commander.max_poll_bytes),
        "[commander] max_poll_bytes",
        int(config.agent.max_response_bytes),
    )


def download_cap(config: Config) -> Cap:
    """A file download (group files): ``[agent] max_download_bytes``."""
    return Cap(
        int(config.agent.max_download_bytes),
        "[agent] max_download_bytes",
        int(config.agent.max_response_bytes),
    )


def user_agent() -> str:
    """``agentbus/<version> (Endpoint; <arch>; <os type>)`` as the server expects (docs/protocol.md)."""
    return f"agentbus/{__version__} (Endpoint; {platform.machine()}; {platform.system()})"


def timeouts(config: Config, read: float | None = None) -> tuple[float, float]:
    """(connect, read) timeouts for one call; ``read`` overrides the configured one."""
    return (config.agent.connect_timeout, config.agent.read_timeout if read is None else read)


class AgentSession(requests.Session):
    """A Session whose own ``verify`` beats ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``.

    Plain requests lets those variables override ``session.verify`` (psf/requests#3829):
    ``ca_file`` would be ignored and mode ``none`` would still verify. Proxies from the
    environment still apply.
    """

    def merge_environment_settings(  # type: ignore[override]
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if verify is None and self.verify is not True:
            verify = self.verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


class AgentAdapter(HTTPAdapter):
    """An adapter that can end its calls in flight at once (:meth:`abort`).

    A stopping service must not leave a thread blocked in a long-poll behind: with the
    services as threads of one process, it would outlive its service and take commands
    the next run never sees. The pool hands out connections through :meth:`_track`, so
    the sockets of the calls in flight are known and can be shut down.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.in_use: weakref.WeakSet[Any] = weakref.WeakSet()
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            scheme: _tracking(cls, self.in_use)
            for scheme, cls in self.poolmanager.pool_classes_by_scheme.items()
        }

    def abort(self) -> int:
        """Shut down the connection of every call in flight; returns how many."""
        ended = 0
        for conn in list(self.in_use):
            sock = getattr(conn, "sock", None)
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns; the call fails
                ended += 1
        return ended


def _tracking(pool_class: type[Any], in_use: weakref.WeakSet[Any]) -> type[Any]:
    """``pool_class`` whose checked-out connections are in ``in_use`` until returned."""

    class Tracking(pool_class):  # type: ignore[misc, valid-type]
        def _get_conn(self, timeout: float | None = None) -> Any:
            conn = super()._get_conn(timeout)
            in_use.add(conn)
            return conn

        def _put_conn(self, conn: Any) -> None:
            if conn is not None:
                in_use.discard(conn)
            super()._put_conn(conn)

    return Tracking


def abort_calls(session: requests.Session) -> int:
    """End every call in flight on ``session`` (from another thread); returns how many."""
    return sum(a.abort() for a in session.adapters.values() if isinstance(a, AgentAdapter))


class _ChainOnlyAdapter(AgentAdapter):
    """Checks the certificate chain but not the hostname (verification mode ``certificate``)."""

    def __init__(self, ca_file: str, **kwargs: Any) -> None:
        self._ca_file = ca_file
        super().__init__(**kwargs)

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self._ca_file or None)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        # urllib3 matches the hostname itself when the context does not; assert_hostname=False
        # turns that off too, while the chain is still verified by the context.
        kwargs["ssl_context"] = self._context()
        kwargs["assert_hostname"] = False
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        kwargs["ssl_context"] = self._context()
        kwargs["assert_hostname"] = False
        return super().proxy_manager_for(proxy, **kwargs)


#: the configurations (by id, while they live) whose TLS-off warning was given: said once
#: per configuration in force, not per session (with the services as threads, every
#: service of the process makes two sessions from the one configuration)
_tls_off_said: set[int] = set()
_tls_off_lock = threading.Lock()


def _first_time(config: Config) -> bool:
    """True the first time this process asks about ``config``."""
    key = id(config)
    with _tls_off_lock:
        if key in _tls_off_said:
            return False
        _tls_off_said.add(key)
    weakref.finalize(config, _tls_off_said.discard, key)  # an id is reused once freed
    return True


def make_session(
    config: Config,
    pool_size: int = DEFAULT_POOL_SIZE,
    *,
    verification_mode: str | None = None,
    ca_file: str | None = None,
) -> requests.Session:
    """A session with keep-alive, the agent's User-Agent and the configured TLS checks.

    ``verification_mode``/``ca_file`` override the config (``agentbus register`` flags).
    """
    mode = verification_mode or config.agent.verification_mode
    if mode not in VERIFICATION_MODES:
        raise ValueError(f"verification mode must be one of {', '.join(VERIFICATION_MODES)}")
    cafile = config.agent.ca_file if ca_file is None else ca_file
    session = AgentSession()
    session.headers["User-Agent"] = user_agent()
    # No compressed answers: a small gzip body can inflate to gigabytes (send() enforces it).
    session.headers["Accept-Encoding"] = "identity"
    adapter: AgentAdapter
    if mode == "certificate":
        adapter = _ChainOnlyAdapter(cafile, pool_connections=2, pool_maxsize=pool_size)
        session.verify = cafile or True
    else:
        adapter = AgentAdapter(pool_connections=2, pool_maxsize=pool_size)
        if mode == "none":
            session.verify = False
            # We say it once per process and configuration, loudly, here: every service
            # makes sessions (its API client, its token manager), and urllib3 would repeat
            # it on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            if _first_time(config):
                logger.warning(
                    "TLS verification is OFF (verification_mode = none): "
                    "the server's identity is not checked"
                )
        else:
            session.verify = cafile or True
    session.mount("https://", adapter)
    session.mount("http://", AgentAdapter(pool_connections=2, pool_maxsize=pool_size))
    return session


def send(
    session: requests.Session, method: str, url: str, *, cap: Cap, what: str, **kwargs: Any
) -> requests.Response:
    """One HTTP call, its body read whole but bounded by ``cap``; returns the response.

    Network trouble becomes :class:`ServerUnreachable` (or TLSFailure); a body over its
    cap :class:`TooLarge`, a compressed one :class:`Compressed`; ``what`` names the call in
    those messages. The caller must pass ``timeout``. Messages name the URL and the cause,
    never a header (headers carry the token).
    """
    if "timeout" not in kwargs:
        raise TypeError("every call to the server needs an explicit timeout")
    # Never follow a redirect: it would re-send the key, the token or the events to
    # whatever origin the answer names (plain http too). A 3xx is an error of the server.
    kwargs["allow_redirects"] = False
    # Headers first, body read here under the cap (requests would read it all at once).
    kwargs["stream"] = True
    kwargs["headers"] = {**(kwargs.get("headers") or {}), "Accept-Encoding": "identity"}
    try:
        response = session.request(method, url, **kwargs)
    except requests.exceptions.SSLError as exc:
        raise TLSFailure(f"TLS check of {_origin(url)} failed: {_cause(exc)}") from None
    except requests.exceptions.Timeout as exc:
        raise ServerUnreachable(f"{_origin(url)} did not answer in time: {_cause(exc)}") from None
    except requests.exceptions.ConnectionError as exc:
        raise ServerUnreachable(f"cannot reach {_origin(url)}: {_cause(exc)}") from None
    except requests.exceptions.RequestException as exc:
        raise ServerUnreachable(f"request to {_origin(url)} failed: {_cause(exc)}") from None
    if 300 <= response.status_code < 400:
        where = response.headers.get("Location") or "nowhere said"
        response.close()
        raise Redirected(
            f"{_origin(url)} answered HTTP {response.status_code}, a redirect to "
            f"{where[:200]}: the agent follows no redirects (check server_url)",
            status=response.status_code,
        )
    try:
        # What requests' own .content does; its readers (.json, .text) then use these bytes.
        response._content = _read_body(response, cap, what, _origin(url))
        response._content_consumed = True  # type: ignore[attr-defined]
    except BaseException:
        response.close()  # the rest of the body stays unread: the connection is dropped
        raise
    return response


def _read_body(response: requests.Response, cap: Cap, what: str, origin: str) -> bytes:
    """The raw body, at most the cap for this status; never decompressed."""
    status = response.status_code
    limit, key = cap.for_status(status)
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise Compressed(
            f"the answer of {origin} for {what} is compressed ({encoding[:40]}) although the "
            "agent asked for none: refused",
            status=status,
        )
    declared = response.headers.get("Content-Length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadResponse(
                f"the answer of {origin} for {what} has an invalid Content-Length",
                status=status,
            ) from None
        if length > limit:  # refused before reading a byte; a smaller one is not trusted
            raise TooLarge(what, origin, limit, key, status=status)
    chunks: list[bytes] = []
    size = 0
    try:
        # Raw bytes (decode_content=False): nothing is inflated, whatever the headers say.
        for chunk in response.raw.stream(READ_CHUNK, decode_content=False):
            size += len(chunk)
            if size > limit:
                raise TooLarge(what, origin, limit, key, status=status)
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
        raise ServerUnreachable(
            f"the answer of {origin} for {what} broke off: {_cause(exc)}"
        ) from None
    return b"".join(chunks)


def retry_after(headers: Any) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (number or HTTP date), else None."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - time.time())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _cause(exc: BaseException) -> str:
    """The innermost useful reason of a requests/urllib3 exception, in a few words."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    best: str | None = None
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return cur.verify_message or str(cur.reason) or "certificate verify failed"
        if isinstance(cur, ssl.SSLError):
            best = str(cur.reason or cur)
        elif isinstance(cur, ConnectionRefusedError):
            best = best or "connection refused"
        elif isinstance(cur, TimeoutError):
            best = best or "timed out"
        elif isinstance(cur, OSError) and cur.strerror and best is None:
            best = cur.strerror.lower()
        for nxt in (getattr(cur, "reason", None), cur.__cause__, cur.__context__, *cur.args):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    if best:
        return best
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
