"""The stored set of group files: which groups, in which order, applied when, their text.

Layout under the data dir (written by :mod:`commander.group_files`, read here)::

    groups -> groups.<generation>      a symbolic link, replaced atomically
    groups.<generation>/<group>.yml    each group's file as the server sent it
    groups.<generation>/applied.json   {"groups": [...in the server's order], "applied_at": t}

A new set is written to a new generation directory, then the link is swapped with one
``rename``: a reader (and a crash, a kill -9) sees the old set or the new one, never a mix.
A reader resolves the link once and reads everything from that directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

#: group names the server accepts (letters, digits, ``_ - .``; not ``.`` or ``..``); used
#: with fullmatch: ``$`` alone would let a name end in a newline
GROUP_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,255}")
#: the link under the data dir, and the prefix of the generation directories
GROUPS_LINK = "groups"
#: the manifest of a generation
MANIFEST = "applied.json"


def valid_group_name(name: object) -> bool:
    return isinstance(name, str) and bool(GROUP_NAME.fullmatch(name)) and name not in (".", "..")


def file_name(group: str) -> str:
    return f"{group}.yml"


@dataclass(frozen=True)
class StoredGroups:
    """The set in force: ``files`` is ``(group, text)`` in the server's order."""

    files: tuple[tuple[str, bytes], ...] = ()
    applied_at: float | None = None
    #: the directory read (None: no set stored)
    directory: Path | None = None
    #: what could not be read (a file missing): the group is left out, with this reason
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        return [g for g, _ in self.files]


def current_dir(data_dir: str | Path) -> Path | None:
    """The generation directory the link points to, or None when no set was stored."""
    link = Path(data_dir) / GROUPS_LINK
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # a plain directory of an older version: no applied set
    resolved = link.parent / target
    return resolved if resolved.is_dir() else None


def read_stored(data_dir: str | Path) -> StoredGroups:
    """The stored set; an empty one when none was stored (or its manifest is unreadable)."""
    folder = current_dir(data_dir)
    if folder is None:
        return StoredGroups()
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
        names = manifest["groups"]
        applied_at = float(manifest["applied_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return StoredGroups(directory=folder, problems={"*": "the manifest is unreadable"})
    files: list[tuple[str, bytes]] = []
    problems: dict[str, str] = {}
    for group in names if isinstance(names, list) else []:
        if not valid_group_name(group):
            continue
        try:
            files.append((group, (folder / file_name(group)).read_bytes()))
        except OSError as exc:
            problems[group] = exc.strerror or str(exc)
    return StoredGroups(tuple(files), applied_at, folder, problems)
