"""The agent's own directories and files: private whatever the umask.

The data dir holds the credentials, the queues (events not yet delivered) and commands.db
(command arguments); the run dir holds the bus sockets and the pid file. A data dir made
0755 by hand would let every local user read them, so at start every service checks both:

- a directory more open than it should be (the data dir: any access for group or others,
  0700; the run dir: group write or any access for others, 0750) is **tightened** (chmod) when the
  agent's user owns it;
- owned by anyone else, it is **refused**: the agent would trust files another user can
  replace. One line, exit 2 (:class:`core.config.ConfigError`).

The run dir stays group-readable (0750): the bus sockets in it are 0660 so that members of
the agent's group can run collectors and executors; they need not write the directory, and
must not: they could put a socket of their own in place of the agent's while it is down.

:func:`restrict_umask` (``umask 077``) is the first thing every agentbus process does;
files are still created with an explicit mode (:data:`FILE_MODE`), so that a process started
another way (a test, an embedding program) gets the same files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from core.config import Config, ConfigError

#: the process umask of every agentbus process
UMASK = 0o077
#: mode of every file the agent writes (0640 where a group must read: none today)
FILE_MODE = 0o600
#: mode bits never allowed on the data dir (nothing in it is for anyone else)
DATA_DIR_FORBIDDEN = 0o077
#: mode bits never allowed on the run dir (the group may enter it to reach the sockets,
#: not replace them)
RUN_DIR_FORBIDDEN = 0o027


def restrict_umask() -> int:
    """Set the process umask to 077; returns the previous one."""
    return os.umask(UMASK)


def secure_dir(path: Path, forbidden: int, *, create_mode: int, what: str) -> None:
    """Create ``path`` (mode ``create_mode``) or make an existing one no more open than
    ``~forbidden`` allows; refuse (ConfigError) a too-open directory of another user."""
    if not path.exists():
        try:
            path.mkdir(mode=create_mode, parents=True, exist_ok=True)
            os.chmod(path, create_mode)  # mkdir applies the umask; make it exact
        except OSError as exc:
            raise ConfigError(f"{what} {path}: cannot create it: {exc.strerror}") from None
        return
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path} is not a directory")
    mode = stat.S_IMODE(st.st_mode)
    if not mode & forbidden:
        return
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"{what} {path} is mode {mode:04o} and owned by uid {st.st_uid}, not by this "
            f"agent's user (uid {os.geteuid()}): other users could read or replace its files; "
            f"make it {mode & ~forbidden:04o} or give it to this user"
        )
    os.chmod(path, mode & ~forbidden)


def secure_agent_dirs(config: Config) -> None:
    """The data dir (0700) and the run dir (0750 at most), as the module docstring says."""
    secure_dir(config.data_dir, DATA_DIR_FORBIDDEN, create_mode=0o700, what="agent.data_dir")
    secure_dir(config.run_dir, RUN_DIR_FORBIDDEN, create_mode=0o750, what="agent.run_dir")


def make_private(path: Path, mode: int = FILE_MODE) -> None:
    """Create ``path`` empty with ``mode`` if missing, else set its mode to ``mode``.

    For files another library opens by name (SQLite, the log sink): created here first,
    they never exist with the umask's mode.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
