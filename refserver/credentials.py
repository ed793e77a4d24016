"""The start-up credentials: where the management password comes from, and when defaults are
refused.

The password is never taken from argv (``ps`` shows it to every local user) and never
printed. It comes from ``--password-file FILE``, else ``$AGENTBUS_SERVER_PASSWORD``, else a
prompt when the server runs in the foreground of a terminal (Enter keeps the default), else
the built-in default ``wazuh``, which is for loopback demos only: a server listening on any
other address with the default password refuses to start. No heavy imports: the CLI uses it.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from refserver.options import DEFAULT_PASSWORD

#: the management API password, for the server (instead of a prompt)
PASSWORD_ENV = "AGENTBUS_SERVER_PASSWORD"


class CredentialsError(Exception):
    """The credentials cannot be used; the message is one line for the operator."""


@dataclass(frozen=True)
class Password:
    value: str
    #: where it came from, for the start-up line (never the value itself)
    source: str

    @property
    def is_default(self) -> bool:
        return self.value == DEFAULT_PASSWORD


def management_password(password_file: str | None) -> Password:
    """The password by the order above."""
    if password_file:
        try:
            text = Path(password_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialsError(f"cannot read --password-file {password_file}: {exc}") from None
        value = text.splitlines()[0] if text else ""  # the first line, as documented
        if not value:
            raise CredentialsError(f"--password-file {password_file} is empty")
        return Password(value, "--password-file")
    value = os.environ.get(PASSWORD_ENV, "")
    if value:
        return Password(value, f"${PASSWORD_ENV}")
    if _foreground_terminal():
        value = getpass.getpass(
            "management API password (Enter: the default, for loopback demos only): "
        )
        if value:
            return Password(value, "the prompt")
    return Password(DEFAULT_PASSWORD, "the built-in default (loopback only)")


def _foreground_terminal() -> bool:
    """stdin is a terminal and we own it (``agentbus server &`` must not stop on SIGTTIN)."""
    try:
        fd = sys.stdin.fileno()
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name or address is public."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def default_refusal(host: str, password: Password) -> str | None:
    """The one line that stops a non-loopback server with the default password; else None."""
    if is_loopback(host) or not password.is_default:
        return None
    return (
        f"refusing to listen on {host} with the default management password: give another"
        f" with --password-file FILE, ${PASSWORD_ENV} or the prompt (the default is for"
        " loopback only)"
    )
