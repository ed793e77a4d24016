"""The service registry: every built-in service of the agent, listed once.

Everything that needs to know which services exist reads :data:`SERVICES`: the CLI (one
``agentbus <name>`` subcommand per service, :mod:`agent.cli.service`), the supervisor of
``agentbus run`` (which children to start, in which order), ``agentbus status`` and the
health endpoint (which control sockets to ask), and the configuration (which
``[collectors.<name>]`` sections exist, :mod:`core.config`).

Entry points and settings classes are ``"module:Class"`` strings, imported only when that
service runs or its section is read, so ``core`` describes the services without importing
them (the layers of docs/architecture.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config import Config
    from core.service import Service


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """One service: how it is named, started, configured and switched on."""

    #: ``agentbus <name>``, ``control-<name>.sock``, the name in logs and in ``status``
    name: str
    #: ``"module:Class"`` of its :class:`core.service.Service` subclass
    entry: str
    #: one line for ``agentbus --help``
    help: str
    #: its configuration section (dotted: ``"collectors.fim"``)
    section: str
    #: ``"module:Class"`` of the section's dataclass when the service's own package
    #: declares it (the collectors); None: the section is one of :mod:`core.config`'s
    settings: str | None = None
    #: dotted key of the bool that switches it on (``"collectors.fim.enabled"``);
    #: None: it always runs
    enabled_by: str | None = None
    #: the others are started only once it answers on its control socket (the forwarder:
    #: everything else sends to it)
    ready_first: bool = False
    #: ``agentbus <name> --once``: one pass (scan), then exit
    once: bool = False

    def load(self) -> type[Service]:
        """The service class (imports its module)."""
        cls: type[Service] = resolve(self.entry)
        return cls

    def load_settings(self) -> type[Any]:
        """The dataclass of its section (only for services with ``settings``)."""
        if self.settings is None:
            raise ValueError(f"{self.name}: its section is declared by core.config")
        cls: type[Any] = resolve(self.settings)
        return cls

    def enabled(self, config: Config) -> bool:
        """Whether ``config`` asks for this service."""
        if self.enabled_by is None:
            return True
        value: Any = config
        for part in self.enabled_by.split("."):
            value = getattr(value, part)
        return bool(value)

    @property
    def collector_name(self) -> str | None:
        """``fim`` for section ``collectors.fim``; None for a service that is no collector."""
        prefix, _, name = self.section.partition(".")
        return name if prefix == "collectors" and name else None


#: every built-in service, in start order (the supervisor stops them in reverse order:
#: the forwarder last, because it commits what the others sent while stopping)
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="forwarder",
        entry="forwarder.service:Forwarder",
        help="run the forwarder service (events: bus → disk → server) in the foreground",
        section="forwarder",
        ready_first=True,
    ),
    ServiceSpec(
        name="commander",
        entry="commander.service:Commander",
        help="run the commander (server commands → local executors) in the foreground",
        section="commander",
    ),
    ServiceSpec(
        name="agent-executor",
        entry="commander.agent_executor:AgentExecutorService",
        help="run the built-in executor of the agent topic (set-group, fetch-config, restart)",
        section="commander",
        enabled_by="commander.agent_executor",
    ),
    ServiceSpec(
        name="logcollector",
        entry="collectors.logcollector.service:LogcollectorService",
        help="run the logcollector (follow [collectors.logcollector] paths) in the foreground",
        section="collectors.logcollector",
        settings="collectors.logcollector.settings:LogcollectorSettings",
        enabled_by="collectors.logcollector.enabled",
    ),
    ServiceSpec(
        name="inventory",
        entry="collectors.inventory.service:InventoryService",
        help="run the inventory collector (host, packages, processes, ...) in the foreground",
        section="collectors.inventory",
        settings="collectors.inventory.settings:InventorySettings",
        enabled_by="collectors.inventory.enabled",
        once=True,
    ),
    ServiceSpec(
        name="fim",
        entry="collectors.fim.service:FimService",
        help="run file integrity monitoring ([collectors.fim] paths) in the foreground",
        section="collectors.fim",
        settings="collectors.fim.settings:FimSettings",
        enabled_by="collectors.fim.enabled",
        once=True,
    ),
    ServiceSpec(
        name="sca",
        entry="collectors.sca.service:ScaService",
        help="run security configuration assessment ([collectors.sca] policies) in the foreground",
        section="collectors.sca",
        settings="collectors.sca.settings:ScaSettings",
        enabled_by="collectors.sca.enabled",
        once=True,
    ),
)

_BY_NAME = {spec.name: spec for spec in SERVICES}


def get(name: str) -> ServiceSpec:
    """The service called ``name``; KeyError if there is none."""
    return _BY_NAME[name]


def names() -> list[str]:
    """Every service's name, in start order."""
    return [spec.name for spec in SERVICES]


def enabled(config: Config) -> list[ServiceSpec]:
    """The services ``config`` asks for, in start order."""
    return [spec for spec in SERVICES if spec.enabled(config)]


def collectors() -> Iterator[tuple[str, ServiceSpec]]:
    """``(collector name, spec)`` of every service with a ``[collectors.<name>]`` section."""
    for spec in SERVICES:
        name = spec.collector_name
        if name is not None:
            yield name, spec


def resolve(ref: str) -> Any:
    """The object a ``"module:attribute"`` string names (imports the module)."""
    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{ref!r} is not of the form 'module:attribute'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attribute!r}") from None
