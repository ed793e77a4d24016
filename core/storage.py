"""The services' SQLite files: private from their creation, and what to do when one cannot
be read at start-up."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from core.private_dirs import FILE_MODE, make_private

_T = TypeVar("_T")

#: the files SQLite keeps next to a database
SIDE_FILES = ("-wal", "-shm", "-journal")


def private_db(path: Path, mode: int = FILE_MODE) -> Path:
    """Make the SQLite file ``path`` (created empty if missing) and its side files ``mode``.

    Called before SQLite opens the file: SQLite creates ``-wal``, ``-shm`` and
    ``-journal`` with the mode of the database file, so they are private too, whatever the
    umask. Side files left by an earlier run with a wider mode are narrowed as well.
    """
    make_private(path, mode)
    for suffix in SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path.with_name(path.name + suffix), mode)
    return path


def move_aside(path: Path) -> list[str]:
    """Rename a corrupt SQLite file (and its -wal/-shm) to ``<name>.corrupt-<time>``.

    A file SQLite cannot read would otherwise stop its service at every start; the copy is
    kept next to the new file for a post-mortem. Returns the new names.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            target = path.with_name(f"{path.name}.corrupt-{stamp}{suffix}")
            part.rename(target)
            moved.append(target.name)
    return moved


def open_or_move_aside(
    path: Path,
    opener: Callable[[], _T],
    *,
    on_moved_aside: Callable[[str], None],
    what: str = "",
    fresh: str = "an empty one",
) -> _T:
    """``opener()``; if SQLite cannot read ``path``, move the file aside and open a fresh one.

    A file SQLite cannot read (not a database, truncated, malformed) would otherwise stop
    its service at every start, and with it all it does for the host. What the file held is
    lost to this agent; the file is kept next to the new one (:func:`move_aside`) for a
    post-mortem. ``on_moved_aside`` gets the one-line account of what happened —
    ``"<what> <path> is unreadable (<error>); moved aside as <names> and started <fresh>"``
    — for the service to log and count. An error of the second ``opener()`` is raised.
    """
    try:
        return opener()
    except sqlite3.DatabaseError as exc:
        moved = move_aside(path)
        subject = f"{what} {path}" if what else str(path)
        on_moved_aside(
            f"{subject} is unreadable ({exc}); moved aside as {', '.join(moved)} and "
            f"started {fresh}"
        )
        return opener()
