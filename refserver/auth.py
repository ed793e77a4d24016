"""Who is calling: Basic users and Bearer tokens of the management API, agent tokens of comms,
the admin token of ``/admin``.

The comms API answers every token problem with **403** (not 401), as the real server does;
the management API answers 401 in its own shape (``{"title": "Unauthorized", "detail"}``);
the admin API answers 401 without its token. Failed checks of a password, an agent key or the
admin token are limited per client address (:mod:`refserver.throttle`): 429 with
``Retry-After`` once an address has failed too often.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request

from refserver.errors import HTTPError, ProblemError
from refserver.state import ServerState
from refserver.tokens import COMMS_AUDIENCE, MANAGEMENT_AUDIENCE


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def _bearer(request: Request, status: int) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise HTTPError(status, "Not authenticated")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPError(status, "Invalid authentication credentials")
    return token.strip()


def comms_agent(request: Request) -> str:
    """The agent uuid of a valid comms token; 403 with the real messages otherwise."""
    token = _bearer(request, 403)
    claims = state_of(request).tokens.decode(token, COMMS_AUDIENCE)
    uuid = claims.get("uuid")
    if not isinstance(uuid, str):
        raise HTTPError(403, "Invalid authentication token", 2706)
    return uuid


def management_user(request: Request) -> str:
    """The user of a valid management token; 401 with the real details otherwise."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "No authorization token provided")
    try:
        claims = state_of(request).tokens.decode(token.strip(), MANAGEMENT_AUDIENCE)
    except HTTPError:
        raise ProblemError(401, "Invalid token")
    return str(claims.get("sub", ""))


def client_host(request: Request) -> str:
    return request.client.host if request.client else ""


def check_throttle(request: Request, kind: str, *, problem: bool = False) -> None:
    """429 (comms shape, or management shape with ``problem``) if the caller failed too often."""
    state = state_of(request)
    wait = state.throttle.retry_after(kind, client_host(request))
    if wait is None:
        return
    state.stats.throttled[kind] += 1
    message = f"Too many failed authentication attempts from this address; retry in {wait} s"
    headers = {"Retry-After": str(wait)}
    if problem:
        raise ProblemError(429, message, headers=headers)
    raise HTTPError(429, message, headers=headers)


def record_failure(request: Request, kind: str) -> None:
    state = state_of(request)
    state.stats.auth_failures[kind] += 1
    state.throttle.failed(kind, client_host(request))


def basic_user(request: Request) -> str:
    """Check ``Authorization: Basic`` against the configured admin user; 401 otherwise."""
    check_throttle(request, "login", problem=True)
    try:
        return _basic_user(request)
    except ProblemError:
        record_failure(request, "login")
        raise


def _basic_user(request: Request) -> str:
    options = state_of(request).options
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise ProblemError(401, "Invalid credentials")
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ProblemError(401, "Invalid credentials")
    good_user = hmac.compare_digest(user.encode(), options.user.encode())
    good_password = hmac.compare_digest(password.encode(), options.password.encode())
    if not (sep and good_user and good_password):
        raise ProblemError(401, "Invalid credentials")
    return user


def require_loopback(request: Request) -> None:
    """The admin API answers loopback clients only (unless told otherwise)."""
    if state_of(request).options.admin_any_host:
        return
    host = client_host(request)
    if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("127."):
        raise HTTPError(403, "The admin API only answers loopback clients")


def require_admin(request: Request) -> None:
    """Loopback (unless told otherwise) and ``Authorization: Bearer <admin token>``; else 401.

    Loopback alone is no check: every local user reaches it. An empty configured token
    refuses everything (fail closed).
    """
    require_loopback(request)
    check_throttle(request, "admin")
    expected = state_of(request).options.admin_token.encode()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = token.strip().encode() if scheme.lower() == "bearer" else b""
    if not expected or not hmac.compare_digest(given, expected):
        record_failure(request, "admin")
        raise HTTPError(
            401,
            "Admin token missing or wrong (see the server's admin token file)",
            headers={"WWW-Authenticate": "Bearer"},
        )
