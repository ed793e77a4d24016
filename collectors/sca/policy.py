"""Policy files: finding them, loading them (collectors.sca.trust) and validating them.

A policy in the Wazuh SCA format, current (5.x) or 4.x::

    policy:       {id, name, description, file?, references?, regex_type?}
    requirements: {name, description?, condition, rules}       # optional
    variables:    {$name: "a,b" | [a, b]}                       # optional
    checks:       [{id, name, description?, rationale?, remediation?, references?,
                    compliance?, mitre?, condition, rules, regex_type?}, ...]

- ``name`` is the current key of checks and requirements; the 4.x ``title`` is read when
  there is no ``name``.
- ``compliance`` is an object ``{pci_dss: [...], nist_800_53: [...]}`` (current) or a
  4.x list of single-key objects ``[{pci_dss_v4.0: [...]}, ...]``; both become
  ``key:value`` strings (``pci_dss:2.2``), the keyword list of the index's
  ``check.compliance``. Keys are the current normalized ones (``COMPLIANCE_KEYS``); 4.x
  versioned spellings map to them (``COMPLIANCE_ALIASES``); other keys (``cis``,
  ``cis_csc_v8``...) are ignored with a warning, as current Wazuh does.
- ``mitre`` (``tactic``, ``technique``, ``subtechnique``, each ``{id: [...], name: [...]}``
  or a list of ids; 4.x put ``mitre_tactics``/``mitre_techniques`` in ``compliance``) is
  kept on the check as ``tactic:TA0005`` strings, shown by ``agentbus sca run --json``,
  and not sent: the index has no field for it, and ``check.compliance`` holds compliance
  frameworks only, as the current format separates them.
- ``r:`` and ``n:`` are PCRE2 (collectors.sca.regex); ``regex_type: osregex`` on the
  policy or a check is our extension that reads them as 4.x OS_Regex (current Wazuh
  ignores ``regex_type``).

Validation is whole: one problem refuses the policy, with one line that names the file,
the check and what is wrong (the other policies still run). What is ignored (unknown
keys, unsupported compliance keys) is listed in the policy's ``warnings``.

A ``c:`` rule that needs a shell (collectors.commands.needs_shell) runs only when the
policy lies in one of ``policy_dirs`` and ``allow_shell_commands`` is true
(``Policy.shell_allowed``). Otherwise the policy still loads: those rules evaluate as
not applicable, "needs a shell (...)" saying which condition is missing
(collectors.sca.evaluate), and one warning counts the checks concerned — so a policy
tried by path shows which of its checks need trust.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from collectors.sca.regex import DEFAULT_REGEX_TYPE, REGEX_TYPES, RegexType
from collectors.sca.rules import Rule, RuleError, parse_rule
from collectors.sca.settings import ScaSettings
from collectors.sca.trust import UntrustedPolicy, read_trusted, within

Condition = Literal["all", "any", "none"]
CONDITIONS: tuple[str, ...] = ("all", "any", "none")
#: the policies shipped with agentbus
BUILTIN_DIR = Path(__file__).parent / "policies"
POLICY_SUFFIXES = (".yml", ".yaml")
#: the compliance keys of the current format
COMPLIANCE_KEYS = frozenset(
    (
        "cmmc",
        "fedramp",
        "gdpr",
        "hipaa",
        "iso_27001",
        "nis2",
        "nist_800_171",
        "nist_800_53",
        "pci_dss",
        "tsc",
    )
)
#: 4.x spellings of those keys (versioned, or named otherwise); SOC 2 is the TSC
COMPLIANCE_ALIASES = {
    "pci_dss_v3.2.1": "pci_dss",
    "pci_dss_3.2.1": "pci_dss",
    "pci_dss_v4.0": "pci_dss",
    "pci_dss_4.0": "pci_dss",
    "nist_sp_800-53": "nist_800_53",
    "nist_800-53": "nist_800_53",
    "nist_sp_800-171": "nist_800_171",
    "nist_800-171": "nist_800_171",
    "iso_27001-2013": "iso_27001",
    "iso_27001-2022": "iso_27001",
    "cmmc_v2.0": "cmmc",
    "gdpr_iv": "gdpr",
    "soc_2": "tsc",
}
MITRE_KEYS = ("tactic", "technique", "subtechnique")
#: 4.x compliance keys that are MITRE ATT&CK ids
MITRE_ALIASES = {"mitre_tactics": "tactic", "mitre_techniques": "technique"}
#: checks named in one warning line, the rest counted
_WARN_IDS = 5


#: the reason of a rule that needs a shell when nothing says why it may not run one
NO_SHELL = "needs a shell (not allowed)"


class PolicyError(Exception):
    """A policy refused whole; the message is one line naming the file and the problem."""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules and how their results combine (a check, or a policy's requirements)."""

    condition: Condition
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    name: str
    condition: Condition
    rules: tuple[Rule, ...]
    description: str = ""
    rationale: str = ""
    remediation: str = ""
    references: tuple[str, ...] = ()
    #: ``framework:id`` (collectors.sca.documents sends them as check.compliance)
    compliance: tuple[str, ...] = ()
    #: ``tactic:TA0005``, ``technique:T1036``... (not sent: see the module's docstring)
    mitre: tuple[str, ...] = ()

    @property
    def ruleset(self) -> RuleSet:
        return RuleSet(self.condition, self.rules)


