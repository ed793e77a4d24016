"""commands.db: persisted before publishing, duplicates refused, closed only on delivery."""

from __future__ import annotations

import stat

import pytest

from commander.command import BadCommand, ServerCommand
from commander.store import CommandStore


def command(doc: str = "d1", name: str = "myapp.scan", **kw: object) -> ServerCommand:
    return ServerCommand(
        document_id=doc, name=name, args={"a": [1]}, timeout=30.0, received_at=100.0, **kw
    )


def test_commands_survive_reopening_with_their_state(tmp_path):
    path = tmp_path / "data" / "commands.db"
    store = CommandStore(path)
    assert store.add(command("d1"))
    assert store.add(command("d2"))
    store.set_state("d2", "acked")
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = CommandStore(path)
    items = {i.command.document_id: i for i in again.in_flight()}
    assert items["d1"].state == "received"
    assert items["d2"].state == "acked"
    assert items["d1"].command == command("d1")


def test_a_document_id_is_taken_once_in_flight_and_after_delivery(tmp_path):
    store = CommandStore(tmp_path / "commands.db")
    assert store.add(command("d1"))
    assert not store.add(command("d1"))  # still in flight
    store.report("d1", 0, "done")
    assert not store.add(command("d1"))  # result waiting for the forwarder
    store.delivered(store.outbox())
    assert store.in_flight() == []
    assert not store.add(command("d1"))  # remembered after delivery
    assert store.counts()["executed_remembered"] == 1


def test_outbox_keeps_order_and_progress_reports_keep_the_command(tmp_path):
    store = CommandStore(tmp_path / "commands.db")
    store.add(command("r", name="restart"))
    store.add(command("x"))
    store.report("r", 2, "Restarting the agent", final=False)
    store.report("x", 1, "nope")
    out = store.outbox()
    assert [(o.document_id, o.code, o.final, o.name) for o in out] == [
        ("r", 2, False, "restart"),
        ("x", 1, True, "myapp.scan"),
    ]
    store.delivered(out[:1])
    assert [i.state for i in store.in_flight()] == ["restarting"]
    assert [o.document_id for o in store.outbox()] == ["x"]


def test_invalid_commands_are_answered_once(tmp_path):
    store = CommandStore(tmp_path / "commands.db")
    assert store.add_answered("bad", 1, "Command is not valid")
    assert not store.add_answered("bad", 1, "Command is not valid")
    assert [(o.document_id, o.code, o.message) for o in store.outbox()] == [
        ("bad", 1, "Command is not valid")
    ]


def test_prune_keeps_the_newest_ids(tmp_path):
    store = CommandStore(tmp_path / "commands.db")
    for i in range(5):
        store.add(command(f"d{i}"))
        store.report(f"d{i}", 0, "")
    store.delivered(store.outbox())
    assert store.prune_executed(keep=2) == 3
    assert store.counts()["executed_remembered"] == 2


@pytest.mark.parametrize(
    ("raw", "reason", "answerable"),
    [
        ("nope", "not_object", False),
        ({"action": {"name": "x"}}, "missing_document_id", False),
        ({"document_id": "d", "action": "x"}, "missing_action", True),
        ({"document_id": "d", "action": {"name": ""}}, "bad_action_name", True),
        ({"document_id": "d", "action": {"name": "x", "args": [1]}}, "bad_args", True),
    ],
)
def test_bad_server_commands_have_a_reason(raw, reason, answerable):
    with pytest.raises(BadCommand) as info:
        ServerCommand.from_server(raw, default_timeout=10)
    assert info.value.reason == reason
    assert (info.value.document_id is not None) == answerable


def test_server_command_fields_and_routing():
    cmd = ServerCommand.from_server(
        {
            "document_id": "A8-62pMBBmC6Jrvqj9kW",
            "action": {"name": "set-group", "version": "5.0.0", "args": {"groups": ["g1"]}},
            "timeout": 100,
            "status": "sent",
        },
        default_timeout=600,
        now=1000.0,
    )
    assert (cmd.topic, cmd.timeout, cmd.deadline) == ("agent", 100.0, 1100.0)
    msg = cmd.bus_message(now=1040.0)
    assert msg == {
        "id": "A8-62pMBBmC6Jrvqj9kW",
        "name": "set-group",
        "args": {"groups": ["g1"]},
        "timeout": 60.0,
        "issued_at": 1000.0,
    }
    other = ServerCommand.from_server(
        {"document_id": "d", "action": {"name": "myapp.scan"}}, default_timeout=600
    )
    assert (other.topic, other.args, other.timeout) == ("myapp", {}, 600.0)
    from commander.routing import topic_of

    assert [topic_of(n) for n in ("restart", "fim.scan", ".x", "x.", "a.b.c")] == [
        "agent",
        "fim",
        "agent",
        "agent",
        "a",
    ]
