"""A group file: the YAML configuration the server hands to every agent of a group.

The file is read with ``yaml.safe_load`` and mapped onto our configuration as a list of
:class:`Change` s, each naming the file's own key so that an error says which line of the
file is wrong. Two vocabularies live in one file (docs/configuration.md):

- the C++ agent's sections, for what we implement: ``logcollector`` (``localfiles``),
  ``inventory``, ``sca`` and ``events`` (batching). Keys of those sections we have no
  equivalent for (``reload_interval``, ``ports_all``, ``windows``...) and keys we do not
  know are ignored with a warning: the same file may serve other agents, of other versions;
- ``agentbus:``: our own TOML section and key names (``agentbus: {forwarder: {max_eps:
  500}}``), checked as strictly as the local file (an unknown key is an error).

Unknown top-level sections are ignored with one warning each. Keys a group may never set
(:data:`REFUSED`) make the whole file refused, with the reason: the connection to the
server, the bus, the credentials and TLS, and what guards the host from the server
itself. Values are checked by :func:`core.config.check_changes`, not here.

Adding a source of the C++ schema is one entry of :data:`SECTIONS` (``logcollector:
journald`` goes in :func:`_logcollector`, next to ``localfiles``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

#: the section of a group file holding our own TOML sections
OWN_SECTION = "agentbus"

#: what a group file may never set, by our key path (a section, or one key), and why
REFUSED: dict[tuple[str, ...], str] = {
    ("agent",): "the connection to the server, TLS and the data and run directories are "
    "set by the local file only",
    ("bus",): "the local bus, its endpoints and CURVE keys are set by the local file only",
    ("health",): "a listening socket is opened by the local file only",
    ("commander",): "the command channel that delivers group files is set by the local "
    "file only (a wrong value could cut the agent off from the server)",
    ("log",): "the agent's own log (where it is written, how much) is set by the local file only",
    ("collectors", "logcollector", "file_owners"): "whose files may be read is set by the "
    "local file only",
    ("collectors", "logcollector", "commands"): "commands the agent runs are set by the "
    "local file only",
    ("collectors", "logcollector", "full_commands"): "commands the agent runs are set by the "
    "local file only",
    ("collectors", "sca", "policy_dirs"): "trusted policy directories are set by the local "
    "file only",
    ("collectors", "sca", "allow_shell_commands"): "shell commands in policies are allowed "
    "by the local file only",
    ("active_response",): "what runs with the active-response executor's privileges is set "
    "by the local file only",
}


class GroupFileError(Exception):
    """The file cannot be used; ``key`` is the file's own key (dotted), ``what`` why."""

    def __init__(self, key: str, what: str) -> None:
        super().__init__(f"{key}: {what}" if key else what)
        self.key = key
        self.what = what


@dataclass(frozen=True)
class Change:
    """One change a group file makes: ``set`` a key, or ``add``/``remove`` list items."""

    op: Literal["set", "add", "remove"]
    #: our key path: ``("collectors", "logcollector", "paths")``
    path: tuple[str, ...]
    value: Any
    #: the key as written in the group file (``logcollector.localfiles[0].location``)
    source_key: str


@dataclass
class GroupFile:
    """A parsed group file: its changes in file order, and what was ignored."""

    name: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_group_file(name: str, text: bytes | str) -> GroupFile:
    """Map the YAML ``text`` of group ``name``; raises :class:`GroupFileError`."""
    import yaml  # only agents with group files need it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise GroupFileError("", f"not valid YAML{where}") from None
    except UnicodeDecodeError:
        raise GroupFileError("", "not UTF-8 text") from None
    out = GroupFile(name)
    if data is None:
        return out  # an empty file: a group that changes nothing
    if not isinstance(data, dict):
        raise GroupFileError("", "the file must be a mapping of sections")
    for section, body in data.items():
        section = str(section)
        if section == OWN_SECTION:
            _own(body, out)
        elif section == "agent":
            raise GroupFileError("agent", REFUSED[("agent",)])
        elif section in SECTIONS:
            if body is None:
                continue
            if not isinstance(body, dict):
                raise GroupFileError(section, "must be a mapping")
            SECTIONS[section](body, out)
        else:
            out.warnings.append(f"section {section!r} ignored: not one this agent implements")
    return out


def refusal(path: tuple[str, ...]) -> str | None:
    """Why a group may not set ``path`` (or a key under it); None: it may."""
    for n in range(1, len(path) + 1):
        reason = REFUSED.get(path[:n])
        if reason is not None:
            return reason
    return None


def _set(out: GroupFile, path: tuple[str, ...], value: Any, key: str) -> None:
    out.changes.append(Change("set", path, value, key))


def _own(body: Any, out: GroupFile) -> None:
    """``agentbus:`` — our sections and keys, leaf by leaf."""
    if body is None:
        return
    if not isinstance(body, dict):
        raise GroupFileError(OWN_SECTION, "must be a mapping of our configuration sections")

    def walk(node: dict[Any, Any], path: tuple[str, ...]) -> None:
        for key, value in node.items():
            sub = (*path, str(key))
            dotted = ".".join((OWN_SECTION, *sub))
            reason = refusal(sub)
            if reason is not None:
                raise GroupFileError(dotted, f"refused: {reason}")
            # tables go down (collectors.<name>), values are leaves
            if isinstance(value, dict):
                walk(value, sub)
            else:
                _set(out, sub, value, dotted)

    walk(body, ())


def _ignored(out: GroupFile, key: str, why: str) -> None:
    out.warnings.append(f"{key} ignored: {why}")


