"""Which program a name runs: the allowed directory, the names, and the trust checks.

A command names a program, never a path: ``<name>`` must match :data:`NAME` (no ``/``,
no ``..``), and runs ``<programs_dir>/<name>`` — a file, or a link to one (how an owner
enables one of our shipped programs) — or one of our shipped programs the configuration
enables by name. Nothing else runs.

Before a program runs, the file it really is (links followed) and every directory above
it, and the allowed directory and every directory above it, must be owned by root or by
this process's user and writable by nobody else (a world-writable directory with the
sticky bit, like /tmp, is accepted above them: nobody can replace another's entry in it).
Otherwise a user who could replace the file, or a directory on the way to it, could run
anything with the executor's privileges. Each refusal says why.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

#: a program's name: letters, digits, ``_``, ``-`` and inner dots; 1–64 characters
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: our own programs, shipped with the package (enabled by a link or ``enabled``)
SHIPPED_DIR = Path(__file__).with_name("programs")


class Refused(Exception):
    """The program may not run; ``reason`` is a word to count by."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def trusted_uids() -> frozenset[int]:
    """Owners whose files the executor runs: root and its own user."""
    return frozenset({0, os.geteuid()})


def check_name(name: object) -> str:
    """``name`` if it can name a program; Refused ``bad_name`` otherwise."""
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        shown = name if isinstance(name, str) else type(name).__name__
        raise Refused("bad_name", f"not allowed: {str(shown)[:80]!r} is not a program name")
    return name


@dataclass(frozen=True, slots=True)
class Program:
    name: str
    #: the file that runs (links resolved)
    path: Path
    #: where it was found: "dir" (programs_dir) or "shipped" (enabled by name)
    origin: str


def find(name: object, programs_dir: str, enabled: list[str] | tuple[str, ...] = ()) -> Program:
    """The program ``name`` runs, checked; Refused with the reason otherwise."""
    name = check_name(name)
    uids = trusted_uids()
    directory = Path(programs_dir)
    if not directory.is_absolute():
        raise Refused(
            "untrusted", f"not allowed: the programs directory {directory} is not absolute"
        )
    try:
        real_dir = Path(os.path.realpath(directory, strict=True))
    except OSError:
        raise Refused("not_found", f"not found: {name} (no programs directory)") from None
    check_chain(real_dir, uids, "the programs directory")
    candidate = real_dir / name
    origin = "dir"
    if not os.path.lexists(candidate):
        if name not in enabled or not (SHIPPED_DIR / name).exists():
            raise Refused("not_found", f"not found: {name}")
        candidate, origin = SHIPPED_DIR / name, "shipped"
    try:
        real = Path(os.path.realpath(candidate, strict=True))
    except OSError:
        raise Refused("not_found", f"not found: {name} (a link to nothing)") from None
    st = os.stat(real)
    if not stat.S_ISREG(st.st_mode):
        raise Refused("not_found", f"not found: {name} is not a regular file")
    check_owner(real, st, uids, "the program")
    check_chain(real.parent, uids, "the program's directory")
    if not st.st_mode & 0o111:
        raise Refused("not_allowed", f"not allowed: {name} is not executable")
    return Program(name, real, origin)


def check_chain(directory: Path, uids: frozenset[int], what: str) -> None:
    """``directory`` and each one above it: trusted owner, writable by nobody else."""
    for d in (directory, *directory.parents):
        st = os.stat(d)
        label = what if d == directory else f"{what}'s parent {d}"
        # above it, a shared sticky directory (/tmp) is fine if a trusted user owns it
        check_owner(
            d, st, uids, label, shared_ok=d != directory and bool(st.st_mode & stat.S_ISVTX)
        )


def check_owner(
    path: Path, st: os.stat_result, uids: frozenset[int], what: str, *, shared_ok: bool = False
) -> None:
    if st.st_uid not in uids:
        raise Refused(
            "untrusted",
            f"not allowed: {what} is owned by uid {st.st_uid}, not by root or the executor's user",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022 and not shared_ok:
        raise Refused(
            "untrusted",
            f"not allowed: {what} is mode {mode:04o}: others could replace what runs",
        )


def list_programs(
    programs_dir: str, enabled: list[str] | tuple[str, ...] = ()
) -> list[tuple[str, str]]:
    """``(name, what)`` of every name the directory and ``enabled`` offer: the path that
    runs, or why it would be refused."""
    names = set(enabled)
    try:
        names.update(e.name for e in os.scandir(programs_dir) if not e.name.startswith("."))
    except OSError:
        pass
    out = []
    for name in sorted(names):
        try:
            program = find(name, programs_dir, enabled)
            out.append(
                (
                    name,
                    f"{program.path}"
                    + (" (enabled by name)" if program.origin == "shipped" else ""),
                )
            )
        except Refused as exc:
            out.append((name, str(exc)))
    return out
