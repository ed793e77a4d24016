"""A member of the agent's group may read status, not change anything (second uid).

The attack: the local user ``nobody``, given the agent's group (as a collector's user
would be), connects to the control sockets of a running forwarder and tries to drop the
quarantine and restart the agent. The status socket answers ``status`` and the quarantine
listing and refuses every command that changes something, naming the admin socket; the
admin socket (0600) cannot even be reached, and when an operator loosened its mode, the
peer's uid (``SO_PEERCRED``) still refuses the stranger.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from bus.control import ControlServer, request
from bus.errors import BusError
from core.config import Config
from core.service import endpoints_from_config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.forwarder import ForwarderThread
from tests.fixtures.other_user import needs_root, run_as_nobody

#: the agent's group in these tests (any gid nobody is not in; no group is created)
AGENT_GID = 48_151

pytestmark = needs_root


def _give_group(run_dir: Path, *files: Path) -> None:
    """The run dir and the group-accessible socket files belong to the agent's group."""
    os.chown(run_dir, -1, AGENT_GID)
    run_dir.chmod(0o750)
    for path in files:
        os.chown(path, -1, AGENT_GID)


def _raw_request(endpoint: str, message: dict[str, Any], timeout_ms: int = 1500) -> Any:
    """A request through libzmq alone (no permission pre-check): the answer, or None."""
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sock.send(msgpack.packb(message))
        if not sock.poll(timeout_ms):
            return None
        return msgpack.unpackb(sock.recv(), raw=False)
    finally:
        ctx.destroy(linger=0)


def _as_group_member(status_ep: str, admin_ep: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["status"] = request(status_ep, {"cmd": "status"}, timeout=5)
    out["list"] = request(status_ep, {"cmd": "quarantine_list"}, timeout=5)
    out["drop_on_status"] = request(status_ep, {"cmd": "quarantine_drop", "all": True}, timeout=5)
    out["retry_on_status"] = request(status_ep, {"cmd": "quarantine_retry", "all": True}, timeout=5)
    try:
        request(admin_ep, {"cmd": "quarantine_drop", "all": True}, timeout=2)
        out["admin"] = "answered"
    except BusError as exc:
        out["admin"] = str(exc)
    out["admin_raw"] = _raw_request(admin_ep, {"cmd": "quarantine_drop", "all": True})
    return out


@pytest.mark.timeout(90)
def test_a_group_member_reads_status_but_cannot_drop_the_quarantine(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
    run_dir: Path,
) -> None:
    agent = enroll_agent()
    fw = run_forwarder(agent.config)
    eps = endpoints_from_config(agent.config)
    status_ep, admin_ep = eps.control("forwarder"), eps.admin("forwarder")
    status_path = run_dir / "control-forwarder.sock"
    admin_path = run_dir / "admin-forwarder.sock"
    _give_group(run_dir, status_path)
    assert stat.S_IMODE(status_path.stat().st_mode) == 0o660
    assert stat.S_IMODE(admin_path.stat().st_mode) == 0o600

    seen = run_as_nobody(_as_group_member, status_ep, admin_ep, groups=(AGENT_GID,))

    assert seen["status"]["ok"] is True and seen["status"]["service"] == "forwarder"
    assert seen["list"]["ok"] is True
    for key in ("drop_on_status", "retry_on_status"):
        assert seen[key]["ok"] is False
        assert admin_ep in seen[key]["error"], seen[key]
    assert "permission denied" in seen["admin"]
    assert seen["admin_raw"] is None  # libzmq cannot connect to a 0600 socket file
    assert request(status_ep, {"cmd": "status"})["control_rejected"] == {"admin_only": 2}
    assert fw.alive
    # the owner still can
    assert request(admin_ep, {"cmd": "quarantine_drop", "all": True})["ok"] is True


def _restart_through_loose_admin(admin_ep: str) -> Any:
    return _raw_request(admin_ep, {"cmd": "restart"}, timeout_ms=5000)


@pytest.mark.timeout(60)
def test_the_admin_socket_checks_the_peer_uid_even_when_its_mode_was_loosened(
    run_dir: Path,
) -> None:
    """An operator chmods the admin socket 0666 (or the run dir is shared): the peer's
    uid, from SO_PEERCRED, still refuses a restart from nobody, counted as not_owner."""
    status_ep, admin_ep = f"ipc://{run_dir}/control-agent.sock", f"ipc://{run_dir}/admin-agent.sock"
    restarts: list[dict[str, Any]] = []
    server = ControlServer(
        status_ep,
        {
            "status": lambda _r: {"ok": True},
            "restart": lambda r: restarts.append(r) or {"ok": True},
        },
        admin_endpoint=admin_ep,
    )
    server.start()
    try:
        run_dir.chmod(0o755)
        (run_dir / "admin-agent.sock").chmod(0o666)
        reply = run_as_nobody(_restart_through_loose_admin, admin_ep, groups=(AGENT_GID,))
        assert reply == {
            "ok": False,
            "error": "the admin socket serves the agent's user and root only",
        }
        assert restarts == []
        assert server.rejected == {"not_owner": 1}
        assert request(admin_ep, {"cmd": "restart"}) == {"ok": True}  # root: admitted
        assert len(restarts) == 1
    finally:
        server.stop()
