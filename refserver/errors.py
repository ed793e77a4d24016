"""Error answers in the real server's two shapes.

The comms API (and the admin API) answer ``{"message": <text>, "code": <int>}``; the
management API answers ``{"title": <short>, "detail": <text>}``, with ``"error": <int>``
when a Wazuh error code applies (docs/protocol.md, Conventions). Handlers raise
:class:`HTTPError` or :class:`ProblemError`; the app turns them (and FastAPI's own errors)
into the body of the API the request was for.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

#: the real server's error codes of the comms API (wazuh/core/exception.py)
INVALID_TOKEN = 2706
TOKEN_EXPIRED = 2707
STREAM_DISCONNECTED = 2708
INVALID_STATEFUL_BODY = 2709
INVALID_STATELESS_BODY = 2710
FILE_IS_DIRECTORY = 2704
FILE_HAS_DIRECTORIES = 2705
#: the management API's "agent already exists" error
AGENT_EXISTS = 1708
#: the real message of error 2709 (a stateful body, or one receive chunk of it, is malformed)
INVALID_STATEFUL_MESSAGE = (
    "Invalid stateful events request body. It must contain the agent metadata, headers and"
    " events objects separated by newlines"
)

#: handler time limits of the real comms API (seconds)
TIMEOUT_AUTHENTICATION = 20.0
TIMEOUT_STATEFUL = 30.0
TIMEOUT_STATELESS = 10.0
TIMEOUT_MESSAGE = "Request exceeded the processing time limit"

#: paths of the management API (enrollment): their errors take the management shape
MANAGEMENT_PATHS = ("/security/", "/agents")


def is_management(path: str) -> bool:
    return path.startswith(MANAGEMENT_PATHS)


def phrase(status: int) -> str:
    """The standard reason phrase of a status (``Bad Request``), the management ``title``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class HTTPError(Exception):
    """A comms-shaped error: ``status`` on the wire, ``code`` in the body (default: status)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = status if code is None else code
        self.headers = headers or {}

    def response(self) -> Response:
        return error_response(self.status, self.message, self.code, self.headers)


class ProblemError(HTTPError):
    """A management-shaped error: ``{"title", "detail"}`` (+ ``"error"`` when given)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        error: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail, headers=headers)
        self.title = title or phrase(status)
        self.error = error

    def response(self) -> Response:
        return problem_response(
            self.status, self.detail, title=self.title, error=self.error, headers=self.headers
        )

    @property
    def detail(self) -> str:
        return self.message


def error_response(
    status: int, message: str, code: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The comms API's error body."""
    body = orjson.dumps({"message": message, "code": status if code is None else code})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    error: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The management API's error body."""
    body = problem_body(status, detail, title=title, error=error)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def problem_body(
    status: int, detail: str, *, title: str | None = None, error: int | None = None
) -> bytes:
    problem: dict[str, Any] = {"title": title or phrase(status), "detail": detail}
    if error is not None:
        problem["error"] = error
    return orjson.dumps(problem)


def error_for(
    path: str, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """An error answer in the shape of the API ``path`` belongs to."""
    if is_management(path):
        return problem_response(status, message, headers=headers)
    return error_response(status, message, headers=headers)


def json_response(payload: Any, status: int = 200) -> Response:
    """Compact UTF-8 JSON, as docs/protocol.md requires of every body."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def bad_request(message: str, code: int = 400) -> HTTPError:
    return HTTPError(400, message, code)
