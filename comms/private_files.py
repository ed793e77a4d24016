"""Files only the agent may read: written atomically, mode 0600 from the first byte.

A crash (or kill -9) at any moment leaves either the old file or the new one, never a mix:
the content goes to a temporary file in the same directory, is fsynced, then renamed over
the target with ``os.replace`` and the directory is fsynced so the rename survives a power
cut. The temporary file is created with ``O_EXCL`` and mode 0600, so there is no instant in
which the secret is readable by others (no chmod after the fact).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

#: mode of the data dir when we create it
DIR_MODE = 0o700
#: mode of every private file
FILE_MODE = 0o600


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 if missing; an existing dir is left as is."""
    if path.is_dir():
        return
    # makedirs applies the mode under the umask; chmod the leaf so it is exactly 0700.
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def remove_private(path: Path) -> None:
    """Delete ``path`` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)
