"""The ``[active_response]`` section of the agent's configuration file.

The section belongs to the active-response executor alone: it is read from the local file
(and ``AGENTBUS_ACTIVE_RESPONSE_<KEY>`` variables), never from a group file the server
sends — what may run with the executor's privileges is the host owner's decision.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import (
    ENV_PREFIX,
    Bytes,
    Config,
    ConfigError,
    Seconds,
    apply_env_overrides,
    config_from_dict,
    find_config_file,
    parse_duration,
    parse_size,
)

SECTION = "active_response"
ENV_SECTION = ENV_PREFIX + "ACTIVE_RESPONSE_"


def default_programs_dir() -> str:
    """Under the agent's installation: ``/opt/agentbus/active-response`` for the packaged
    install (its virtual environment is ``/opt/agentbus``)."""
    return str(Path(sys.prefix) / "active-response")


@dataclass(frozen=True, kw_only=True)
class ActiveResponseSettings:
    #: the allowed programs: ``<name>`` runs ``<programs_dir>/<name>`` (a file or a link to
    #: one); owned by root or the executor's user, writable by nobody else; empty by default
    programs_dir: str = field(default_factory=default_programs_dir)
    #: our shipped programs enabled by name, without a link in programs_dir
    enabled: list[str] = field(default_factory=list)
    #: the executor's own state: timed responses (SQLite) and its status file
    state_dir: str = "/var/lib/agentbus-active-response"
    #: the longest a program may run (a command's own timeout may make it shorter)
    run_timeout: Seconds = 60.0
    #: bytes of output (stdout and stderr) a program may print; past it, it is killed
    max_output: Bytes = 64 * 1024
    #: the longest timed response (args.timeout) accepted
    max_response_timeout: Seconds = 30 * 86400.0
    #: timed responses in force at once; one more add with a timeout is refused
    max_in_force: int = 10_000
    #: after a failed automatic delete, try again this much later, at most this many times
    delete_retry: Seconds = 60.0
    delete_attempts: int = 5
    #: addresses (or networks) a program must never block, besides the server's own
    protected_addresses: list[str] = field(default_factory=list)
    #: the agent's user: disable-account never locks it (nor root)
    agent_user: str = "agentbus"
    #: programs running at once
    workers: int = 4


def load(
    path: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Config, ActiveResponseSettings]:
    """The agent's configuration (for the bus and the server address) and this section.

    The agent's own checks see the file without this section, so the executor works
    whether or not the agent's configuration knows the section.
    """
    file = find_config_file(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    env = dict(os.environ if environ is None else environ)
    own = raw.pop(SECTION, {})
    if not isinstance(own, dict):
        raise ConfigError(f"{SECTION} must be a table")
    own = dict(own)
    for name in [n for n in env if n.startswith(ENV_SECTION)]:
        own[name[len(ENV_SECTION) :].lower()] = env.pop(name)
    apply_env_overrides(raw, env)
    config = dataclasses.replace(config_from_dict(raw), source=str(file))
    return config, build(own)


def build(raw: Mapping[str, Any]) -> ActiveResponseSettings:
    """Check a ``[active_response]`` table strictly (unknown keys, types, units)."""
    hints = typing.get_type_hints(ActiveResponseSettings, include_extras=True)
    names = {f.name for f in dataclasses.fields(ActiveResponseSettings)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{SECTION}.{unknown[0]}: unknown key")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{SECTION}.{name}"
        hint = hints[name]
        if hint == Seconds:
            values[name] = parse_duration(value, key)
        elif hint == Bytes:
            values[name] = parse_size(value, key)
        elif hint == list[str]:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{key}: expected a list of strings")
            values[name] = list(value)
        elif hint is int:
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{key}: expected a whole number, got {value!r}")
            values[name] = value
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{key}: expected a string, got {value!r}")
            values[name] = value
    return ActiveResponseSettings(**values)