@dataclass(frozen=True, slots=True)
class Policy:
    id: str
    name: str
    description: str
    #: the ``file`` the policy names itself by (its base name when it has none)
    file: str
    #: where it was read from
    path: str
    checks: tuple[Check, ...]
    references: tuple[str, ...] = ()
    requirements: RuleSet | None = None
    requirements_name: str = ""
    #: what was ignored while loading, one line each (the policy still loads)
    warnings: tuple[str, ...] = ()
    #: its c: rules that need a shell may run one (trusted directory and the key on)
    shell_allowed: bool = False
    #: why they may not: the reason of their "not applicable"
    no_shell_reason: str = NO_SHELL


def policy_files(settings: ScaSettings) -> list[str]:
    """Every policy file to evaluate: the built-in ones, ``policies``, then ``policy_dirs``."""
    found: list[str] = []
    if settings.builtin_policies:
        found.extend(_yaml_files(str(BUILTIN_DIR)))
    found.extend(settings.policies)
    for directory in settings.policy_dirs:
        found.extend(_yaml_files(directory))
    seen: set[str] = set()
    out = []
    for path in found:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append(path)
    return out


def _yaml_files(directory: str) -> list[str]:
    return sorted(
        p
        for suffix in POLICY_SUFFIXES
        for p in glob.glob(os.path.join(glob.escape(directory), f"*{suffix}"))
        if os.path.isfile(p)
    )


def load_policy(path: str, settings: ScaSettings) -> Policy:
    """Read, parse and validate one policy file; raises :class:`PolicyError`."""
    try:
        raw = read_trusted(path, settings.max_policy_bytes)
    except UntrustedPolicy as exc:
        raise PolicyError(f"{path}: {exc}") from None
    try:
        import yaml
    except ImportError:
        raise PolicyError(f"{path}: cannot read YAML: PyYAML is not installed") from None
    try:
        # libyaml's safe loader when PyYAML has it: ~5x faster on a benchmark policy
        data = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{path}: not valid YAML{line}: {problem}") from None
    trusted = within(path, settings.policy_dirs)
    missing = [] if trusted else ["policy not in policy_dirs"]
    if not settings.allow_shell_commands:
        missing.append("allow_shell_commands is off")
    return parse_policy(
        data,
        path,
        shell_allowed=not missing,
        no_shell_reason=f"needs a shell ({' / '.join(missing)})" if missing else "",
    )


