"""What every SQLite store of the agent promises, one suite run against each of them.

Modelled on huey's storage tests: one set of tests, a small adapter per store that knows
how to open it, commit numbered records and read them back through the store's own API.
The stores:

- ``forwarder.store.Store`` — a queue of chunks (``queue/<kind>.db``);
- ``forwarder.quarantine.Quarantine`` — refused events (``queue/quarantine.db``);
- ``commander.store.CommandStore`` — commands until their result is delivered (``commands.db``);
- ``collectors.state.StateStore`` — what a stateful collector last reported
  (``collectors/<name>.db``);
- ``collectors.logcollector.offsets.OffsetStore`` — where the log collector stopped
  reading each file (``collectors/logcollector.db``).

The shared promises: a new file starts empty (an empty file too), what was committed is
there after close and reopen, and for a new opener while the first one never closed (what
a crash leaves), the file is in WAL mode, an unreadable file is refused *at open* with
``sqlite3.DatabaseError`` (so :func:`core.storage.open_or_move_aside` can move it aside
and start a fresh one), and ``close`` may be called twice. What each store does beyond
this is tested in its own area (tests/forwarder/test_store.py, tests/commander/
test_store.py, tests/collectors/test_stateful.py, tests/collectors/test_logcollector.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.logcollector.offsets import OffsetRow, OffsetStore
from collectors.state import Change, StateStore
from commander.command import ServerCommand
from commander.store import CommandStore
from core.storage import open_or_move_aside
from forwarder.quarantine import Quarantine
from forwarder.store import Store
from tests.forwarder.helpers import body_seqs, chunk


class Adapter:
    """How the suite drives one store: records are numbered, the store keeps the numbers."""

    #: the store's file name in its directory
    filename = "store.db"
    #: whether the store creates a missing parent directory itself
    makes_dirs = True

    def open(self, path: Path) -> Any:
        raise NotImplementedError

    def write(self, store: Any, numbers: range) -> None:
        """Commit one record per number (committed when this returns)."""
        raise NotImplementedError

    def read(self, store: Any) -> list[int]:
        """The numbers of the records the store holds, sorted, without changing them."""
        raise NotImplementedError

    def close(self, store: Any) -> None:
        store.close()


class QueueAdapter(Adapter):
    filename = "stateless.db"

    def open(self, path: Path) -> Store:
        return Store(path.parent, path.stem, max_bytes=10**9)

    def write(self, store: Store, numbers: range) -> None:
        for n in numbers:
            assert store.put(chunk(n))

    def read(self, store: Store) -> list[int]:
        # chunks not handed to a sender, found without moving the senders' cursor
        return sorted(s for c in store.find_ready([b'"seq"']) for s in body_seqs(c.body))

    def close(self, store: Store) -> None:
        assert store.close()


class QuarantineAdapter(Adapter):
    filename = "quarantine.db"

    def open(self, path: Path) -> Quarantine:
        return Quarantine(path)

    def write(self, store: Quarantine, numbers: range) -> None:
        for n in numbers:
            assert store.add("stateless", [chunk(n).body], 400, f"refused {n}") == 1

    def read(self, store: Quarantine) -> list[int]:
        return sorted(body_seqs(body)[0] for _id, _kind, body in store.get(None))


class CommandStoreAdapter(Adapter):
    filename = "commands.db"

    def open(self, path: Path) -> CommandStore:
        return CommandStore(path)

    def write(self, store: CommandStore, numbers: range) -> None:
        for n in numbers:
            command = ServerCommand(
                document_id=f"d{n}",
                name="myapp.scan",
                args={"n": n},
                timeout=30.0,
                received_at=1000.0 + n,
            )
            assert store.add(command)

    def read(self, store: CommandStore) -> list[int]:
        return sorted(int(s.command.document_id[1:]) for s in store.in_flight())


class StateStoreAdapter(Adapter):
    filename = "inventory.db"
    makes_dirs = False  # the collectors' base makes collectors/ before opening

    def open(self, path: Path) -> StateStore:
        return StateStore(path)

    def write(self, store: StateStore, numbers: range) -> None:
        store.apply(
            [Change("create", "packages", f"k{n}", f"doc{n}", {"n": n}, str(n)) for n in numbers]
        )

    def read(self, store: StateStore) -> list[int]:
        return sorted(int(key[1:]) for key in store.items("packages"))


class OffsetStoreAdapter(Adapter):
    filename = "logcollector.db"
    makes_dirs = False  # the collectors' base makes collectors/ before opening

    def open(self, path: Path) -> OffsetStore:
        return OffsetStore(path)

    def write(self, store: OffsetStore, numbers: range) -> None:
        for n in numbers:
            store.save(OffsetRow(dev=1, ino=n, path=f"/var/log/f{n}.log", offset=10 * n))

    def read(self, store: OffsetStore) -> list[int]:
        return sorted(ino for _dev, ino in store.load())


ADAPTERS = [
    pytest.param(QueueAdapter(), id="forwarder-queue"),
    pytest.param(QuarantineAdapter(), id="quarantine"),
    pytest.param(CommandStoreAdapter(), id="commands"),
    pytest.param(StateStoreAdapter(), id="collector-state"),
    pytest.param(OffsetStoreAdapter(), id="logcollector-offsets"),
]


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def path(tmp_path: Path, adapter: Adapter) -> Path:
    return tmp_path / adapter.filename


@pytest.fixture
def opened(adapter: Adapter) -> Iterator[list[Any]]:
    """Stores a test opened; each closed at teardown (closing twice is allowed)."""
    stores: list[Any] = []
    yield stores
    for store in stores:
        store.close()


def open_store(adapter: Adapter, path: Path, opened: list[Any]) -> Any:
    store = adapter.open(path)
    opened.append(store)
    return store


def test_a_new_file_starts_empty(adapter: Adapter, path: Path, opened: list[Any]) -> None:
    store = open_store(adapter, path, opened)
    assert path.is_file()
    assert adapter.read(store) == []
    adapter.write(store, range(3))
    assert adapter.read(store) == [0, 1, 2]


def test_an_empty_file_is_a_new_store(adapter: Adapter, path: Path, opened: list[Any]) -> None:
    path.touch()  # e.g. created by hand, or a crash before SQLite wrote its header
    store = open_store(adapter, path, opened)
    assert adapter.read(store) == []
    adapter.write(store, range(1))
    assert adapter.read(store) == [0]


def test_a_missing_directory_is_made(adapter: Adapter, tmp_path: Path, opened: list[Any]) -> None:
    if not adapter.makes_dirs:
        pytest.skip("this store's owner makes its directory")
    path = tmp_path / "new" / "dir" / adapter.filename
    store = open_store(adapter, path, opened)
    assert path.is_file() and adapter.read(store) == []


def test_what_was_committed_survives_close_and_reopen(
    adapter: Adapter, path: Path, opened: list[Any]
) -> None:
    store = open_store(adapter, path, opened)
    adapter.write(store, range(5))
    adapter.close(store)
    again = open_store(adapter, path, opened)
    assert adapter.read(again) == [0, 1, 2, 3, 4]
    adapter.write(again, range(5, 8))
    adapter.close(again)
    third = open_store(adapter, path, opened)
    assert adapter.read(third) == list(range(8))


def test_what_was_committed_is_there_for_the_next_opener_without_a_close(
    adapter: Adapter, path: Path, opened: list[Any]
) -> None:
    # A crash never closes: the next process opens the file as the last commit left it.
    store = open_store(adapter, path, opened)
    adapter.write(store, range(4))
    successor = open_store(adapter, path, opened)
    assert adapter.read(successor) == [0, 1, 2, 3]


def test_the_file_is_in_wal_mode(adapter: Adapter, path: Path, opened: list[Any]) -> None:
    open_store(adapter, path, opened)
    probe = sqlite3.connect(str(path))
    try:
        assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        probe.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"this is not an SQLite file\n" * 400,
        b"\x00garbage" * 1000,
        b"SQLite format 3\x00" + b"\xff" * 4000,
    ],
    ids=["text", "binary", "bad-header"],
)
def test_an_unreadable_file_is_refused_at_open_so_it_can_be_moved_aside(
    adapter: Adapter, path: Path, opened: list[Any], garbage: bytes
) -> None:
    path.write_bytes(garbage)
    with pytest.raises(sqlite3.DatabaseError):
        open_store(adapter, path, opened)
    assert path.read_bytes() == garbage  # refused, not overwritten
    reports: list[str] = []
    store = open_or_move_aside(path, lambda: adapter.open(path), on_moved_aside=reports.append)
    opened.append(store)
    assert adapter.read(store) == []
    [report] = reports
    assert f"{path} is unreadable" in report
    [aside] = [
        p
        for p in path.parent.iterdir()
        if p.name.startswith(f"{path.name}.corrupt-") and not p.name.endswith(("-wal", "-shm"))
    ]
    assert aside.read_bytes() == garbage


def test_close_may_be_called_twice(adapter: Adapter, path: Path, opened: list[Any]) -> None:
    store = adapter.open(path)
    adapter.write(store, range(2))
    store.close()
    store.close()
    again = open_store(adapter, path, opened)
    assert adapter.read(again) == [0, 1]
