"""Which policy files may be loaded: a policy is code that runs as the agent.

A policy file is read only when nobody but root and the agent's own user could have
written it: the file and every directory above it are owned by root or the agent's user,
and none is writable by group or others — except a directory with the sticky bit
(``/tmp``), where others cannot rename or replace what is not theirs. The file is
opened without following a final symbolic link, checked again through the open
descriptor (so what is read is what was checked), must be a regular file and is read up
to a size cap. Every refusal says why, in one line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UntrustedPolicy(Exception):
    """A policy file that must not be loaded; the message says why."""


def trusted_owners() -> set[int]:
    return {0, os.geteuid()}


def _check(st: os.stat_result, what: str, *, directory: bool) -> None:
    owners = trusted_owners()
    if st.st_uid not in owners:
        raise UntrustedPolicy(f"{what} is owned by uid {st.st_uid}, not root or the agent's user")
    writable = stat.S_IMODE(st.st_mode) & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (directory and st.st_mode & stat.S_ISVTX):
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        raise UntrustedPolicy(f"{what} is writable by group or others (mode {mode})")


def read_trusted(path: str | Path, max_bytes: int) -> bytes:
    """The content of a policy file that passes the checks; raises :class:`UntrustedPolicy`."""
    real = Path(os.path.realpath(path))
    for parent in reversed(real.parents):
        try:
            st = os.stat(parent)
        except OSError as exc:
            raise UntrustedPolicy(f"cannot inspect directory {parent}: {exc.strerror}") from None
        _check(st, f"directory {parent}", directory=True)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UntrustedPolicy("no such file") from None
    except OSError as exc:
        raise UntrustedPolicy(f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedPolicy("not a regular file")
        _check(st, "the file", directory=False)
        if st.st_size > max_bytes:
            raise UntrustedPolicy(f"larger than max_policy_bytes ({st.st_size} > {max_bytes})")
        data = b""
        while len(data) <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > max_bytes:
            raise UntrustedPolicy(f"larger than max_policy_bytes ({max_bytes})")
        return data
    finally:
        os.close(fd)


def within(path: str | Path, directories: list[str]) -> bool:
    """Whether ``path`` (resolved) lies in one of ``directories`` (resolved)."""
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(os.path.realpath(d)) for d in directories)
