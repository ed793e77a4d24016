"""Configuration: a TOML file, checked strictly, with ``AGENTBUS_<SECTION>_<KEY>`` overrides.

Look-up order of the file: ``--config FILE``, then ``$AGENTBUS_CONFIG``, then the packaged
default (``core/default.toml``, also shipped as ``etc/agentbus.toml``). Every problem — an
unknown key, a wrong type, a bad duration or size, an unreadable file — raises
:class:`ConfigError` naming the key, which the CLI turns into exit code 2.

Layers, lowest first (docs/configuration.md): the packaged defaults, the local file, the
group files the server assigned (core/groupfile.py, stored by set-group: core/groupset.py)
in the order the server listed the groups, then the environment. ``Config.origins`` says
for every key which layer its value came from (``default``, the file's path,
``group:<name>``, ``env:<VAR>``); ``agentbus config show --origin`` prints it.

Each section is a frozen dataclass; the annotation of a field says how its value is read:
``Seconds`` takes ``"500ms"``, ``"30s"``, ``"11m"``, ``"2h"``, ``"1d"`` or a number of seconds;
``Bytes`` takes ``"256KB"``, ``"1MB"``, ``"2GB"`` (powers of 1024) or a number of bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from bus.errors import EXIT_USAGE, AgentbusError
from core import registry
from core.groupfile import Change, GroupFile, GroupFileError, parse_group_file, refusal

Seconds = Annotated[float, "duration"]
Bytes = Annotated[int, "size"]

#: the packaged default configuration file
DEFAULT_CONFIG_FILE = Path(__file__).with_name("default.toml")
ENV_CONFIG = "AGENTBUS_CONFIG"
ENV_PREFIX = "AGENTBUS_"
#: ``AGENTBUS_*`` variables that are not config keys (every other one must name a key)
OTHER_VARIABLES = frozenset(
    {
        # the bus SDK's client keys (docs/bus-protocol.md)
        "AGENTBUS_CURVE_SERVER_KEY",
        "AGENTBUS_CURVE_CLIENT_KEY",
        # the reference server's and its CLI's (docs/server.md)
        "AGENTBUS_SERVER_URL",
        "AGENTBUS_SERVER_PASSWORD",
        "AGENTBUS_ADMIN_TOKEN",
        "AGENTBUS_ADMIN_TOKEN_FILE",
    }
)
#: ... and prefixes of such variables: the active-response executor's own overrides
OTHER_PREFIXES = ("AGENTBUS_ACTIVE_RESPONSE_",)


class ConfigError(AgentbusError):
    """The configuration file or an override is missing, unreadable or wrong."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True, kw_only=True)
class AgentSection:
    #: comms API base URL (events, commands, files, authentication)
    server_url: str = "https://localhost:27000"
    #: TLS checks: full (chain + hostname), certificate (chain only), none
    verification_mode: Literal["full", "certificate", "none"] = "full"
    #: CA bundle for the server's certificate; empty = the system bundle
    ca_file: str = ""
    #: credentials, queues, state of collectors
    data_dir: str = "/var/lib/agentbus"
    #: bus sockets, pid file
    run_dir: str = "/run/agentbus"
    #: connect timeout of every HTTP call
    connect_timeout: Seconds = 10.0
    #: read timeout of ordinary HTTP calls (long-polls use commander.request_timeout)
    read_timeout: Seconds = 60.0
    #: how long a graceful stop may take before the rest is abandoned
    stop_timeout: Seconds = 10.0
    #: back-off after a failed authentication (the server in trouble, the network): full
    #: jitter, doubling from the first value up to the second
    auth_backoff_initial: Seconds = 1.0
    auth_backoff_max: Seconds = 60.0
    #: how `agentbus run` hosts the built-in services: "thread" = all in the agent's one
    #: process (the smallest footprint), "process" = one process each (a crash stays in
    #: its own process)
    isolation: Literal["thread", "process"] = "thread"
    #: built-in services that run as a process of their own even with isolation "thread"
    own_process: list[str] = field(default_factory=list)
    #: allow a plain http:// server_url to a host other than loopback (key, token and
    #: password would travel in clear); off: such a URL is refused at start
    allow_insecure_http: bool = False
    #: largest answer body read from the server for enrollment, tokens and errors
    max_response_bytes: Bytes = 1024 * 1024
    #: largest file downloaded from the server (group files); larger = refused, nothing written
    max_download_bytes: Bytes = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class BusSection:
    #: largest accepted bus message (also ZMQ_MAXMSGSIZE)
    max_message_bytes: Bytes = 4 * 1024 * 1024
    #: high-water mark of every bus socket, in messages
    hwm: int = 1000
    #: endpoint overrides; empty = ipc socket in run_dir
    events_endpoint: str = ""
    ingest_endpoint: str = ""
    commands_endpoint: str = ""
    results_endpoint: str = ""
    #: z85 CURVE key pair file for tcp endpoints reachable from other hosts
    curve_secret_key_file: str = ""
    #: directory of the z85 public keys of the clients admitted to tcp endpoints (one
    #: ``*.key`` file each); a client whose key is not there is refused
    curve_clients_dir: str = ""
    #: allow tcp on loopback without CURVE (any local user could then reach the bus)
    allow_plain_loopback: bool = False
    #: bytes of messages the ingest and control sockets may hold per connected client: their
    #: receive high-water mark is this divided by max_message_bytes (libzmq counts
    #: messages); the events and results sockets keep hwm (see docs/bus-protocol.md)
    receive_budget_bytes: Bytes = 64 * 1024 * 1024
    #: how many rejected-input log lines per minute, per socket
    reject_log_per_minute: int = 10