def parse_policy(
    data: Any, path: str, *, shell_allowed: bool = False, no_shell_reason: str = NO_SHELL
) -> Policy:
    """Validate a policy's parsed YAML; raises :class:`PolicyError` naming what is wrong.

    ``shell_allowed``: its rules that need a shell may run one (else they are not
    applicable, ``no_shell_reason`` saying why)."""

    def fail(where: str, what: str) -> PolicyError:
        return PolicyError(f"{path}: {where}: {what}")

    if not isinstance(data, dict):
        raise fail("policy file", "expected a mapping with 'policy' and 'checks'")
    head = data.get("policy")
    if not isinstance(head, dict):
        raise fail("policy", "missing or not a mapping")
    for key in ("id", "name", "description"):
        if not isinstance(head.get(key), str) or not head[key].strip():
            raise fail("policy", f"'{key}' must be a non-empty string")
    regex_type = head.get("regex_type", DEFAULT_REGEX_TYPE)
    if regex_type not in REGEX_TYPES:
        raise fail("policy", f"regex_type must be one of {', '.join(REGEX_TYPES)}")
    #: warning -> the ids of the checks it concerns
    ignored: dict[str, list[str]] = {}
    try:
        references = _strings(head.get("references"), "references")
        variables = _variables(data.get("variables"))
    except ValueError as exc:
        raise fail("policy", str(exc)) from None

    def rules(value: Any, rtype: RegexType, where: str) -> tuple[Rule, ...]:
        if not isinstance(value, list) or not value:
            raise ValueError("'rules' must be a non-empty list of strings")
        out = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"rule {item!r} is not a string")
            try:
                rule = parse_rule(item, variables, rtype)
            except RuleError as exc:
                raise ValueError(f"rule '{item}': {exc}") from None
            if rule.warning:
                ignored.setdefault(f"rule '{item}': {rule.warning}", []).append(where)
            if rule.shell and not shell_allowed:
                ignored.setdefault(f"{no_shell_reason}: not applicable", []).append(where)
            out.append(rule)
        return tuple(out)

    def condition(value: Any) -> Condition:
        if value not in CONDITIONS:
            raise ValueError(f"condition must be one of all, any, none (got {value!r})")
        return value  # type: ignore[no-any-return]

    requirements = None
    req_name = ""
    req = data.get("requirements")
    if req is not None:
        if not isinstance(req, dict):
            raise fail("requirements", "not a mapping")
        try:
            requirements = RuleSet(
                condition(req.get("condition")), rules(req.get("rules"), regex_type, "requirements")
            )
        except ValueError as exc:
            raise fail("requirements", str(exc)) from None
        req_name = str(req.get("name") or req.get("title") or "")

    raw_checks = data.get("checks")
    if not isinstance(raw_checks, list) or not raw_checks:
        raise fail("checks", "must be a non-empty list")
    checks: list[Check] = []
    seen: set[str] = set()
    for n, item in enumerate(raw_checks, 1):
        if not isinstance(item, dict):
            raise fail(f"check #{n}", "not a mapping")
        cid = item.get("id")
        if isinstance(cid, bool) or not isinstance(cid, (int, str)) or not str(cid).strip():
            raise fail(f"check #{n}", "'id' must be an integer or a non-empty string")
        cid = str(cid).strip()
        if cid in seen:
            raise fail(f"check {cid}", "duplicate id")
        seen.add(cid)
        try:
            name = item.get("name")
            if name is None:
                name = item.get("title")  # 4.x
            if not isinstance(name, str) or not name.strip():
                raise ValueError("'name' (or the 4.x 'title') must be a non-empty string")
            compliance, mitre = _compliance(item.get("compliance"), cid, ignored)
            mitre += _mitre(item.get("mitre"), cid, ignored)
            check_regex = item.get("regex_type", regex_type)
            if check_regex not in REGEX_TYPES:
                raise ValueError(f"regex_type must be one of {', '.join(REGEX_TYPES)}")
            checks.append(
                Check(
                    id=cid,
                    name=name.strip(),
                    condition=condition(item.get("condition")),
                    rules=rules(item.get("rules"), check_regex, cid),
                    description=_text(item, "description"),
                    rationale=_text(item, "rationale"),
                    remediation=_text(item, "remediation"),
                    references=_strings(item.get("references"), "references"),
                    compliance=compliance,
                    mitre=tuple(dict.fromkeys(mitre)),
                )
            )
        except ValueError as exc:
            raise fail(f"check {cid}", str(exc)) from None
    return Policy(
        id=head["id"].strip(),
        name=head["name"].strip(),
        description=head["description"].strip(),
        file=str(head.get("file") or os.path.basename(path)),
        path=path,
        checks=tuple(checks),
        references=references,
        requirements=requirements,
        requirements_name=req_name,
        warnings=tuple(_warning_lines(ignored)),
        shell_allowed=shell_allowed,
        no_shell_reason=no_shell_reason if not shell_allowed else "",
    )


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"'{key}' must be a string")
    return str(value).strip()


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return tuple(str(v) for v in value)
    raise ValueError(f"'{key}' must be a list of strings")


