"""The admin API's bearer token: made at start, kept in a 0600 file, found by the CLI.

The server writes a fresh random token to ``<data dir>/admin.token`` at every start (a token
that leaked dies with a restart), or reads the one in ``--admin-token-file FILE`` when that
file exists. Only the file's path is ever printed. ``agentbus server <action>`` finds the
token in ``--admin-token-file``, ``$AGENTBUS_ADMIN_TOKEN``, or ``<--data-dir>/admin.token``,
so the user who started the server can drive it unchanged. No heavy imports: the CLI uses it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

#: name of the token file in the server's data dir
TOKEN_FILE = "admin.token"
#: the token itself, for the CLI (e.g. from a secrets manager)
TOKEN_ENV = "AGENTBUS_ADMIN_TOKEN"
#: the token file, for the server and the CLI (instead of ``--admin-token-file``)
TOKEN_FILE_ENV = "AGENTBUS_ADMIN_TOKEN_FILE"
#: shortest token the server accepts from a file (``new_token`` makes 43 characters)
MIN_LENGTH = 32


class TokenFileError(Exception):
    """The token file cannot be used; the message is one line for the operator."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_token(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` atomically, mode 0600 whatever the umask."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_token(path: Path, *, private: bool = False) -> str:
    """The token in ``path`` (one line); ``private``: refuse a file others may read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise TokenFileError(f"cannot read the admin token file {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if private and mode & 0o077:
            raise TokenFileError(
                f"the admin token file {path} is mode {stat.S_IMODE(mode):04o}: others could"
                " read it; chmod 600 it"
            )
        token = os.read(fd, 4096).decode(errors="replace").strip()
    finally:
        os.close(fd)
    if not token:
        raise TokenFileError(f"the admin token file {path} is empty")
    return token


def server_token(data_dir: Path, token_file: Path | None) -> tuple[str, Path]:
    """(token, file) of a starting server: ``token_file``'s if it exists, else a new one."""
    if token_file is not None and token_file.exists():
        token = read_token(token_file, private=True)
        if len(token) < MIN_LENGTH:
            raise TokenFileError(
                f"the admin token in {token_file} is shorter than {MIN_LENGTH} characters"
            )
        return token, token_file
    path = token_file or data_dir / TOKEN_FILE
    token = new_token()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_token(path, token)
    except OSError as exc:
        raise TokenFileError(f"cannot write the admin token file {path}: {exc}") from None
    return token, path


def client_token(token_file: str | None, data_dir: str) -> str | None:
    """The token for ``agentbus server <action>``; None when nothing names one."""
    if token_file:
        return read_token(Path(token_file))
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = Path(data_dir) / TOKEN_FILE
    if not path.exists():
        return None
    return read_token(path)
