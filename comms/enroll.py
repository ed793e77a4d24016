"""Enrollment: register this agent with the management API and store its credentials.

Steps (docs/protocol.md, "Management API"): authenticate with the management user (Basic
auth) to get a token, POST the agent (id, a random 32-character key, name, host facts), and
on 201 write ``credentials.json`` (0600, atomic). An old ``token.json`` belongs to the
previous identity and is removed.

The id's version: a UUID v7 unless pinned. A server that accepts only v4 ids (Wazuh 6.0)
refuses a v7 with 400 ``'<id>' is not a 'uuid4' - 'id'``; nothing was created then, so the
agent is posted again at once with a v4 id and one line says so. A pinned version is never
swapped: its refusal is the error.

Which comms URL is stored (``--connect-url`` not given): when the enrollment URL names a
port, the same scheme and host on port 27000 (the comms API's default port); when it names
none, the enrollment URL itself — a server behind a reverse proxy serves both APIs on one
address.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import uuid6
from loguru import logger

from bus.errors import EXIT_USAGE, AgentbusError
from comms.credentials import (
    Credentials,
    credentials_path,
    load_credentials,
    save_credentials,
)
from comms.errors import (
    AlreadyEnrolled,
    BadResponse,
    NotEnrolled,
    ServerRejected,
    ServerUnreachable,
    error_of,
)
from comms.hostinfo import host_facts
from comms.http import answer_cap, make_session, retry_after, send, timeouts
from comms.private_files import remove_private, write_private
from comms.server_url import check_server_url
from comms.tokens import TOKEN_FILE
from core.config import Config
from core.version import __version__

#: default port of the comms API
COMMS_PORT = 27000
#: longest agent name the server accepts
MAX_NAME = 128
KEY_LENGTH = 32
_KEY_ALPHABET = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"^[A-Za-z0-9]{32}$")
#: error code of the management API for an id that already exists
ERROR_DUPLICATE_ID = 1708
#: what the server's name validator accepts (with MAX_NAME); ``\w`` as Python reads it
_NAME_RE = re.compile(r"[\w\-.%]+")
#: the validator's answer to an id of the wrong version: "'<id>' is not a 'uuid4' - 'id'"
_WRONG_VERSION_RE = re.compile(r"is not a 'uuid(?P<wanted>\d)'")
#: id versions the agent can make; None (auto) is v7 with the v4 fallback
UUID_VERSIONS = (4, 7)


class EnrollmentUsage(AgentbusError):
    """The enrollment request is wrong before anything was sent (bad URL, name, key)."""

    exit_code = EXIT_USAGE


class CredentialsNotSaved(AgentbusError):
    """The data dir cannot hold the credentials (permissions, full disk)."""


@dataclass(frozen=True, kw_only=True)
class EnrollRequest:
    """What ``agentbus register`` was asked to do."""

    enroll_url: str
    user: str
    password: str
    name: str | None = None
    key: str | None = None
    connect_url: str | None = None
    verification_mode: str | None = None
    force: bool = False
    #: pin the id's version (4 or 7); None: v7, and v4 when the server refuses v7
    uuid_version: int | None = None


def new_key() -> str:
    """32 characters from [A-Za-z0-9], drawn with ``secrets``."""
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(KEY_LENGTH))


def new_agent_id(version: int = 7) -> str:
    """A UUID v7 (time-ordered, the default) or v4 (random), made by the agent."""
    if version == 7:
        return str(uuid6.uuid7())
    if version == 4:
        import uuid

        return str(uuid.uuid4())
    raise ValueError(f"the agent id is a UUID v4 or v7, not v{version}")


def default_connect_url(enroll_url: str) -> str:
    """The comms URL used when ``--connect-url`` is not given (see the module docstring)."""
    parts = urlsplit(enroll_url)
    if parts.port is None:
        return enroll_url.rstrip("/")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal needs its brackets back
        host = f"[{host}]"
    return urlunsplit((parts.scheme, f"{host}:{COMMS_PORT}", "", "", ""))


def check_url(url: str, flag: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EnrollmentUsage(
            f"{flag} must be an http(s) URL like https://server:55000, got {url!r}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise EnrollmentUsage(f"{flag} has an invalid port: {url!r}") from None
    return url.rstrip("/")


def check_name(name: str, *, from_hostname: bool = False) -> str:
    """The server's rule (``^[\\w\\-.%]+$``, 1..128 characters), checked before sending.

    ``from_hostname``: no name was given, so the message points at ``--name``.
    """
    fix = "; give a name with --name" if from_hostname else ""
    if not name or not name.strip():
        what = "the host name is empty" if from_hostname else "the agent name must not be empty"
        raise EnrollmentUsage(what + fix)
    if len(name) > MAX_NAME:
        what = "the host name" if from_hostname else "the agent name"
        raise EnrollmentUsage(f"{what} is {len(name)} characters long; at most {MAX_NAME}{fix}")
    if not _NAME_RE.fullmatch(name):
        what = (
            f"the host name {name!r} is not a valid agent name"
            if from_hostname
            else f"the agent name {name!r} is not valid"
        )
        bad = "".join(dict.fromkeys(c for c in name if not _NAME_RE.fullmatch(c)))
        raise EnrollmentUsage(
            f"{what}: {bad!r} not allowed (only letters, digits, '_', '-', '.', '%'){fix}"
        )
    return name


def check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise EnrollmentUsage(
            f"the key must be exactly {KEY_LENGTH} characters from A-Z, a-z, 0-9 "
            f"(got {len(key)} characters)"
        )
    return key


def enroll(
    config: Config,
    request: EnrollRequest,
    *,
    facts: dict[str, Any] | None = None,
    session: requests.Session | None = None,
    notice: Callable[[str], None] | None = None,
) -> Credentials:
    """Enroll the agent and store its credentials; returns them.

    ``notice`` receives the one line that says the id's version was changed (default: the
    log, as a warning).

    Raises :class:`AlreadyEnrolled` (exit 2) when credentials exist and ``force`` is off,
    :class:`EnrollmentUsage` (exit 2) for bad input, :class:`ServerRejected` (exit 3) when
    the server refuses, :class:`ServerUnreachable`/:class:`TLSFailure` (exit 3).
    """
    data_dir = config.data_dir
    _refuse_if_enrolled(data_dir, request.force)
    # Before the server creates the agent: an agent enrolled but not stored is an orphan.
    _check_writable(data_dir)
    enroll_url = check_url(request.enroll_url, "--enroll-url")
    connect_url = check_url(request.connect_url or default_connect_url(enroll_url), "--connect-url")
    # Before the password is sent: both must be https unless loopback or allowed.
    check_server_url(enroll_url, config, what="--enroll-url")
    check_server_url(connect_url, config, what="--connect-url")
    if request.name is not None:
        name = check_name(request.name)
    else:
        name = check_name(socket.gethostname(), from_hostname=True)
    key = check_key(request.key) if request.key is not None else new_key()
    pinned = request.uuid_version
    if pinned is not None and pinned not in UUID_VERSIONS:
        raise EnrollmentUsage(f"--uuid-version must be 4 or 7, not {pinned}")
    mode = request.verification_mode or config.agent.verification_mode
    http = session if session is not None else make_session(config, 2, verification_mode=mode)

    token = _management_token(config, http, enroll_url, request.user, request.password)
    body = {
        "id": new_agent_id(pinned or 7),
        "name": name,
        "key": key,
        "type": "Endpoint",
        "version": __version__,
        "host": facts if facts is not None else host_facts(),
    }
    refusal = _post_agent(config, http, enroll_url, token, body)
    fallback = ""
    if refusal is not None and pinned is None and _wants_v4(refusal, str(body["id"])):
        # Nothing was created: the same request with a v4 id is the whole fix.
        refused_id = body["id"]
        body["id"] = new_agent_id(4)
        refusal = _post_agent(config, http, enroll_url, token, body)
        if refusal is None:
            fallback = (
                f"the server accepts only UUID v4 agent ids (it refused v7 {refused_id}); "
                f"enrolled with v4 id {body['id']} instead"
            )
        else:
            refusal.note = f"with a v4 id, after the server refused v7 {refused_id}"
    if refusal is not None:
        if pinned is not None and _wants_v4(refusal, str(body["id"])):
            raise ServerRejected(
                refusal.status,
                refusal.message,
                what=f"the server refused the agent's UUID v{pinned} id",
                hint="it accepts only v4 ids: use --uuid-version 4, or leave the flag out",
            )
        raise refusal.error()
    agent_id = str(body["id"])

    credentials = Credentials(
        uuid=agent_id,
        key=key,
        name=name,
        groups=(),
        server_url=connect_url,
        enroll_url=enroll_url,
        verification_mode=mode,
        enrolled_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    try:
        save_credentials(data_dir, credentials)
    except OSError as exc:
        raise CredentialsNotSaved(
            f"agent {agent_id} was enrolled but its credentials could not be written to "
            f"{credentials_path(data_dir)}: {exc.strerror or exc}"
        ) from None
    # A cached token of the previous identity would be refused; it must go.
    # (The lock file stays: a running service may hold it, and it carries no data.)
    remove_private(data_dir / TOKEN_FILE)
    logger.info("enrolled agent {} ({}) with {}", name, agent_id, enroll_url)
    if fallback:
        (notice or _log_notice)(fallback)
    return credentials


@dataclass
class _Refusal:
    """A non-201 answer to ``POST /agents``, read but not raised yet (a retry may follow)."""

    status: int
    message: str
    code: int | None
    agent_id: str
    #: context for the message (the v4 retry after a refused v7)
    note: str = ""

    def error(self) -> ServerRejected:
        message = self.message
        if self.code == ERROR_DUPLICATE_ID:
            message = f"{message} (agent id {self.agent_id} already exists)"
        if self.note:
            message = f"{message} ({self.note})"
        return ServerRejected(self.status, message, what="the server refused the agent")


def _post_agent(
    config: Config, http: requests.Session, enroll_url: str, token: str, body: dict[str, Any]
) -> _Refusal | None:
    """POST /agents once; None on 201, else what the server said."""
    response = send(
        http,
        "POST",
        f"{enroll_url}/agents",
        data=json.dumps(body, separators=(",", ":")).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=timeouts(config),
        cap=answer_cap(config),
        what="enrollment",
    )
    if response.status_code == 201:
        return None
    message, code = _error_of(response)
    return _Refusal(response.status_code, message, code, str(body["id"]))


def _wants_v4(refusal: _Refusal, agent_id: str) -> bool:
    """The server refused the id for its version only ("'<id>' is not a 'uuid4' - 'id'")."""
    if refusal.status != 400 or refusal.code == ERROR_DUPLICATE_ID:
        return False
    found = _WRONG_VERSION_RE.search(refusal.message)
    return found is not None and found["wanted"] == "4" and agent_id in refusal.message


def _log_notice(text: str) -> None:
    logger.warning("{}", text)


def _check_writable(data_dir: Path) -> None:
    probe = data_dir / f".register-probe-{secrets.token_hex(4)}"
    try:
        write_private(probe, b"")
        remove_private(probe)
    except OSError as exc:
        raise CredentialsNotSaved(
            f"cannot write to the data dir {data_dir}: {exc.strerror or exc} "
            "(run as the agent's user, or set agent.data_dir)"
        ) from None


def _refuse_if_enrolled(data_dir: Path, force: bool) -> None:
    path = credentials_path(data_dir)
    if force or not path.exists():
        return
    try:
        current = load_credentials(data_dir)
    except NotEnrolled:
        raise AlreadyEnrolled(
            f"{path} exists but is unreadable; use --force to enroll again"
        ) from None
    raise AlreadyEnrolled(
        f"this agent is already enrolled as {current.name} ({current.uuid}) with "
        f"{current.server_url}; use --force to enroll again"
    )


def _management_token(
    config: Config, http: requests.Session, enroll_url: str, user: str, password: str
) -> str:
    response = send(
        http,
        "POST",
        f"{enroll_url}/security/user/authenticate",
        auth=(user, password),
        timeout=timeouts(config),
        cap=answer_cap(config),
        what="enrollment login",
    )
    if response.status_code != 200:
        message, _ = _error_of(response)
        if response.status_code == 401:
            message = f"wrong user or password for {enroll_url} ({message})"
        if response.status_code == 429:  # too many failed logins: not a refusal of these
            wait = retry_after(response.headers)
            later = f"; retry in {wait:.0f} s" if wait is not None else ""
            raise ServerUnreachable(
                f"{enroll_url} is limiting failed logins ({message}){later}",
                retry_after=wait,
                status=429,
            )
        raise ServerRejected(response.status_code, message, what="enrollment login refused")
    try:
        doc = response.json()
        token = doc["data"]["token"]
    except (ValueError, KeyError, TypeError):
        raise BadResponse(
            f"the management API at {enroll_url} answered login without a token", status=200
        ) from None
    if not isinstance(token, str) or not token:
        raise BadResponse(f"the management API at {enroll_url} sent an empty token", status=200)
    return token


def _error_of(response: requests.Response) -> tuple[str, int | None]:
    return error_of(response.content, response.status_code, response.reason or "")
