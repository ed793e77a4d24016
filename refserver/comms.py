"""The comms API under ``/api/v1``: authentication, events, long-poll commands, files.

Each handler keeps the real server's time limit (authentication 20 s, stateful 30 s,
stateless 10 s → 408). Bodies are read as a stream and parsed line by line
(:mod:`refserver.ndjson`), or, with ``--stateful-chunk``, stateful bodies per fixed-size
piece as the 6.0.0 server does (:mod:`refserver.chunks`); storing happens in a worker
thread so held long-polls and other requests keep being served meanwhile. Stateful items
are applied with the indexer's semantics (:mod:`refserver.documents`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from refserver import errors
from refserver.auth import check_throttle, comms_agent, record_failure, state_of
from refserver.chunks import PieceReader, head_size
from refserver.errors import HTTPError, bad_request, error_response, json_response
from refserver.ndjson import BodyParser, Kind
from refserver.passwords import verify_secret

router = APIRouter(prefix="/api/v1")

#: fields of a command as the agent receives it, in the real order; None values are omitted
COMMAND_SOURCE = "Users/Services"
COMMAND_USER = "Management API"
COMMAND_VERSION = "5.0.0"


# -- authentication ---------------------------------------------------------------------------
@router.post("/authentication")
async def authentication(request: Request) -> Response:
    state = state_of(request)
    try:
        async with asyncio.timeout(errors.TIMEOUT_AUTHENTICATION):
            raw = await request.body()
    except TimeoutError:
        raise HTTPError(408, errors.TIMEOUT_MESSAGE)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("body invalid JSON")
    if not isinstance(body, dict):
        raise bad_request("body input should be a valid dictionary")
    for name in ("uuid", "key"):
        if name not in body:
            raise bad_request(f"{name} field required")
        if not isinstance(body[name], str):
            raise bad_request(f"{name} input should be a valid string")
    uuid, key = body["uuid"], body["key"]
    # Before any key check: an address that failed too often costs no PBKDF2 at all.
    check_throttle(request, "agent key")
    agent_hash = state.store.key_hash(uuid)
    if agent_hash is None:
        record_failure(request, "agent key")  # probing for agent ids is a failure too
        raise HTTPError(403, "Agent does not exist")
    if not state.key_known_good(uuid, key):
        if not await asyncio.to_thread(verify_secret, key, agent_hash):
            record_failure(request, "agent key")
            raise HTTPError(401, "Invalid key")
        state.remember_key(uuid, key)
    token = state.tokens.comms_token(uuid)
    state.store.logged_in(uuid, time.time())
    state.stats.auth_count += 1
    return json_response({"token": token})


# -- events -----------------------------------------------------------------------------------
async def _parse(request: Request, kind: Kind, limit: float) -> BodyParser:
    content_type = request.headers.get("content-type")
    if content_type != "application/json":
        raise bad_request(f"Content-Type must be application/json, not {content_type or 'none'}")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise bad_request(f"Content-Encoding {encoding} is not supported")
    parser = BodyParser(kind)
    reader: BodyParser | PieceReader = parser
    size = state_of(request).options.stateful_chunk
    if kind == "stateful" and size is not None:
        reader = PieceReader(parser, size, _head_size(request))
    try:
        async with asyncio.timeout(limit):
            async for chunk in request.stream():
                reader.feed(chunk)
    except TimeoutError:
        raise HTTPError(408, errors.TIMEOUT_MESSAGE)
    except ClientDisconnect:
        raise bad_request(
            "The client disconnected during the stream processing", errors.STREAM_DISCONNECTED
        )
    reader.finish()
    return parser


def _head_size(request: Request) -> int:
    """The size of the request line and headers as the client sent them."""
    target = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    if query:
        target += b"?" + query
    return head_size(request.method, target.decode("latin-1"), list(request.scope["headers"]))


@router.post("/events/stateless")
async def stateless(request: Request) -> Response:
    agent_id = comms_agent(request)
    state = state_of(request)
    parser = await _parse(request, "stateless", errors.TIMEOUT_STATELESS)
    await asyncio.to_thread(state.store.add_stateless, agent_id, parser.stateless)
    state.stats.stateless_swallowed += parser.swallowed
    state.store.seen(agent_id, parser.groups, request.headers.get("user-agent"))
    return Response(status_code=204)


@router.post("/events/stateful")
async def stateful(request: Request) -> Response:
    agent_id = comms_agent(request)
    state = state_of(request)
    parser = await _parse(request, "stateful", errors.TIMEOUT_STATEFUL)
    options = state.options
    results = await asyncio.to_thread(
        partial(
            state.store.add_stateful,
            strict=options.strict_documents,
            upsert=options.upsert_documents,
        ),
        agent_id,
        parser.stateful,
    )
    state.stats.documents_refused += sum(1 for item in results if item["status"] == 400)
    state.store.seen(agent_id, parser.groups, request.headers.get("user-agent"))
    return json_response({"results": results})


# -- commands (long poll) ---------------------------------------------------------------------
@router.get("/commands")
async def commands(request: Request) -> Response:
    agent_id = comms_agent(request)
    state = state_of(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.command_hold
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(request, gone))
    try:
        while True:
            if gone.is_set():
                # Nobody would read the answer: leave the commands queued for the next poll.
                return error_response(499, "Client closed the request")
            claimed = state.store.claim_commands(agent_id)
            if claimed:
                return json_response({"commands": [command_wire(c) for c in claimed]})
            remaining = deadline - loop.time()
            if remaining <= 0:
                return error_response(408, errors.TIMEOUT_MESSAGE)
            event = state.waiters.register(agent_id)
            watcher.add_done_callback(_setter(event))
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass
            finally:
                state.waiters.unregister(agent_id, event)
    finally:
        watcher.cancel()


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _task: event.set()


async def _watch_disconnect(request: Request, gone: asyncio.Event) -> None:
    """Set ``gone`` when the client hangs up while its poll is held."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


def command_wire(command: dict[str, Any]) -> dict[str, Any]:
    """A stored command in the shape the real server sends (null fields omitted)."""
    action: dict[str, Any] = {"name": command["name"], "version": COMMAND_VERSION}
    if command["args"] is not None:
        action["args"] = command["args"]
    wire: dict[str, Any] = {
        "document_id": command["document_id"],
        "request_id": command["request_id"],
        "order_id": command["order_id"],
        "source": COMMAND_SOURCE,
        "user": COMMAND_USER,
        "target": {"id": command["agent_id"], "type": "agent"},
        "action": action,
    }
    if command["timeout"] is not None:
        wire["timeout"] = command["timeout"]
    wire["status"] = "sent"
    return wire


# -- files ------------------------------------------------------------------------------------
@router.get("/files")
async def files(request: Request) -> Response:
    comms_agent(request)
    name = request.query_params.get("file_name")
    if name is None:
        raise bad_request("query.file_name field required")
    if "/" in name or "\\" in name:
        raise bad_request(
            "Invalid file name, it must not contain directories", errors.FILE_HAS_DIRECTORIES
        )
    if name in ("", ".", ".."):
        raise bad_request("Invalid file name, it must not be a directory", errors.FILE_IS_DIRECTORY)
    path = state_of(request).options.files_dir / name
    if path.is_dir():
        raise bad_request("Invalid file name, it must not be a directory", errors.FILE_IS_DIRECTORY)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise HTTPError(404, "File does not exist")
    return Response(content, media_type="application/octet-stream")
