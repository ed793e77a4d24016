"""The management API, enrollment only: ``POST /security/user/authenticate``, ``POST /agents``.

Validation follows PROTOCOL.md section 1; errors are 400 ``"<field> <reason>"``, an existing
id is 400 with code 1708, and only the key's salted PBKDF2 hash is stored.
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
from refserver.errors import HTTPError, bad_request, json_response
from refserver.passwords import hash_secret
from refserver.store import AgentExists

router = APIRouter()

KEY_PATTERN = re.compile(r"[A-Za-z0-9]{32}")
#: longest agent name accepted
MAX_NAME = 128


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
        raise HTTPError(415, f"Unsupported media type: {content_type or 'none'}")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise bad_request("body invalid JSON")
    agent = validate_agent(body)
    rounds = state_of(request).options.key_hash_rounds
    key_hash = await asyncio.to_thread(hash_secret, agent["key"], iterations=rounds)
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
        raise bad_request("There is an agent with the same ID", errors.AGENT_EXISTS)
    return json_response(
        {
            "data": {"id": agent["id"], "name": agent["name"]},
            "message": "Agent was created",
            "error": 0,
        },
        status=201,
    )


def validate_agent(body: Any) -> dict[str, Any]:
    """The enrollment body checked field by field; 400 with the first problem."""
    if not isinstance(body, dict):
        raise bad_request("body input should be a valid dictionary")
    for name in ("id", "name", "key", "type", "version"):
        if name not in body:
            raise bad_request(f"{name} field required")
        if not isinstance(body[name], str):
            raise bad_request(f"{name} input should be a valid string")
    try:
        uuidlib.UUID(body["id"])
    except ValueError:
        raise bad_request("id input should be a valid UUID")
    if not 1 <= len(body["name"]) <= MAX_NAME:
        raise bad_request(f"name string should have between 1 and {MAX_NAME} characters")
    if len(body["key"]) != 32:
        raise bad_request("key string should have 32 characters")
    if not KEY_PATTERN.fullmatch(body["key"]):
        raise bad_request("key string should match pattern '^[A-Za-z0-9]{32}$'")
    host = body.get("host")
    if host is not None:
        _validate_host(host)
    return body


def _validate_host(host: Any) -> None:
    if not isinstance(host, dict):
        raise bad_request("host input should be a valid dictionary")
    for name in ("hostname", "architecture"):
        if name in host and not isinstance(host[name], str):
            raise bad_request(f"host.{name} input should be a valid string")
    if "os" in host:
        if not isinstance(host["os"], dict):
            raise bad_request("host.os input should be a valid dictionary")
        for name, value in host["os"].items():
            if not isinstance(value, str):
                raise bad_request(f"host.os.{name} input should be a valid string")
    if "ip" in host:
        if not isinstance(host["ip"], list):
            raise bad_request("host.ip input should be a valid list")
        for i, ip in enumerate(host["ip"]):
            if not isinstance(ip, str):
                raise bad_request(f"host.ip.{i} input should be a valid string")
