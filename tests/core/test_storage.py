"""core.storage.open_or_move_aside: a corrupt SQLite file is moved aside, a fresh one opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.storage import open_or_move_aside


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE IF NOT EXISTS t (x)")
    return db


def test_a_readable_file_is_opened_and_nothing_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "ok.db"
    open_db(path).close()
    reports: list[str] = []
    db = open_or_move_aside(path, lambda: open_db(path), on_moved_aside=reports.append)
    db.close()
    assert reports == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.db"]


def test_a_corrupt_file_and_its_wal_are_moved_aside_and_a_fresh_one_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue.db"
    path.write_bytes(b"this is not a database" * 100)
    (tmp_path / "queue.db-wal").write_bytes(b"junk")
    reports: list[str] = []
    db = open_or_move_aside(
        path,
        lambda: open_db(path),
        on_moved_aside=reports.append,
        what="queue file",
        fresh="an empty queue",
    )
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    db.close()
    (message,) = reports
    aside = sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    # the -shm, if SQLite made one while trying, goes along with the others
    stamp = aside[0].split(".corrupt-")[1]
    assert {f"queue.db.corrupt-{stamp}", f"queue.db.corrupt-{stamp}-wal"} <= set(aside)
    assert set(aside) <= {f"queue.db.corrupt-{stamp}{s}" for s in ("", "-wal", "-shm")}
    assert message.startswith(f"queue file {path} is unreadable (")
    names = [f"queue.db.corrupt-{stamp}{s}" for s in ("", "-wal", "-shm")]
    named = ", ".join(n for n in names if n in aside)
    assert f"moved aside as {named} and started an empty queue" in message


def test_without_a_name_the_message_starts_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "commands.db"
    path.write_bytes(b"\x00garbage" * 512)
    reports: list[str] = []
    open_or_move_aside(path, lambda: open_db(path), on_moved_aside=reports.append).close()
    assert reports[0].startswith(f"{path} is unreadable (")
    assert reports[0].endswith("and started an empty one")


def test_other_errors_are_not_swallowed(tmp_path: Path) -> None:
    def broken() -> None:
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        open_or_move_aside(tmp_path / "x.db", broken, on_moved_aside=lambda m: None)
    assert list(tmp_path.iterdir()) == []
