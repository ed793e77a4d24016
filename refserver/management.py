"""The management API, enrollment only: ``POST /security/user/authenticate``, ``POST /agents``.

Errors take the management shape ``{"title", "detail"}`` (docs/protocol.md, section 1), and
the body is validated the way the real server's OpenAPI validator does it, with its words:
``'<value>' is not a 'uuid4' - 'id'``, ``'name' is a required property``, ``5 is not of
type 'string' - 'key'``. The id must be a UUID **v4** (``allow_uuid7`` also takes v7), the
name must match ``^[\\w\\-.%]+$`` and have at most 128 characters, the key 32 characters (the
real model's own ``Invalid key length`` problem); an existing id is 400 with ``"error":
1708``. Only the key's salted PBKDF2 hash is stored.
"""

from __future__ import annotations

import asyncio
import re
import uuid as uuidlib
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from refserver import errors
from refserver.auth import basic_user, management_user, state_of
from refserver.errors import ProblemError, json_response
from refserver.passwords import hash_secret
from refserver.store import AgentExists

router = APIRouter()

#: the name rule of the real schema (a jsonschema ``pattern``: searched, Unicode ``\w``)
NAME_PATTERN = r"^[\w\-.%]+$"
#: longest agent name accepted
MAX_NAME = 128
#: what agentbus sends as a key; stricter than the real ``alphanumeric_symbols`` on purpose
KEY_PATTERN = r"^[A-Za-z0-9]{32}$"
KEY_LENGTH = 32
#: the fields of the body the schema requires, in the schema's order
REQUIRED = ("id", "name", "key", "type", "version")


@router.post("/security/user/authenticate")
async def authenticate(request: Request) -> Response:
    user = basic_user(request)
    token = state_of(request).tokens.management_token(user)
    return json_response({"data": {"token": token}, "error": 0})


@router.post("/agents")
async def enroll(request: Request) -> Response:
    management_user(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/json":
        raise ProblemError(
            415, f"Invalid Content-type ({content_type or 'none'}), expected ['application/json']"
        )
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ProblemError(400, "Request body is not valid JSON")
    options = state_of(request).options
    agent = validate_agent(body, allow_uuid7=options.allow_uuid7)
    key_hash = await asyncio.to_thread(
        hash_secret, agent["key"], iterations=options.key_hash_rounds
    )
    try:
        state_of(request).store.add_agent(
            uuid=agent["id"],
            name=agent["name"],
            key_hash=key_hash,
            type=agent["type"],
            version=agent["version"],
            host=agent.get("host"),
        )
    except AgentExists:
        raise ProblemError(400, "There is an agent with the same ID", error=errors.AGENT_EXISTS)
    return json_response(
        {
            "data": {"id": agent["id"], "name": agent["name"]},
            "message": "Agent was created",
            "error": 0,
        },
        status=201,
    )


def _invalid(detail: str, path: str = "") -> ProblemError:
    """A schema refusal in the validator's shape: ``<reason> - '<field path>'``."""
    return ProblemError(400, f"{detail} - '{path}'" if path else detail)


def _type(value: Any, kind: str, path: str) -> None:
    ok = {
        "string": isinstance(value, str),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
    }[kind]
    if not ok:
        raise _invalid(f"{value!r} is not of type '{kind}'", path)


def uuid_version(text: str) -> int | None:
    """The version of a UUID as the real ``uuid4`` format checker reads it; None if no UUID."""
    try:
        return uuidlib.UUID(text).version
    except ValueError:
        return None


def validate_agent(body: Any, *, allow_uuid7: bool = False) -> dict[str, Any]:
    """The enrollment body checked as the real schema does; ProblemError 400 at the first issue."""
    _type(body, "object", "")
    for name in REQUIRED:
        if name not in body:
            raise _invalid(f"'{name}' is a required property")
    for name in REQUIRED:
        _type(body[name], "string", name)
    agent_id, name, key = body["id"], body["name"], body["key"]
    if uuid_version(agent_id) not in ((4, 7) if allow_uuid7 else (4,)):
        raise _invalid(f"'{agent_id}' is not a 'uuid4'", "id")
    if len(name) > MAX_NAME:
        raise _invalid(f"'{name}' is too long", "name")
    if re.search(NAME_PATTERN, name) is None:
        raise _invalid(f"'{name}' does not match '{NAME_PATTERN}'", "name")
    if "host" in body:
        _validate_host(body["host"])
    # The real model checks the key's length after the schema, with a problem of its own.
    if len(key) != KEY_LENGTH:
        raise ProblemError(400, "The key must be 32 characters long", title="Invalid key length")
    if re.fullmatch(KEY_PATTERN, key) is None:
        raise _invalid(f"'{key}' does not match '{KEY_PATTERN}'", "key")
    return body


def _validate_host(host: Any) -> None:
    _type(host, "object", "host")
    for name in ("architecture", "hostname"):
        if name in host:
            _type(host[name], "string", f"host.{name}")
    if "ip" in host:
        _type(host["ip"], "array", "host.ip")
        for i, ip in enumerate(host["ip"]):
            _type(ip, "string", f"host.ip.{i}")
    if "os" in host:
        _type(host["os"], "object", "host.os")
        for name in ("name", "type", "version"):
            if name in host["os"]:
                _type(host["os"][name], "string", f"host.os.{name}")
