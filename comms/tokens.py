"""The token manager: one valid JWT for every call, whatever the network or the clocks do.

Shared by the forwarder and the commander (separate processes, several threads each):

- **Lifetime from receipt.** A token's lifetime is ``exp - iat`` (900 s on a real server),
  counted on the monotonic clock from the moment *we received it*. The server's clock and
  ours never get compared, so a clock 2,000 s off on either side changes nothing.
- **Early renewal.** A token is due at 80 % of its lifetime; until it actually expires,
  callers keep getting it while one thread renews (and if the renewal fails).
- **401/403 → renew at once** with :meth:`TokenManager.renew` ``(stale)``: a no-op when
  somebody already replaced ``stale``, so a burst of rejected calls makes one renewal.
- **One renewal at a time**, across threads (a lock) and processes (``fcntl.flock`` on
  ``token.json.lock``). After taking the lock the on-disk cache is read again: when another
  process just renewed, its token is adopted instead of authenticating a second time.
- **Cache** ``token.json`` (0600, atomic) with the receipt time, so a restart within the
  lifetime does not authenticate again. Receipt times are kept both on the wall clock and on
  the system-wide monotonic clock (valid while the boot id is the same).
- **Back-off** with full jitter (:func:`core.backoff.compute_backoff`) while the server is
  unreachable or answers nonsense;
  callers get :class:`ServerUnreachable` with ``retry_after`` instead of a blocked thread.
- **Final refusals are known by their meaning, not their status** (docs/protocol.md,
  "Authentication"): only 401 ``Invalid key`` and 403 ``Agent does not exist`` raise
  :class:`ServerRejected` (exit 3) and stay raised — the credentials will not get better. The server also answers 403 when *it* is in trouble
  (``Couldn't connect to the indexer: ...``, ``Couldn't get key pair: ...``); that and every
  other failure (408, 429, 5xx, network) is temporary and backed off, or a whole fleet would
  stop at its next renewal during a server hiccup.
- **400 is temporary too.** The agent's request is fixed (``{"uuid", "key"}``, nothing the
  user typed), so a 400 says the server or a proxy in between is broken, not the
  credentials. Backing off costs one request a minute; stopping would need a person on
  every host. The message says so.
- **State for status** (:meth:`TokenManager.auth_status`): ``ok``, ``pending``,
  ``retrying`` or ``refused``, the server's last message, the earliest next attempt.

No log line ever contains the key or a token.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests
from loguru import logger

from bus.errors import AgentbusError
from comms.credentials import Credentials, comms_url
from comms.errors import BadResponse, ServerRejected, ServerUnreachable, error_of
from comms.http import answer_cap, make_session, retry_after, send, timeouts
from comms.private_files import ensure_private_dir, write_private
from core.backoff import compute_backoff
from core.config import Config

#: token cache and its lock file, in the data dir
TOKEN_FILE = "token.json"
LOCK_FILE = "token.json.lock"
#: token lock files this process could not open and said so (once per process and file)
_lock_warned: set[str] = set()
_lock_warned_guard = threading.Lock()
AUTH_PATH = "/api/v1/authentication"
#: renew when this share of the lifetime has passed
RENEW_AT = 0.8
#: lifetime assumed when a token carries no exp/iat (the protocol's 900 s)
DEFAULT_LIFETIME = 900.0
#: never plan further ahead than this, whatever the token says
MAX_LIFETIME = 86400.0
#: a token is treated as expired this long before its end (the call must still arrive)
EXPIRY_MARGIN = 10.0
# Back-off after failed authentications ([agent] auth_backoff_initial/_max): full jitter in
# [0, min(max, initial * 2**n)]; a server's Retry-After is a floor, capped at max. Full: a
# fleet that lost the same server must not come back in step, and callers are never blocked
# meanwhile (they get ServerUnreachable with retry_after), so a short draw costs one
# request, not a loop.
#: a token rejected this soon after we got it counts toward a rejection streak
FRESH_TOKEN_SECONDS = 30.0
#: the server answers authentication within 20 s (else 408); leave it room
AUTH_READ_TIMEOUT = 30.0
#: the only answers that refuse the credentials for good: (status, message), case-blind
FINAL_REFUSALS = frozenset({(401, "invalid key"), (403, "agent does not exist")})

AuthState = Literal["ok", "pending", "retrying", "refused", "not_enrolled"]


@dataclass(frozen=True)
class _Token:
    value: str
    lifetime: float
    #: monotonic time of receipt (this process's clock, system-wide on Linux)
    received: float

    @property
    def due_at(self) -> float:
        return self.received + self.lifetime * RENEW_AT

    @property
    def expires_at(self) -> float:
        return self.received + self.lifetime - min(EXPIRY_MARGIN, self.lifetime * 0.05)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class TokenManager:
    """Hands out a valid token for the agent in ``credentials`` and renews it when due."""

    def __init__(
        self,
        config: Config,
        credentials: Credentials,
        session: requests.Session | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: Callable[[], float] | None = None,
        boot_id: str | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self._session = session if session is not None else make_session(config, pool_size=2)
        self._url = comms_url(config, credentials) + AUTH_PATH
        self._cache_path = config.data_dir / TOKEN_FILE
        self._lock_path = config.data_dir / LOCK_FILE
        self._clock = clock
        self._wall = wall
        self._rng = rng
        self._boot_id = _boot_id() if boot_id is None else boot_id
        self._lock = threading.Lock()
        self._current: _Token | None = None
        self._failures = 0
        self._not_before = float("-inf")
        self._streak = 0
        self._streak_gate = float("-inf")
        self._rejected: ServerRejected | None = None
        #: the last failed attempt for status: (wall time, message, HTTP status or None)
        self._last_failure: tuple[float, str, int | None] | None = None
        #: authentications made by this process (for status)
        self.authentications = 0
        #: tokens taken over from the cache (restart, or another process renewed)
        self.adopted = 0

    # -- public ------------------------------------------------------------------------

    def token(self) -> str:
        """A valid token, renewed first when due. Raises ServerUnreachable/ServerRejected."""
        cur = self._current
        now = self._clock()
        if cur is not None and now < cur.due_at and self._rejected is None:
            return cur.value
        if cur is not None and now < cur.expires_at:
            # Due but still valid: if another thread is renewing, keep using it meanwhile.
            if not self._lock.acquire(blocking=False):
                return cur.value
        else:
            self._lock.acquire()
        try:
            return self._ensure(stale=None, forced=False)
        finally:
            self._lock.release()

    def renew(self, stale_token: str) -> str:
        """A new token after ``stale_token`` was refused (401/403).

        Returns at once with the current token when it is not ``stale_token`` any more
        (another thread or process renewed already).
        """
        with self._lock:
            return self._ensure(stale=stale_token, forced=True)

    def expires_in(self) -> float | None:
        """Seconds until the current token expires, None without a token (for status)."""
        cur = self._current
        if cur is None:
            return None
        return cur.received + cur.lifetime - self._clock()

    # -- renewal -----------------------------------------------------------------------

    def status(self) -> dict[str, float | int | None]:
        """Counters for ``agentbus status``: expiry, authentications, adopted tokens."""
        return {
            "token_expires_in": self.expires_in(),
            "token_authentications": self.authentications,
            "token_adopted": self.adopted,
            "token_failures": self._failures,
        }

    def auth_status(self) -> dict[str, Any]:
        """The ``auth`` block of ``agentbus status`` (keys in docs/enrollment.md).

        A snapshot read without the lock: a status call must never wait for a renewal.
        """
        now, wall = self._clock(), self._wall()
        cur, failure = self._current, self._last_failure
        expires_in = None if cur is None else cur.received + cur.lifetime - now
        state: AuthState
        if self._rejected is not None:
            state = "refused"
        elif self._failures:
            state = "retrying"
        elif cur is not None and now < cur.expires_at:
            state = "ok"
        else:
            state = "pending"  # no token yet, or it ran out while nobody needed one
        failing = state in ("retrying", "refused")
        next_in = max(0.0, self._not_before - now) if state == "retrying" else None
        return {
            "state": state,
            "message": failure[1] if failing and failure else None,
            "http_status": failure[2] if failing and failure else None,
            "failures": self._failures,
            "last_failure_at": failure[0] if failure else None,
            "next_try_in": next_in,
            "next_try_at": None if next_in is None else wall + next_in,
            "token_expires_in": expires_in,
            "token_expires_at": None if expires_in is None else wall + expires_in,
            "authentications": self.authentications,
        }

    def _ensure(self, *, stale: str | None, forced: bool) -> str:
        if self._rejected is not None:
            # A fresh exception each time: re-raising one instance would grow its traceback
            # on every call of a service that keeps asking.
            raise self._rejected.copy()
        cur = self._current
        now = self._clock()
        if forced:
            if cur is not None and cur.value != stale and now < cur.expires_at:
                return cur.value
        elif cur is not None and now < cur.due_at:
            return cur.value
        else:
            stale = cur.value if cur is not None else None
        young_refused = (
            forced
            and cur is not None
            and cur.value == stale
            and now - cur.received < FRESH_TOKEN_SECONDS
        )
        if forced and not young_refused:
            self._streak = 0
        if young_refused and now < self._streak_gate:
            # Tokens refused right after we got them, again and again: the server may be
            # refusing every token. Space the renewals out instead of looping on 403.
            wait = self._streak_gate - now
            raise ServerUnreachable(
                f"the server refused {self._streak} fresh tokens in a row; next "
                f"authentication in {wait:.1f}s",
                retry_after=wait,
            )
        if now < self._not_before:
            wait = self._not_before - now
            if not forced and cur is not None and now < cur.expires_at:
                return cur.value
            # Backing off, but another process may have got through meanwhile (the cache is
            # replaced atomically, so reading it without the lock is safe).
            cached = self._read_cache()
            if cached is not None and cached.value != stale and now < cached.due_at:
                return self._adopt(cached, now)
            raise ServerUnreachable(
                f"authentication with {self._origin()} postponed for {wait:.1f}s after "
                "earlier failures",
                retry_after=wait,
            )
        with self._file_lock():
            cached = self._read_cache()
            if cached is not None and cached.value != stale and now < cached.due_at:
                return self._adopt(cached, now)
            try:
                fresh = self._authenticate()
            except ServerRejected as exc:
                self._rejected = exc
                self._note_failure(exc)
                logger.error("{}", exc)
                raise
            except (ServerUnreachable, BadResponse) as exc:
                self._note_failure(exc)
                self._failures += 1
                hinted = getattr(exc, "retry_after", None)
                delay = self._backoff(
                    self._failures, float(hinted) if isinstance(hinted, int | float) else None
                )
                self._not_before = self._clock() + delay
                if not forced and cur is not None and self._clock() < cur.expires_at:
                    logger.warning(
                        "token renewal failed ({}); the current token is still valid, next "
                        "attempt in {:.1f}s",
                        exc,
                        delay,
                    )
                    return cur.value
                logger.warning("authentication failed ({}); next attempt in {:.1f}s", exc, delay)
                if isinstance(exc, ServerUnreachable):
                    exc.retry_after = delay
                raise
            self._failures = 0
            self._not_before = float("-inf")
            if young_refused:
                self._streak += 1
                self._streak_gate = self._clock() + self._backoff(self._streak)
            self._current = fresh
            self._write_cache(fresh)
            return fresh.value

    def _note_failure(self, exc: AgentbusError) -> None:
        # The server's own words when it answered, else what went wrong on the way.
        words = getattr(exc, "server_message", None) or getattr(exc, "message", None) or str(exc)
        status = getattr(exc, "status", None)
        self._last_failure = (self._wall(), str(words), status if isinstance(status, int) else None)

    def _adopt(self, cached: _Token, now: float) -> str:
        self._current = cached
        self.adopted += 1
        self._failures = 0
        self._not_before = float("-inf")
        logger.debug(
            "using the cached token of agent {} (expires in {:.0f}s)",
            self.credentials.uuid,
            cached.received + cached.lifetime - now,
        )
        return cached.value

    def _authenticate(self) -> _Token:
        body = json.dumps(
            {"uuid": self.credentials.uuid, "key": self.credentials.key}, separators=(",", ":")
        ).encode()
        response = send(
            self._session,
            "POST",
            self._url,
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=timeouts(self.config, read=AUTH_READ_TIMEOUT),
            cap=answer_cap(self.config),
            what="authentication",
        )
        received = self._clock()
        self.authentications += 1
        status = response.status_code
        if status != 200:
            self._raise_for(response)
        token = _token_field(response)
        lifetime = _lifetime(token)
        logger.info(
            "authenticated agent {}; token valid for {:.0f}s, renewal after {:.0f}s",
            self.credentials.uuid,
            lifetime,
            lifetime * RENEW_AT,
        )
        return _Token(token, lifetime, received)

    def _raise_for(self, response: requests.Response) -> None:
        """Raise what a non-200 answer means: final only for a refusal of the credentials."""
        status, message = response.status_code, _server_message(response)
        who = f"agent {self.credentials.name} ({self.credentials.uuid})"
        if (status, message.strip().rstrip(".").casefold()) in FINAL_REFUSALS:
            raise ServerRejected(
                status,
                message,
                what=f"the server refused {who}",
                hint="enroll it again with 'agentbus register --force'",
            )
        if status == 400:
            # Our body is fixed; a 400 points at the server or a proxy (see the docstring).
            raise ServerUnreachable(
                f"{self._origin()} answered 400 to the authentication of {who}: {message}; "
                "the agent's request is always the same, so the server or a proxy in between "
                "is at fault, not the credentials (HTTP 400)",
                retry_after=retry_after(response.headers),
                status=status,
                server_message=message,
            )
        if status in (401, 403, 408, 429) or status >= 500:
            raise ServerUnreachable(
                f"{self._origin()} could not authenticate {who} now: {message} (HTTP {status})",
                retry_after=retry_after(response.headers),
                status=status,
                server_message=message,
            )
        raise BadResponse(
            f"unexpected answer to authentication: {message} (HTTP {status})",
            status=status,
            server_message=message,
        )

    def _backoff(self, attempt: int, retry_after: float | None = None) -> float:
        return compute_backoff(
            attempt,
            initial=self.config.agent.auth_backoff_initial,
            maximum=self.config.agent.auth_backoff_max,
            jitter="full",
            retry_after=retry_after,
            max_retry_after=self.config.agent.auth_backoff_max,
            rng=self._rng,
        )

    def _origin(self) -> str:
        return self._url[: -len(AUTH_PATH)]

    # -- cache -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        # A separate lock file: token.json itself is replaced on every write, and a lock
        # on a replaced inode would protect nothing.
        try:
            ensure_private_dir(self._lock_path.parent)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # Still serve tokens; only the sharing with the other process is lost. Said
            # once per process and lock file: the services of one process share the file.
            with _lock_warned_guard:
                first = str(self._lock_path) not in _lock_warned
                _lock_warned.add(str(self._lock_path))
            if first:
                logger.warning(
                    "cannot open the token lock {}: {}; renewing without it",
                    self._lock_path,
                    exc.strerror or exc,
                )
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read_cache(self) -> _Token | None:
        try:
            raw = json.loads(self._cache_path.read_bytes())
            if raw.get("uuid") != self.credentials.uuid:
                return None
            value = raw["token"]
            lifetime = float(raw["lifetime"])
            if not isinstance(value, str) or not 0 < lifetime <= MAX_LIFETIME:
                return None
            now = self._clock()
            if self._boot_id and raw.get("boot_id") == self._boot_id:
                received = float(raw["received_monotonic"])
            else:
                # Another boot: only the wall clock links then and now.
                age = self._wall() - float(raw["received_at"])
                if not 0 <= age < lifetime:
                    return None
                received = now - age
            if received > now:
                return None
            return _Token(value, lifetime, received)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning(
                "ignoring the unreadable token cache {}: {}", self._cache_path, type(exc).__name__
            )
            return None

    def _write_cache(self, token: _Token) -> None:
        age = self._clock() - token.received
        doc = {
            "uuid": self.credentials.uuid,
            "token": token.value,
            "lifetime": token.lifetime,
            "received_at": self._wall() - age,
            "received_monotonic": token.received,
            "boot_id": self._boot_id,
        }
        try:
            write_private(self._cache_path, json.dumps(doc).encode())
        except OSError as exc:
            # Not fatal: the token is in memory; a restart will simply authenticate again.
            logger.warning("cannot write the token cache {}: {}", self._cache_path, exc.strerror)


def _server_message(response: requests.Response) -> str:
    """The server's message of an error body (either shape), or a short excerpt of it."""
    return error_of(response.content, response.status_code, response.reason or "")[0]


def _token_field(response: requests.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        raise BadResponse("the authentication answer is not JSON", status=200) from None
    token = doc.get("token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise BadResponse("the authentication answer has no token", status=200)
    return token


def _lifetime(token: str) -> float:
    """exp − iat of a JWT we cannot verify (no key): only these claims are read."""
    # Imported here, not at the top: only a token's arrival needs pyjwt, and it pulls in
    # cryptography wherever that is installed (~9 MB in a process).
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise BadResponse("the server's token is not a readable JWT", status=200) from None
    exp, iat = claims.get("exp"), claims.get("iat")
    numeric = (int, float)
    if not isinstance(exp, numeric) or not isinstance(iat, numeric) or isinstance(exp, bool):
        logger.warning(
            "the server's token has no usable exp/iat claims; assuming a {:.0f}s lifetime",
            DEFAULT_LIFETIME,
        )
        return DEFAULT_LIFETIME
    lifetime = float(exp) - float(iat)
    if lifetime <= 0:
        raise BadResponse(
            f"the server's token expires before it is issued (exp - iat = {lifetime:g})", status=200
        )
    return min(lifetime, MAX_LIFETIME)
