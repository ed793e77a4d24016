"""``[collectors.sca]``: security configuration assessment's configuration section.

Declared here, next to the collector; :mod:`core.config` finds it through the service
registry (:mod:`core.registry`) and checks it like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import Bytes, Seconds


@dataclass(frozen=True, kw_only=True)
class ScaSettings:
    enabled: bool = True
    #: time between evaluations (the first one runs at start)
    interval: Seconds = 43200.0
    #: evaluate the policies shipped with agentbus (collectors/sca/policies/)
    builtin_policies: bool = True
    #: more policy files, by path
    policies: list[str] = field(default_factory=list)
    #: trusted directories: every *.yml / *.yaml in them is evaluated, and only their
    #: policies may run commands through a shell (with allow_shell_commands)
    policy_dirs: list[str] = field(default_factory=lambda: ["/etc/agentbus/sca"])
    #: c: rules that need a shell (pipes, globs, $(...), sh -c) run with /bin/sh -c, for
    #: the policies of policy_dirs only; otherwise they are not applicable (never run)
    allow_shell_commands: bool = False
    #: a c: rule's command is killed after this long (the check is not applicable)
    command_timeout: Seconds = 30.0
    #: a command that prints more than this is killed (the check is not applicable)
    max_command_output: Bytes = 1024 * 1024
    #: content checks of a larger file are not applicable
    max_file_bytes: Bytes = 16 * 1024 * 1024
    #: a larger policy file is refused
    max_policy_bytes: Bytes = 4 * 1024 * 1024
    #: a d: rule that finds more entries under its directories is not applicable
    max_dir_entries: int = 100000
    #: every document is sent again (as an update) this often; 0 = never
    resync_interval: Seconds = 86400.0
