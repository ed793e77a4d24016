"""The app factory: one ASGI app serving the management, comms and admin APIs."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from core.logs import RateLimitedLog
from refserver import admin, comms, management
from refserver.errors import HTTPError, error_for
from refserver.faults import FaultMiddleware, Faults
from refserver.options import ServerOptions
from refserver.state import ServerState


def create_app(options: ServerOptions, state: ServerState | None = None) -> ASGIApp:
    """The whole server as an ASGI app (fault injection outermost)."""
    state = state or ServerState(options)
    app = FastAPI(
        title="agentbus reference server", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.server = state
    faults = Faults()
    app.state.faults = faults
    app.include_router(management.router)
    app.include_router(comms.router)
    app.include_router(admin.router)
    app.add_exception_handler(HTTPError, _http_error)
    app.add_exception_handler(StarletteHTTPException, _starlette_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    return FaultMiddleware(app, faults, state.stats)


#: refused requests are logged, at most this many per minute per (path, status)
_refusals = RateLimitedLog(per_minute=10)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    path = request.url.path
    # Admin mistakes are the operator's own, but a refused admin token may be an attack.
    logged = not path.startswith("/admin") or exc.status in (401, 429)
    if logged and exc.status != 408:
        # Bad input is the client's problem, but an operator should be able to see it.
        _refusals.warning(
            f"{path} {exc.status}",
            "refused {} {} from {}: {} {}",
            request.method,
            path,
            request.client.host if request.client else "?",
            exc.status,
            exc.message,
        )
    return exc.response()


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    return error_for(request.url.path, exc.status_code, str(exc.detail), headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    return error_for(request.url.path, 400, f"{key} {error['msg'].lower()}")


async def _internal_error(request: Request, exc: Exception) -> Response:
    return error_for(request.url.path, 500, str(exc) or type(exc).__name__)