@dataclass(frozen=True, kw_only=True)
class ForwarderSection:
    #: a stateless batch is sent when it reaches this many bytes ...
    batch_max_bytes: Bytes = 1024 * 1024
    #: byte limit of a stateful request body: with its headers it must fit one 16 KiB TLS
    #: record, because the server parses each received piece on its own (docs/protocol.md)
    stateful_batch_max_bytes: Bytes = 15 * 1024
    #: ... or this many events ...
    batch_max_events: int = 100_000
    #: ... or when its oldest event has waited this long
    batch_interval: Seconds = 1.0
    #: a chunk (one queue row) closes at this size ...
    chunk_max_bytes: Bytes = 256 * 1024
    #: ... or this long after its first event arrived
    chunk_max_delay: Seconds = 0.1
    #: bound on queued bytes, per queue (stateless, stateful)
    max_queue_bytes: Bytes = 1024 * 1024 * 1024
    #: what to do when a queue is full: block (back-pressure) or drop_oldest (stateless only)
    when_full: Literal["block", "drop_oldest"] = "block"
    #: events per second accepted from collectors; 0 = no limit
    max_eps: int = 0
    #: stateless requests in flight at once (stateful always keeps one)
    stateless_in_flight: int = 4
    #: timeout of one events POST
    request_timeout: Seconds = 30.0
    #: first retry delay after a failure; doubles up to backoff_max (full jitter)
    backoff_initial: Seconds = 1.0
    backoff_max: Seconds = 60.0
    #: how often acked rows are removed from the queue files
    clear_acked_interval: Seconds = 10.0
    #: refuse at the bus a stateful document the server's index mapping would refuse
    #: (turn off for a server with other mappings)
    check_documents: bool = True


@dataclass(frozen=True, kw_only=True)
class CommanderSection:
    #: client timeout of the long-poll; must exceed the server's hold (20 minutes max)
    request_timeout: Seconds = 660.0
    #: timeout of a command that names none
    command_timeout: Seconds = 600.0
    #: how often a command is published again until an executor answers
    republish_interval: Seconds = 1.0
    #: an executor that sent no hello for this long is no longer live
    executor_ttl: Seconds = 30.0
    #: after start-up, wait this long for executors' hellos before answering "no executor"
    hello_grace: Seconds = 6.0
    #: first back-off after a failed poll; doubles up to backoff_max (equal jitter)
    backoff_initial: Seconds = 1.0
    backoff_max: Seconds = 60.0
    #: run the built-in executor of the ``agent`` topic (set-group, fetch-config, restart)
    agent_executor: bool = True
    #: largest long-poll answer read from the server
    max_poll_bytes: Bytes = 16 * 1024 * 1024
    #: executors known at once, and topics one executor may claim; more are refused, counted
    max_executors: int = 256
    max_topics_per_executor: int = 64


@dataclass(frozen=True, kw_only=True)
class LogSection:
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    #: also log to this file; empty = stderr only
    file: str = ""
    #: write the file as JSON lines
    json: bool = False
    #: rotate the file at this size, keep this many days
    rotation: Bytes = 10 * 1024 * 1024
    retention_days: int = 7


@dataclass(frozen=True, kw_only=True)
class HealthSection:
    #: serve /health and /metrics over HTTP
    enabled: bool = False
    #: where: loopback by default
    listen: str = "127.0.0.1:9780"
    #: connections served at once; more are closed at once (counted)
    max_connections: int = 32
    #: threads answering requests
    workers: int = 4
    #: a connection that sends no complete request within this long is closed
    connection_timeout: Seconds = 5.0


