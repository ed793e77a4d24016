"""The services' SQLite files: what to do when one cannot be read at start-up."""

from __future__ import annotations

import time
from pathlib import Path


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