def _values(value: Any, what: str) -> list[str]:
    """A scalar or a list of scalars, as strings."""
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{what}: expected a list of strings")
    return [str(v).strip() for v in items if str(v).strip()]


def _compliance(
    value: Any, cid: str, ignored: dict[str, list[str]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``{pci_dss: ["2.2"]}`` or ``[{pci_dss_v4.0: ["2.2"]}, ...]`` as ``("pci_dss:2.2",
    ...)``, with the 4.x MITRE keys it held as ``("tactic:TA0005", ...)``."""
    if value is None:
        return (), ()
    if isinstance(value, dict):
        entries = list(value.items())
    elif isinstance(value, list) and all(isinstance(e, dict) for e in value):
        entries = [pair for e in value for pair in e.items()]
    else:
        raise ValueError("'compliance' must be a mapping (or a 4.x list of mappings)")
    out: list[str] = []
    mitre: list[str] = []
    for key, ids in entries:
        raw = str(key).strip()
        norm = raw.lower()
        values = _values(ids, f"'compliance' {raw}")
        if norm in MITRE_ALIASES:
            mitre.extend(f"{MITRE_ALIASES[norm]}:{v}" for v in values)
            continue
        norm = COMPLIANCE_ALIASES.get(norm, norm)
        if norm not in COMPLIANCE_KEYS:
            ignored.setdefault(f"compliance key {raw!r} is not supported: ignored", []).append(cid)
            continue
        out.extend(f"{norm}:{v}" for v in values)
    return tuple(dict.fromkeys(out)), tuple(mitre)


def _mitre(value: Any, cid: str, ignored: dict[str, list[str]]) -> tuple[str, ...]:
    """``{tactic: {id: [...], name: [...]}, ...}`` (or ``{tactic: [ids]}``) as
    ``("tactic:TA0005", ...)``; the names are the catalogue's, the ids say it all."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ValueError("'mitre' must be a mapping of tactic, technique, subtechnique")
    out: list[str] = []
    for key, entry in value.items():
        if key not in MITRE_KEYS:
            ignored.setdefault(f"mitre key {key!r} is not supported: ignored", []).append(cid)
            continue
        ids = entry.get("id") if isinstance(entry, dict) else entry
        if ids is None:
            continue
        out.extend(f"{key}:{v}" for v in _values(ids, f"'mitre' {key}"))
    return tuple(out)


def _warning_lines(ignored: dict[str, list[str]]) -> list[str]:
    lines = []
    for what, ids in ignored.items():
        shown = ", ".join(ids[:_WARN_IDS])
        more = f" and {len(ids) - _WARN_IDS} more" if len(ids) > _WARN_IDS else ""
        lines.append(f"{what} (check {shown}{more})")
    return lines


def _variables(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("'variables' must be a mapping")
    out: dict[str, str] = {}
    for name, val in value.items():
        if not isinstance(name, str) or not name.startswith("$") or len(name) < 2:
            raise ValueError(f"variable {name!r}: names start with '$'")
        if isinstance(val, list):
            val = ",".join(str(v) for v in val)
        if not isinstance(val, (str, int, float)) or isinstance(val, bool):
            raise ValueError(f"variable {name}: expected a string or a list")
        out[name] = str(val)
    return out