class CollectorsSection(dict[str, Any]):
    """``[collectors.<name>]``: one table per collector of the service registry.

    Each collector's package declares its own section (``collectors/fim/settings.py``:
    ``FimSettings``); :data:`core.registry.SERVICES` names it by a ``"module:Class"``
    string, resolved here when a configuration is built. ``config.collectors.fim`` is that
    collector's settings; a collector types it where it reads it
    (``self.settings: FimSettings = config.collectors.fim``).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no collector section {name!r}") from None

    @classmethod
    def defaults(cls) -> CollectorsSection:
        """Every registered collector's section with its default values."""
        return cls((name, settings()) for name, settings in collector_settings().items())


def collector_settings() -> dict[str, type[Any]]:
    """The settings dataclass of every registered collector, by collector name."""
    return {name: spec.load_settings() for name, spec in registry.collectors()}


@dataclass(frozen=True)
class ConfigBase:
    """What a configuration was built from below the groups: the local file's table (as
    read at start) and the environment. A reload puts other groups on the same base."""

    #: the local file's TOML table
    file_raw: dict[str, Any]
    #: the local file's origin label: its path, or ``default`` for the packaged one
    label: str
    #: the environment's ``AGENTBUS_*`` variables
    environ: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration; ``source`` says which file it came from, ``origins`` which
    layer each key's value came from, ``groups`` the group files applied."""

    agent: AgentSection = field(default_factory=AgentSection)
    bus: BusSection = field(default_factory=BusSection)
    forwarder: ForwarderSection = field(default_factory=ForwarderSection)
    commander: CommanderSection = field(default_factory=CommanderSection)
    log: LogSection = field(default_factory=LogSection)
    health: HealthSection = field(default_factory=HealthSection)
    collectors: CollectorsSection = field(default_factory=CollectorsSection.defaults)
    #: ``[active_response]``: read and checked by the active-response executor alone
    #: (active_response/settings.py); the agent only lets the table be
    active_response: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"
    #: dotted key → ``default``, a file path, ``group:<name>`` or ``env:<VAR>``
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    #: the groups whose files are applied, in order, and when they were stored
    groups: tuple[str, ...] = field(default=(), compare=False)
    groups_applied_at: float | None = field(default=None, compare=False)
    #: stored groups left out because their file is unusable now, with the reason
    groups_skipped: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    base: ConfigBase | None = field(default=None, compare=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return Path(self.agent.data_dir)

    @property
    def run_dir(self) -> Path:
        return Path(self.agent.run_dir)


def find_config_file(explicit: str | None = None) -> Path:
    """The file to read: ``explicit``, else ``$AGENTBUS_CONFIG``, else the packaged default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_FILE


#: fields of Config that are no configuration keys
_META = frozenset({"source", "origins", "groups", "groups_applied_at", "groups_skipped", "base"})


def load_config(
    path: str | Path | None = None,
    environ: typing.Mapping[str, str] | None = None,
    *,
    groups: bool = True,
) -> Config:
    """Read the local file, put the stored group files (unless ``groups`` is false) and the
    environment on it, and check the whole configuration."""
    file = find_config_file(str(path) if path else None)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {file} is not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    env = os.environ if environ is None else environ
    label = "default" if file.resolve() == DEFAULT_CONFIG_FILE.resolve() else str(file)
    base = ConfigBase(raw, label, {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})
    stored = None
    if groups:
        # the data dir comes from the layers under the groups (a group cannot move it)
        data_dir = build_layers(base, []).agent.data_dir
        stored = _stored_group_files(data_dir)
    config = build_layers(base, stored[0] if stored else [])
    if stored:
        config = dataclasses.replace(config, groups_applied_at=stored[1], groups_skipped=stored[2])
    return dataclasses.replace(config, source=str(file))


def config_from_dict(raw: dict[str, Any]) -> Config:
    """A checked Config from a TOML-shaped dict (tests and the demo build configs this way).

    The fields that are no keys (``source``, ``origins``, ...: what ``dataclasses.asdict``
    of a Config holds besides its sections) are left out.
    """
    raw = {k: v for k, v in raw.items() if k not in _META}
    return dataclasses.replace(_build(Config, raw, ""), base=ConfigBase(raw, "<dict>", {}))


def with_groups(config: Config, files: list[GroupFile], applied_at: float | None) -> Config:
    """``config``'s base (local file, environment) with ``files`` as its groups instead.

    What a reload builds: the local file as read at start, the new groups, the environment
    of the start. Raises :class:`ConfigError` if the result is not a valid configuration.
    """
    base = config.base or ConfigBase(_plain(config), "<config>", {})
    new = build_layers(base, files)
    return dataclasses.replace(new, source=config.source, groups_applied_at=applied_at)


def reload_config(config: Config) -> Config:
    """``config``'s base with the group files stored now (a set-group or fetch-config)."""
    files, applied_at, skipped = _stored_group_files(config.agent.data_dir)
    return dataclasses.replace(with_groups(config, files, applied_at), groups_skipped=skipped)


def _stored_group_files(data_dir: str) -> tuple[list[GroupFile], float | None, dict[str, str]]:
    """The stored group files, parsed and checked; an unusable one is left out (and said).

    They were checked before they were stored: one that fails now (an agent upgraded
    since, a file changed by hand) must not keep the agent from starting.
    """
    from loguru import logger

    from core.groupset import read_stored

    stored = read_stored(data_dir)
    skipped = dict(stored.problems)
    files: list[GroupFile] = []
    for group, text in stored.files:
        try:
            parsed = parse_group_file(group, text)
            check_changes(parsed)
        except GroupFileError as exc:
            skipped[group] = str(exc)
            continue
        files.append(parsed)
    for group, why in skipped.items():
        logger.warning("group {}: its stored file is not applied: {}", group, why)
    return files, stored.applied_at, skipped


def build_layers(base: ConfigBase, groups: list[GroupFile]) -> Config:
    """Defaults < the local file < ``groups`` in order < the environment, checked."""
    raw = _plain(Config())
    origins = {".".join(p): "default" for p in _key_paths(Config, ())}
    _merge(raw, base.file_raw, base.label, origins, ())
    for group in groups:
        for change in group.changes:
            _apply(raw, change, f"group:{group.name}", origins)
    by_env = {ENV_PREFIX + "_".join(p).upper(): p for p in _key_paths(Config, ())}
    for name, value in sorted(base.environ.items()):
        key_path = _env_key(name, by_env)
        if key_path is not None:
            _apply(raw, Change("set", key_path, _env_value(value), name), f"env:{name}", origins)
    config = _build(Config, raw, "")
    return dataclasses.replace(
        config,
        origins=origins,
        groups=tuple(g.name for g in groups),
        base=base,
    )


def check_changes(group: GroupFile) -> None:
    """Check every value a group file sets against our schema; raises GroupFileError
    naming the file's own key."""
    for change in group.changes:
        key = change.source_key
        reason = refusal(change.path)
        if reason is not None:
            raise GroupFileError(key, f"refused: {reason}")
        hint = _hint(change.path)
        if hint is None:
            raise GroupFileError(key, f"unknown key ({'.'.join(change.path)})")
        if dataclasses.is_dataclass(hint) or hint is CollectorsSection:
            raise GroupFileError(key, "must be a table of keys")
        try:
            if change.op == "set":
                _convert(hint, change.value, key)
            elif typing.get_origin(hint) is not list:
                raise GroupFileError(key, "is not a list")
            else:
                _convert(hint, change.value, key)
        except ConfigError as exc:
            raise GroupFileError(key, str(exc).removeprefix(f"{key}: ")) from None


def _hint(path: tuple[str, ...]) -> Any:
    """The annotation of the key at ``path``; None if there is no such key."""
    cls: Any = Config
    for part in path:
        if cls is CollectorsSection:
            cls = collector_settings().get(part)
            if cls is None:
                return None
            continue
        if not dataclasses.is_dataclass(cls):
            return None  # a path that goes below a value
        names = {f.name for f in dataclasses.fields(cls)} - _META
        if part not in names:
            return None
        cls = typing.get_type_hints(cls, include_extras=True)[part]
    return cls


def _plain(config: Config) -> dict[str, Any]:
    """``config``'s keys as a TOML-shaped dict of plain values."""
    raw = dataclasses.asdict(config)
    for name in _META:
        raw.pop(name, None)
    raw["collectors"] = {name: dict(section) for name, section in raw["collectors"].items()}
    return raw


def _merge(
    raw: dict[str, Any],
    layer: dict[str, Any],
    origin: str,
    origins: dict[str, str],
    prefix: tuple[str, ...],
) -> None:
    for key, value in layer.items():
        path = (*prefix, key)
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            _merge(raw[key], value, origin, origins, path)
        else:
            raw[key] = value  # a wrong type or unknown key: _build names it
            origins[".".join(path)] = origin


def _apply(raw: dict[str, Any], change: Change, origin: str, origins: dict[str, str]) -> None:
    node = raw
    for part in change.path[:-1]:
        sub = node.setdefault(part, {})
        if not isinstance(sub, dict):
            raise ConfigError(f"{'.'.join(change.path[:-1])} must be a table")
        node = sub
    leaf, key = change.path[-1], ".".join(change.path)
    if change.op == "set":
        node[leaf] = change.value
        origins[key] = origin
        return
    current = node.get(leaf)
    if isinstance(current, str):  # a list given as "a,b" (the environment)
        current = [v.strip() for v in current.split(",") if v.strip()]
    if not isinstance(current, list):
        current = []
    if change.op == "add":
        node[leaf] = current + [v for v in change.value if v not in current]
    else:
        node[leaf] = [v for v in current if v not in change.value]
    before = origins.get(key, "default")
    origins[key] = before if origin in before.split(" + ") else f"{before} + {origin}"


def flatten(config: Config) -> dict[str, Any]:
    """Every key of ``config`` as ``{"section.key": value}`` (durations in seconds, sizes
    in bytes), in schema order: what ``agentbus config show`` prints."""
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(_plain(config), "")
    return out


def to_toml(config: Config) -> str:
    """The configuration as a TOML document that :func:`load_config` reads back unchanged."""
    import tomli_w

    return tomli_w.dumps(_plain(config))


def apply_env_overrides(raw: dict[str, Any], environ: typing.Mapping[str, str]) -> None:
    """Apply ``AGENTBUS_<SECTION>_<KEY>=value`` variables onto the raw TOML dict."""
    paths = _key_paths(Config, ())
    by_env = {ENV_PREFIX + "_".join(p).upper(): p for p in paths}
    for name, value in environ.items():
        key_path = _env_key(name, by_env)
        if key_path is None:
            continue
        node = raw
        for part in key_path[:-1]:
            sub = node.setdefault(part, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"{'.'.join(key_path[:-1])} must be a table")
            node = sub
        node[key_path[-1]] = _env_value(value)


def _env_key(name: str, by_env: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """The key path an ``AGENTBUS_*`` variable sets; None for other variables."""
    if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG:
        return None
    if name in OTHER_VARIABLES or name.startswith(OTHER_PREFIXES):
        return None
    key_path = by_env.get(name)
    if key_path is None:
        raise ConfigError(f"environment variable {name} names no configuration key")
    return key_path


def _env_value(text: str) -> Any:
    # Lists may be given as JSON; everything else stays text and is parsed by its field type.
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text


def _key_paths(cls: type, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if f.name in _META:
            continue
        hint = hints[f.name]
        if hint is CollectorsSection:
            for name, settings in collector_settings().items():
                out.extend(_key_paths(settings, (*prefix, f.name, name)))
        elif dataclasses.is_dataclass(hint):
            out.extend(_key_paths(hint, (*prefix, f.name)))  # type: ignore[arg-type]
        else:
            out.append((*prefix, f.name))
    return out


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'} must be a table")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls)} - _META
    unknown = sorted(set(raw) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{key}: unknown key")
    values: dict[str, Any] = {}
    for name in names & set(raw):
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if hint is CollectorsSection:
            values[name] = _build_collectors(raw[name], key)
        elif dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], key)  # type: ignore[arg-type]
        else:
            values[name] = _convert(hint, raw[name], key)
    return cls(**values)


def _build_collectors(raw: Any, where: str) -> CollectorsSection:
    """``[collectors.*]``: each registered collector's section, checked by its own dataclass."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    sections = collector_settings()
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key")
    return CollectorsSection(
        (name, _build(settings, raw.get(name, {}), f"{where}.{name}"))
        for name, settings in sections.items()
    )


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, tag = typing.get_args(hint)[:2]
        if tag == "duration":
            return parse_duration(value, key)
        if tag == "size":
            return parse_size(value, key)
        return _convert(base, value, key)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table")
        return dict(value)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings")
        return list(value)
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # pragma: no cover - schema bug


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|k|m|g)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
    "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
}  # fmt: skip


def parse_duration(value: Any, key: str = "duration") -> float:
    """Seconds from ``"500ms"``, ``"30s"``, ``"11m"``, ``"2h"``, ``"1d"`` or a number."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like '30s', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ConfigError(f"{key}: expected a duration like '500ms', '30s' or '11m', got {value!r}")
    if seconds < 0:
        raise ConfigError(f"{key}: must not be negative")
    return seconds


def parse_size(value: Any, key: str = "size") -> int:
    """Bytes from ``"256KB"``, ``"1MB"``, ``"2GB"`` (powers of 1024) or a number."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a size like '1MB', got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        unit = m.group(2).lower() if m.group(2) else None
        size = int(float(m.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ConfigError(f"{key}: expected a size like '256KB' or '1MB', got {value!r}")
    if size < 0:
        raise ConfigError(f"{key}: must not be negative")
    return size