def _simple(
    body: dict[Any, Any],
    out: GroupFile,
    section: str,
    target: tuple[str, ...],
    keys: dict[str, str],
    handled: set[str],
) -> None:
    """Keys of a C++ section that map one to one onto ``target`` + our key."""
    for key, value in body.items():
        key = str(key)
        if key in keys:
            _set(out, (*target, keys[key]), value, f"{section}.{key}")
        elif key not in handled:
            _ignored(out, f"{section}.{key}", "not a key this agent implements")


def _entries(value: Any, key: str, *, strings: bool = False) -> list[dict[Any, Any]]:
    """A list of mappings; with ``strings``, a plain string stands for ``{location: it}``
    (the C++ agent's docs write localfiles both ways)."""
    if value is None:
        return []
    if strings and isinstance(value, list):
        value = [{"location": v} if isinstance(v, str) else v for v in value]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise GroupFileError(key, "must be a list of mappings")
    return value


#: journal fields of the C++ schema's ``journald`` filters → our list of exact names
_JOURNAL_FIELDS = {
    "_SYSTEMD_UNIT": "journald_units",
    "UNIT": "journald_units",
    "SYSLOG_IDENTIFIER": "journald_identifiers",
}


def _journald(body: dict[Any, Any], out: GroupFile, target: tuple[str, ...]) -> None:
    """``journald`` filters: an exact unit or identifier adds to our filters; a pattern, a
    ``conditions`` block or another field has no equivalent here and is ignored (warned)."""
    for i, entry in enumerate(_entries(body.get("journald"), "logcollector.journald")):
        key = f"logcollector.journald[{i}]"
        field_name, value = entry.get("field"), entry.get("value")
        ours = _JOURNAL_FIELDS.get(str(field_name))
        if "conditions" in entry or ours is None:
            _ignored(out, key, "our journal filters take exact unit and identifier names only")
            continue
        if not isinstance(value, str) or not value.strip():
            raise GroupFileError(f"{key}.value", "required: the unit or identifier")
        if entry.get("exact_match", True) is not True:
            _ignored(out, key, "a pattern: our journal filters take exact names only")
            continue
        out.changes.append(Change("add", (*target, ours), [value.strip()], f"{key}.value"))


def _logcollector(body: dict[Any, Any], out: GroupFile) -> None:
    # The sources of the C++ schema: ``localfiles`` and ``journald`` are mapped below.
    target = ("collectors", "logcollector")
    for key in ("reload_interval", "windows", "macos"):
        if key in body:
            _ignored(out, f"logcollector.{key}", "no equivalent in this agent")
    # localfiles add to the paths of the layers below (the local file's, another group's):
    # a group adds what its hosts have, it does not take away what the host follows.
    localfiles = _entries(body.get("localfiles"), "logcollector.localfiles", strings=True)
    for i, entry in enumerate(localfiles):
        key = f"logcollector.localfiles[{i}].location"
        location = entry.get("location")
        if not isinstance(location, str) or not location.strip():
            raise GroupFileError(key, "required: the path (or glob) of a log file")
        out.changes.append(Change("add", (*target, "paths"), [location], key))
    _journald(body, out, target)
    _simple(
        body,
        out,
        "logcollector",
        target,
        {"enabled": "enabled", "read_interval": "poll_interval"},
        {"localfiles", "reload_interval", "windows", "macos", "journald"},
    )


#: inventory switches of the C++ schema → the name in our ``collectors`` list
_INVENTORIES = {
    "system": "system",
    "hardware": "hardware",
    "packages": "packages",
    "processes": "processes",
    "networks": "networks",
    "ports": "ports",
}


def _inventory(body: dict[Any, Any], out: GroupFile) -> None:
    target = ("collectors", "inventory")
    for key, name in _INVENTORIES.items():
        if key not in body:
            continue
        value = body[key]
        if not isinstance(value, bool):
            raise GroupFileError(f"inventory.{key}", f"expected true or false, got {value!r}")
        op: Literal["add", "remove"] = "add" if value else "remove"
        out.changes.append(Change(op, (*target, "collectors"), [name], f"inventory.{key}"))
    for key in ("scan_on_start", "ports_all", "hotfixes"):
        if key in body:
            _ignored(out, f"inventory.{key}", "no equivalent in this agent")
    _simple(
        body,
        out,
        "inventory",
        target,
        {"enabled": "enabled", "interval": "interval"},
        {*_INVENTORIES, "scan_on_start", "ports_all", "hotfixes"},
    )


def _sca(body: dict[Any, Any], out: GroupFile) -> None:
    target = ("collectors", "sca")
    # Policy files named here are still read only when trusted (collectors/sca/trust.py).
    for key, op in (("policies", "add"), ("policies_disabled", "remove")):
        if key not in body or body[key] is None:
            continue
        value = body[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise GroupFileError(f"sca.{key}", "expected a list of policy file paths")
        out.changes.append(Change(op, (*target, "policies"), list(value), f"sca.{key}"))  # type: ignore[arg-type]
    if "scan_on_start" in body:
        _ignored(out, "sca.scan_on_start", "this agent always assesses at start")
    _simple(
        body,
        out,
        "sca",
        target,
        {"enabled": "enabled", "interval": "interval"},
        {"policies", "policies_disabled", "scan_on_start"},
    )


def _events(body: dict[Any, Any], out: GroupFile) -> None:
    _simple(
        body,
        out,
        "events",
        ("forwarder",),
        {"batch_interval": "batch_interval", "batch_size": "batch_max_bytes"},
        set(),
    )


#: the C++ agent's sections we implement → what maps one of them onto our keys
SECTIONS: dict[str, Callable[[dict[Any, Any], GroupFile], None]] = {
    "logcollector": _logcollector,
    "inventory": _inventory,
    "sca": _sca,
    "events": _events,
}
