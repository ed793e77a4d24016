"""Error answers in the real server's shape: ``{"message": <text>, "code": <int>}``.

Handlers raise :class:`HTTPError`; the app turns it (and FastAPI's own errors) into that body,
so every status the reference server sends carries the body PROTOCOL.md describes.
"""

from __future__ import annotations

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

#: handler time limits of the real comms API (seconds)
TIMEOUT_AUTHENTICATION = 20.0
TIMEOUT_STATEFUL = 30.0
TIMEOUT_STATELESS = 10.0
TIMEOUT_MESSAGE = "Request exceeded the processing time limit"


class HTTPError(Exception):
    """An error answer: ``status`` on the wire, ``code`` in the body (defaults to the status)."""

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


def error_response(
    status: int, message: str, code: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The JSON error body every failing answer carries."""
    body = orjson.dumps({"message": message, "code": status if code is None else code})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def json_response(payload: Any, status: int = 200) -> Response:
    """Compact UTF-8 JSON, as PROTOCOL.md requires of every body."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def bad_request(message: str, code: int = 400) -> HTTPError:
    return HTTPError(400, message, code)
