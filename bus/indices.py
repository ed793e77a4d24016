"""The server's state indices: every field each one accepts, and the indexer's check.

The stateful endpoint stores each event as a document of one index, chosen by the event's
module (and, for ``inventory``, its collector). The state indices are ``dynamic: strict``:
a field the mapping does not list fails the item with 400
``strict_dynamic_mapping_exception``; an object where the mapping has a value (or the
reverse), or a value the field's type cannot take, fails it with
``mapper_parsing_exception``. The tables below are the mappings a 6.0 server installs
(docs/protocol.md, "State indices", names their source); :func:`check_document` applies
them the way the indexer does, so the reference server, the forwarder (at the bus) and the
tests all refuse exactly what the server would.

The document the server stores is ``{"agent": <the request's agent line>, ...data}``, so
the ``agent`` fields are not in an event's data (and data must not carry ``agent``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

#: the ``host`` block shared by the system, networks and sca indices
_HOST: dict[str, str] = {
    "host.architecture": "keyword",
    "host.boot.id": "keyword",
    "host.cpu.usage": "float",
    "host.disk.read.bytes": "long",
    "host.disk.write.bytes": "long",
    "host.domain": "keyword",
    "host.geo.city_name": "keyword",
    "host.geo.continent_code": "keyword",
    "host.geo.continent_name": "keyword",
    "host.geo.country_iso_code": "keyword",
    "host.geo.country_name": "keyword",
    "host.geo.location": "geo_point",
    "host.geo.name": "keyword",
    "host.geo.postal_code": "keyword",
    "host.geo.region_iso_code": "keyword",
    "host.geo.region_name": "keyword",
    "host.geo.timezone": "keyword",
    "host.hostname": "keyword",
    "host.id": "keyword",
    "host.ip": "ip",
    "host.mac": "keyword",
    "host.name": "keyword",
    "host.network.egress.bytes": "long",
    "host.network.egress.packets": "long",
    "host.network.ingress.bytes": "long",
    "host.network.ingress.packets": "long",
    "host.os.family": "keyword",
    "host.os.full": "keyword",
    "host.os.kernel": "keyword",
    "host.os.name": "keyword",
    "host.os.platform": "keyword",
    "host.os.type": "keyword",
    "host.os.version": "keyword",
    "host.pid_ns_ino": "keyword",
    "host.risk.calculated_level": "keyword",
    "host.risk.calculated_score": "float",
    "host.risk.calculated_score_norm": "float",
    "host.risk.static_level": "keyword",
    "host.risk.static_score": "float",
    "host.risk.static_score_norm": "float",
    "host.type": "keyword",
    "host.uptime": "long",
}

#: wazuh-states-fim
_FIM: dict[str, str] = {
    "file.attributes": "keyword",
    "file.gid": "keyword",
    "file.group": "keyword",
    "file.hash.md5": "keyword",
    "file.hash.sha1": "keyword",
    "file.hash.sha256": "keyword",
    "file.inode": "keyword",
    "file.mode": "keyword",
    "file.mtime": "date",
    "file.name": "keyword",
    "file.owner": "keyword",
    "file.path": "keyword",
    "file.size": "long",
    "file.target_path": "keyword",
    "file.type": "keyword",
    "file.uid": "keyword",
    "registry.key": "keyword",
    "registry.value": "keyword",
}

#: wazuh-states-inventory-hardware
_HARDWARE: dict[str, str] = {
    "@timestamp": "date",
    "host.cpu.cores": "long",
    "host.cpu.name": "keyword",
    "host.cpu.speed": "long",
    "host.cpu.usage": "float",
    "host.memory.free": "long",
    "host.memory.total": "long",
    "host.memory.used.percentage": "long",
    "observer.serial_number": "keyword",
}

#: wazuh-states-inventory-hotfixes
_HOTFIXES: dict[str, str] = {
    "@timestamp": "date",
    "package.hotfix.name": "keyword",
}

#: wazuh-states-inventory-networks, besides ``_HOST``
_NETWORKS: dict[str, str] = {
    "@timestamp": "date",
    "host.network.egress.drops": "long",
    "host.network.egress.errors": "long",
    "host.network.ingress.drops": "long",
    "host.network.ingress.errors": "long",
    "interface.mtu": "long",
    "interface.state": "keyword",
    "interface.type": "keyword",
    "network.broadcast": "ip",
    "network.dhcp": "keyword",
    "network.gateway": "ip",
    "network.metric": "long",
    "network.netmask": "ip",
    "network.protocol": "keyword",
    "network.type": "keyword",
    "observer.ingress.interface.alias": "keyword",
    "observer.ingress.interface.name": "keyword",
}

#: wazuh-states-inventory-packages
_PACKAGES: dict[str, str] = {
    "@timestamp": "date",
    "package.architecture": "keyword",
    "package.description": "keyword",
    "package.installed": "date",
    "package.name": "keyword",
    "package.path": "keyword",
    "package.size": "long",
    "package.type": "keyword",
    "package.version": "keyword",
}

#: wazuh-states-inventory-ports
_PORTS: dict[str, str] = {
    "@timestamp": "date",
    "destination.ip": "ip",
    "destination.port": "long",
    "device.id": "keyword",
    "file.inode": "keyword",
    "host.network.egress.queue": "long",
    "host.network.ingress.queue": "long",
    "interface.state": "keyword",
    "network.protocol": "keyword",
    "process.name": "keyword",
    "process.pid": "long",
    "source.ip": "ip",
    "source.port": "long",
}

#: wazuh-states-inventory-processes
_PROCESSES: dict[str, str] = {
    "@timestamp": "date",
    "process.args": "keyword",
    "process.command_line": "keyword",
    "process.group.id": "keyword",
    "process.name": "keyword",
    "process.parent.pid": "long",
    "process.pid": "long",
    "process.real_group.id": "keyword",
    "process.real_user.id": "keyword",
    "process.saved_group.id": "keyword",
    "process.saved_user.id": "keyword",
    "process.start": "date",
    "process.thread.id": "long",
    "process.tty.char_device.major": "long",
    "process.user.id": "keyword",
}

#: wazuh-states-inventory-system, besides ``_HOST``
_SYSTEM: dict[str, str] = {
    "@timestamp": "date",
}

#: wazuh-states-sca, besides ``_HOST``
_SCA: dict[str, str] = {
    "@timestamp": "date",
    "check.compliance": "keyword",
    "check.condition": "keyword",
    "check.description": "keyword",
    "check.id": "keyword",
    "check.name": "keyword",
    "check.rationale": "keyword",
    "check.reason": "keyword",
    "check.references": "keyword",
    "check.remediation": "keyword",
    "check.result": "keyword",
    "check.rules": "keyword",
    "policy.description": "keyword",
    "policy.file": "keyword",
    "policy.id": "keyword",
    "policy.name": "keyword",
    "policy.references": "keyword",
}

#: wazuh-commands
_COMMANDS: dict[str, str] = {
    "@timestamp": "date",
    "command.action.args": "object",
    "command.action.name": "keyword",
    "command.action.version": "keyword",
    "command.order_id": "keyword",
    "command.request_id": "keyword",
    "command.result.code": "short",
    "command.result.data": "keyword",
    "command.result.message": "keyword",
    "command.source": "keyword",
    "command.status": "keyword",
    "command.target.id": "keyword",
    "command.target.type": "keyword",
    "command.timeout": "short",
    "command.user": "keyword",
    "delivery_timestamp": "date",
}


@dataclass(frozen=True, slots=True)
class Index:
    """One index: its name, what routes to it, and its mapping (dotted field → type)."""

    name: str
    module: str
    collector: str | None
    fields: dict[str, str]
    #: strict: an unmapped field fails the item; not strict: it is added (``command``)
    strict: bool = True
    tree: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tree: dict[str, Any] = {}
        for path, kind in self.fields.items():
            node = tree
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = kind
        object.__setattr__(self, "tree", tree)


def _inventory(collector: str, fields: dict[str, str]) -> Index:
    return Index(f"wazuh-states-inventory-{collector}", "inventory", collector, fields)


#: every index the stateful endpoint writes to whose mapping is known
INDICES: tuple[Index, ...] = (
    Index("wazuh-states-fim", "fim", None, _FIM),
    _inventory("hardware", _HARDWARE),
    _inventory("hotfixes", _HOTFIXES),
    _inventory("networks", {**_HOST, **_NETWORKS}),
    _inventory("packages", _PACKAGES),
    _inventory("ports", _PORTS),
    _inventory("processes", _PROCESSES),
    _inventory("system", {**_HOST, **_SYSTEM}),
    Index("wazuh-states-sca", "sca", None, {**_HOST, **_SCA}),
    Index("wazuh-commands", "command", None, _COMMANDS, strict=False),
)
_BY_ROUTE = {(i.module, i.collector): i for i in INDICES}


def index_name(module: str, collector: str | None) -> str:
    """The name of the index the server stores a module's (and collector's) documents in."""
    if module == "inventory":
        return f"wazuh-states-inventory-{collector}"
    if module == "vulnerability":
        return "wazuh-states-vulnerabilities"
    if module == "command":
        return "wazuh-commands"
    return f"wazuh-states-{module}"


def index_for(module: str, collector: str | None) -> Index | None:
    """The known index of a stateful event, or None (its mapping is not known here)."""
    return _BY_ROUTE.get((module, collector if module == "inventory" else None))


@cache
def index_to_check(module: str, collector: str | None) -> Index:
    """The index to check a stateful event's document against: its known mapping, else a
    dynamic index with no fields, which still refuses what any index refuses (a second
    ``agent``, unusable field names)."""
    collector = collector if module == "inventory" else None  # also keeps the cache bounded
    known = index_for(module, collector)
    if known is not None:
        return known
    return Index(index_name(module, collector), module, collector, {}, strict=False)


class Problem(NamedTuple):
    """Why the indexer refuses a document: its error type, the field, and its message."""

    error: str  # strict_dynamic_mapping_exception | mapper_parsing_exception
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.error}: {self.message}"


STRICT = "strict_dynamic_mapping_exception"
MAPPER = "mapper_parsing_exception"


def check_document(index: Index, data: dict[str, Any]) -> Problem | None:
    """The first reason the indexer would refuse ``data`` as a document of ``index``."""
    if not data:
        # The server splices data into the agent line by its braces: {} leaves a dangling comma.
        return Problem(MAPPER, "", "failed to parse: the document's data is empty")
    if "agent" in data:
        return Problem(MAPPER, "agent", "Duplicate field 'agent' (the server adds it)")
    return _check_object(index, index.tree, data, "")


def _check_object(
    index: Index, tree: dict[str, Any], obj: dict[str, Any], path: str
) -> Problem | None:
    for key, value in obj.items():
        if not isinstance(key, str) or not key or key.startswith(".") or key.endswith("."):
            return Problem(MAPPER, f"{path}{key}", f"field name [{path}{key}] cannot be used")
        # a dotted key ("host.cpu.cores") is the same field as the nested objects
        node: Any = tree
        parts = key.split(".")
        where = path
        for depth, part in enumerate(parts):
            if not part:
                return Problem(MAPPER, f"{path}{key}", f"field name [{path}{key}] cannot be used")
            if node == "object":
                break  # a free object (command.action.args): anything goes below it
            child = node.get(part)
            if child is None:
                if not index.strict:
                    node = None
                    break
                within = where.rstrip(".") or "_doc"
                return Problem(
                    STRICT,
                    f"{where}{part}",
                    f"mapping set to strict, dynamic introduction of [{part}] within [{within}]"
                    " is not allowed",
                )
            node = child
            where = f"{where}{part}."
            if depth < len(parts) - 1 and isinstance(node, str) and node != "object":
                return _object_for_value(where.rstrip("."), node)
        if node is None:
            continue  # an unmapped field of a dynamic index
        problem = _check_value(index, node, value, where.rstrip("."))
        if problem is not None:
            return problem
    return None


def _check_value(index: Index, node: Any, value: Any, path: str) -> Problem | None:
    if value is None:
        return None  # a null is "no value", for an object as for a leaf
    if isinstance(value, list):
        if node == "geo_point" and _geo_pair(value):
            return None
        for item in value:
            problem = _check_value(index, node, item, path)
            if problem is not None:
                return problem
        return None
    if isinstance(node, dict):
        if not isinstance(value, dict):
            leaf = path.rsplit(".", 1)[-1]
            return Problem(
                MAPPER,
                path,
                f"object mapping for [{path}] tried to parse field [{leaf}] as object,"
                " but found a concrete value",
            )
        return _check_object(index, node, value, f"{path}.")
    if node == "object":
        return None if isinstance(value, dict) else _wrong(path, node, value)
    if isinstance(value, dict):
        if node == "geo_point" and _geo_object(value):
            return None
        return _object_for_value(path, node)
    check = _LEAF_CHECKS.get(node)
    if check is None or check(value):
        return None
    return _wrong(path, node, value)


def _object_for_value(path: str, kind: str) -> Problem:
    return Problem(
        MAPPER,
        path,
        f"failed to parse field [{path}] of type [{kind}]: an object was found where a"
        " value is mapped",
    )


def _wrong(path: str, kind: str, value: Any) -> Problem:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return Problem(
        MAPPER,
        path,
        f"failed to parse field [{path}] of type [{kind}]. Preview of field's value: {shown}",
    )


# -- leaf types, as the indexer parses them (numbers and dates are coerced from strings) --
_INT_RANGES = {"long": (-(2**63), 2**63 - 1), "short": (-(2**15), 2**15 - 1)}
# strict_date_optional_time: a date, optionally a time, optionally a zone
_ISO_DATE = re.compile(
    r"\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}([.,]\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?)?)?"
)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _integer(kind: str) -> Any:
    low, high = _INT_RANGES[kind]

    def check(value: Any) -> bool:
        if isinstance(value, int) and not isinstance(value, bool):
            return low <= value <= high
        number = _number(value)
        return number is not None and low <= number <= high

    return check


def _float(value: Any) -> bool:
    number = _number(value)
    return number is not None and number == number and abs(number) != float("inf")


def _keyword(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _date(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True  # epoch milliseconds
    if not isinstance(value, str):
        return False
    if value.isdigit():
        return True
    return _ISO_DATE.fullmatch(value) is not None


def _ip(value: Any) -> bool:
    if not isinstance(value, str) or "%" in value:  # the indexer takes no IPv6 zone (%eth0)
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _boolean(value: Any) -> bool:
    return isinstance(value, bool) or value in ("true", "false", "")


def _geo_pair(value: list[Any]) -> bool:
    return len(value) in (2, 3) and all(_number(v) is not None for v in value)


def _geo_object(value: dict[str, Any]) -> bool:
    return set(value) == {"lat", "lon"} and all(_number(v) is not None for v in value.values())


def _geo_point(value: Any) -> bool:
    return isinstance(value, str) and bool(value)  # "lat,lon" or a geohash


_LEAF_CHECKS: dict[str, Any] = {
    "keyword": _keyword,
    "text": _keyword,
    "match_only_text": _keyword,
    "long": _integer("long"),
    "short": _integer("short"),
    "float": _float,
    "date": _date,
    "ip": _ip,
    "boolean": _boolean,
    "geo_point": _geo_point,
}
