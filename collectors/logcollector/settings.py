"""``[collectors.logcollector]``: the logcollector's configuration section.

Declared here, next to the collector; :mod:`core.config` finds it through the service
registry (:mod:`core.registry`) and checks it like every other section.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Literal

from collectors.commands import needs_shell
from core.config import Bytes, ConfigError, Seconds

#: journal priorities, most severe first (syslog's numbering: emerg = 0)
PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


@dataclass(frozen=True, kw_only=True)
class LogcollectorSettings:
    enabled: bool = True
    #: files and globs to tail, always
    paths: list[str] = field(default_factory=list)
    #: the classic syslog files, tailed only while the journal is not collected (where
    #: rsyslog runs beside journald they hold the journal's lines: never collect them twice)
    syslog_paths: list[str] = field(
        default_factory=lambda: [
            "/var/log/syslog",
            "/var/log/auth.log",
            "/var/log/messages",
            "/var/log/secure",
        ]
    )
    #: globs of files never to read
    exclude: list[str] = field(default_factory=list)
    #: where to begin in a file seen for the first time: end (only new lines) or start
    read_from: Literal["start", "end"] = "end"
    #: longer lines are cut here and flagged
    max_line_bytes: Bytes = 64 * 1024
    #: how often files and globs are checked
    poll_interval: Seconds = 0.5
    #: a rotated file is closed once it has not grown for this long (its last line sent)
    rotate_wait: Seconds = 5.0
    #: read only files owned by one of these users or by the agent's own user; a file of
    #: anyone else (a link or copy a local user planted) is skipped and counted
    file_owners: list[str] = field(default_factory=lambda: ["root", "syslog"])

    #: the systemd journal: auto = when journald runs (/run/systemd/journal exists, or
    #: journald_directory does), on = always (an error shows while it cannot be read), off
    journald: Literal["auto", "on", "off"] = "auto"
    #: a directory of journal files to read instead of the system journal (journalctl
    #: --directory); empty = the system journal
    journald_directory: str = ""
    #: collect only these units (ssh = ssh.service) and these syslog identifiers; an entry
    #: of either list is collected; both empty = every entry
    journald_units: list[str] = field(default_factory=list)
    journald_identifiers: list[str] = field(default_factory=list)
    #: collect entries of this priority and more severe ones
    journald_priority: Literal[
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
    ] = "info"
    #: commands whose output is collected one event per line (run without a shell)
    commands: list[str] = field(default_factory=list)
    #: commands whose whole output is collected as one event
    full_commands: list[str] = field(default_factory=list)
    #: how often each command runs (the first time at start)
    command_interval: Seconds = 300.0
    #: a command still running after this long is killed (its output is not sent)
    command_timeout: Seconds = 30.0
    #: output past this is cut (the command is killed) and the event flagged truncated
    command_max_output: Bytes = 1024 * 1024

    def __post_init__(self) -> None:
        for key in ("commands", "full_commands"):
            for command in getattr(self, key):
                check_command(command, f"collectors.logcollector.{key}")


def check_command(command: str, key: str) -> list[str]:
    """The argv of a configured command; ConfigError if it is empty or needs a shell."""
    if needs_shell(command):
        raise ConfigError(
            f"{key}: {command!r} uses shell syntax or starts a shell; commands run without a shell"
            " (put a pipeline in a script and name the script)"
        )
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"{key}: {command!r}: {exc}") from None
    if not argv:
        raise ConfigError(f"{key}: an empty command")
    return argv
