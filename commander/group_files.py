"""Storing a checked set of group files, all at once (the layout: core/groupset.py).

The files go to a new generation directory ``groups.<n>`` (each written atomically, mode
0600), with the manifest naming the groups in the server's order; then the ``groups`` link
is swapped to it with one rename and the other generations are removed. A crash or a
kill -9 at any moment leaves the old set or the new one in force, never a mix; what a crash
left behind is removed by the next store.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from pathlib import Path

from comms.private_files import ensure_private_dir, write_private
from core.groupset import GROUPS_LINK, MANIFEST, current_dir, file_name


def store_set(data_dir: str | Path, files: list[tuple[str, bytes]]) -> float:
    """Make ``files`` (``(group, content)`` in order) the stored set; returns its time.

    Raises OSError; the set in force is then unchanged.
    """
    data_dir = Path(data_dir)
    ensure_private_dir(data_dir)
    applied_at = time.time()
    name = f"{GROUPS_LINK}.{time.time_ns()}.{secrets.token_hex(3)}"
    folder = data_dir / name
    folder.mkdir(mode=0o700)
    try:
        for group, body in files:
            write_private(folder / file_name(group), body)
        manifest = {"groups": [g for g, _ in files], "applied_at": applied_at}
        write_private(folder / MANIFEST, json.dumps(manifest).encode())
        link = data_dir / GROUPS_LINK
        if link.is_dir() and not link.is_symlink():
            # the plain directory of an older version: out of the way (removed below)
            os.replace(link, data_dir / f"{GROUPS_LINK}.legacy")
        tmp = data_dir / f".{name}.link"
        os.symlink(name, tmp)
        os.replace(tmp, link)  # the one step that switches sets
        _fsync_dir(data_dir)
    except BaseException:
        if current_dir(data_dir) != folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    prune(data_dir)
    return applied_at


def prune(data_dir: Path) -> None:
    """Remove every generation but the one in force, and links a crash left behind."""
    keep = current_dir(data_dir)
    for path in data_dir.glob(f"{GROUPS_LINK}.*"):
        if path != keep and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
    for path in data_dir.glob(f".{GROUPS_LINK}.*.link"):
        with contextlib.suppress(OSError):
            path.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse; the rename holds
            os.fsync(fd)
    finally:
        os.close(fd)
