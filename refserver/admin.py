"""The operator surface under ``/admin``: loopback clients only by default, and every request
carries the admin token (``Authorization: Bearer``, :func:`refserver.auth.require_admin`).

Queue commands for an agent or a group, re-send one, list agents, query and count received
events, read command results, inject faults, revoke tokens, put group files, shift the
clock, and read counters. ``agentbus server <action>`` and the test fixture both use it.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from refserver.auth import require_admin, state_of
from refserver.errors import HTTPError, bad_request, json_response
from refserver.faults import FaultRule, faults_of

router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise bad_request("body invalid JSON")
    if not isinstance(body, dict):
        raise bad_request("body input should be a valid dictionary")
    return body


@router.get("/health")
async def health(request: Request) -> Response:
    state = state_of(request)
    return json_response({"ok": True, "waiting_polls": state.waiters.count()})


# -- agents -----------------------------------------------------------------------------------
@router.get("/agents")
async def agents(request: Request) -> Response:
    return json_response(state_of(request).store.agents())


# -- commands ---------------------------------------------------------------------------------
@router.post("/commands")
async def queue_command(request: Request) -> Response:
    """Body ``{"agent_id"|"group", "name", "args"?, "timeout"?}`` → ``{"document_ids": [...]}``."""
    state = state_of(request)
    body = await _json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("name field required")
    args = body.get("args")
    if args is not None and not isinstance(args, dict):
        raise bad_request("args input should be a valid dictionary")
    timeout = body.get("timeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)):
        raise bad_request("timeout input should be a valid integer")
    agent_id, group = body.get("agent_id"), body.get("group")
    if (agent_id is None) == (group is None):
        raise bad_request("give exactly one of agent_id and group")
    if agent_id is not None:
        if not isinstance(agent_id, str):
            raise bad_request("agent_id input should be a valid string")
        if state.store.agent(agent_id) is None:
            raise HTTPError(404, f"Agent {agent_id} does not exist")
        targets = [agent_id]
    else:
        if not isinstance(group, str):
            raise bad_request("group input should be a valid string")
        targets = state.store.agents_in_group(group)
        if not targets:
            raise HTTPError(404, f"No agent in group {group}")
    ids = state.store.queue_command(targets, name=name, args=args, timeout=timeout, group=group)
    for target in targets:
        state.waiters.notify(target)
    return json_response({"document_ids": ids}, status=201)


@router.post("/commands/{document_id}/resend")
async def resend(document_id: str, request: Request) -> Response:
    state = state_of(request)
    agent_id = state.store.resend(document_id)
    if agent_id is None:
        raise HTTPError(404, f"Command {document_id} does not exist")
    state.waiters.notify(agent_id)
    return json_response({"document_id": document_id, "status": "pending"})


@router.get("/commands")
async def list_commands(request: Request) -> Response:
    agent = request.query_params.get("agent")
    return json_response(state_of(request).store.commands(agent))


@router.get("/results")
async def results(request: Request) -> Response:
    document_id = request.query_params.get("document_id")
    return json_response(state_of(request).store.results(document_id))


# -- events -----------------------------------------------------------------------------------
def _event_filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    return {"module": q.get("module"), "agent": q.get("agent"), "kind": q.get("type")}


@router.get("/events")
async def events(request: Request) -> Response:
    q = request.query_params
    try:
        limit = int(q["limit"]) if "limit" in q else None
        after = int(q.get("after", "0"))
    except ValueError:
        raise bad_request("limit and after must be integers")
    rows = state_of(request).store.events(**_event_filters(request), limit=limit, after=after)
    return json_response(rows)


@router.get("/events/count")
async def count_events(request: Request) -> Response:
    return json_response({"count": state_of(request).store.count_events(**_event_filters(request))})


@router.get("/documents")
async def documents(request: Request) -> Response:
    return json_response(state_of(request).store.documents(request.query_params.get("index")))


# -- faults, tokens, files, clock, stats ------------------------------------------------------
@router.post("/faults")
async def add_fault(request: Request) -> Response:
    body = await _json_body(request)
    try:
        rule = FaultRule.from_dict(body)
    except ValueError as exc:
        raise bad_request(str(exc))
    faults_of(request).add(rule)
    return json_response(rule.describe(), status=201)


@router.get("/faults")
async def list_faults(request: Request) -> Response:
    return json_response([rule.describe() for rule in faults_of(request).active()])


@router.delete("/faults")
async def clear_faults(request: Request) -> Response:
    faults_of(request).clear()
    return Response(status_code=204)


@router.post("/revoke-tokens")
async def revoke_tokens(request: Request) -> Response:
    state_of(request).tokens.rotate()
    return Response(status_code=204)


@router.get("/files/{name}")
async def get_file(name: str, request: Request) -> Response:
    if "/" in name or name in ("", ".", ".."):
        raise bad_request("Invalid file name")
    try:
        content = (state_of(request).options.files_dir / name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise HTTPError(404, "File does not exist") from None
    return Response(content, media_type="application/octet-stream")


@router.put("/files/{name}")
async def put_file(name: str, request: Request) -> Response:
    if "/" in name or name in ("", ".", ".."):
        raise bad_request("Invalid file name")
    state = state_of(request)
    path = state.options.files_dir / name
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(await request.body())
    tmp.replace(path)
    return Response(status_code=204)


@router.post("/clock")
async def clock(request: Request) -> Response:
    body = await _json_body(request)
    skew = body.get("skew")
    if not isinstance(skew, int | float) or isinstance(skew, bool):
        raise bad_request("skew input should be a valid number")
    state_of(request).clock.skew = float(skew)
    return json_response({"skew": float(skew)})


@router.post("/command-hold")
async def command_hold(request: Request) -> Response:
    body = await _json_body(request)
    seconds = body.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise bad_request("seconds input should be a non-negative number")
    state_of(request).command_hold = float(seconds)
    return json_response({"seconds": float(seconds)})


@router.get("/stats")
async def stats(request: Request) -> Response:
    state = state_of(request)
    requests = [
        {"method": m, "path": p, "status": s, "count": n}
        for (m, p, s), n in sorted(state.stats.requests.items())
    ]
    return json_response(
        {
            "auth_count": state.stats.auth_count,
            "stateless_swallowed": state.stats.stateless_swallowed,
            "documents_refused": state.stats.documents_refused,
            "auth_failures": dict(state.stats.auth_failures),
            "throttled": dict(state.stats.throttled),
            "waiting_polls": state.waiters.count(),
            "clock_skew": state.clock.skew,
            "requests": requests,
        }
    )


@router.delete("/stats")
async def reset_stats(request: Request) -> Response:
    state_of(request).stats.reset()
    return Response(status_code=204)
