"""Policy files: finding them, loading them (collectors.sca.trust) and validating them.

A policy in the Wazuh SCA format::

    policy:       {id, name, description, file?, references?, regex_type?}
    requirements: {title?, description?, condition, rules}     # optional
    variables:    {$name: "a,b" | [a, b]}                       # optional
    checks:       [{id, title, description?, rationale?, remediation?, references?,
                    compliance?, condition, rules, regex_type?}, ...]

Validation is whole: one problem refuses the policy, with one line that names the file,
the check and what is wrong (the other policies still run). Unknown keys are ignored, so
policies written for other agents load. ``regex_type`` (``osregex``, the default, or
``pcre2``) chooses the dialect of ``r:`` and ``n:`` (collectors.sca.regex).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from collectors.sca.regex import REGEX_TYPES, RegexType
from collectors.sca.rules import Rule, RuleError, parse_rule
from collectors.sca.settings import ScaSettings
from collectors.sca.trust import UntrustedPolicy, read_trusted, within

Condition = Literal["all", "any", "none"]
CONDITIONS: tuple[str, ...] = ("all", "any", "none")
#: the policies shipped with agentbus
BUILTIN_DIR = Path(__file__).parent / "policies"
POLICY_SUFFIXES = (".yml", ".yaml")


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
    title: str
    condition: Condition
    rules: tuple[Rule, ...]
    description: str = ""
    rationale: str = ""
    remediation: str = ""
    references: tuple[str, ...] = ()
    compliance: tuple[str, ...] = ()

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
    requirements_title: str = ""


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
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{path}: not valid YAML{line}: {problem}") from None
    shell = settings.allow_shell_commands and within(path, settings.policy_dirs)
    why_no_shell = (
        "allow_shell_commands is false"
        if within(path, settings.policy_dirs)
        else "the policy is not in one of policy_dirs"
    )
    return parse_policy(data, path, shell_allowed=shell, why_no_shell=why_no_shell)


def parse_policy(
    data: Any, path: str, *, shell_allowed: bool = False, why_no_shell: str = ""
) -> Policy:
    """Validate a policy's parsed YAML; raises :class:`PolicyError` naming what is wrong."""

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
    regex_type = head.get("regex_type", "osregex")
    if regex_type not in REGEX_TYPES:
        raise fail("policy", f"regex_type must be one of {', '.join(REGEX_TYPES)}")
    try:
        references = _strings(head.get("references"), "references")
        variables = _variables(data.get("variables"))
    except ValueError as exc:
        raise fail("policy", str(exc)) from None

    def rules(value: Any, rtype: RegexType) -> tuple[Rule, ...]:
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
            if rule.shell and not shell_allowed:
                raise ValueError(
                    f"rule '{item}' needs a shell, which is not allowed ({why_no_shell})"
                )
            out.append(rule)
        return tuple(out)

    def condition(value: Any) -> Condition:
        if value not in CONDITIONS:
            raise ValueError(f"condition must be one of all, any, none (got {value!r})")
        return value  # type: ignore[no-any-return]

    requirements = None
    req_title = ""
    req = data.get("requirements")
    if req is not None:
        if not isinstance(req, dict):
            raise fail("requirements", "not a mapping")
        try:
            requirements = RuleSet(
                condition(req.get("condition")), rules(req.get("rules"), regex_type)
            )
        except ValueError as exc:
            raise fail("requirements", str(exc)) from None
        req_title = str(req.get("title") or "")

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
            title = item.get("title")
            if not isinstance(title, str) or not title.strip():
                raise ValueError("'title' must be a non-empty string")
            check_regex = item.get("regex_type", regex_type)
            if check_regex not in REGEX_TYPES:
                raise ValueError(f"regex_type must be one of {', '.join(REGEX_TYPES)}")
            checks.append(
                Check(
                    id=cid,
                    title=title.strip(),
                    condition=condition(item.get("condition")),
                    rules=rules(item.get("rules"), check_regex),
                    description=_text(item, "description"),
                    rationale=_text(item, "rationale"),
                    remediation=_text(item, "remediation"),
                    references=_strings(item.get("references"), "references"),
                    compliance=_compliance(item.get("compliance")),
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
        requirements_title=req_title,
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


def _compliance(value: Any) -> tuple[str, ...]:
    """``[{pci_dss: ["2.2.4"]}, ...]`` (or one mapping) as ``("pci_dss:2.2.4", ...)``."""
    if value is None:
        return ()
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise ValueError("'compliance' must be a list of mappings")
    out: list[str] = []
    for entry in items:
        if isinstance(entry, str):
            out.append(entry)
            continue
        if not isinstance(entry, dict):
            raise ValueError("'compliance' must be a list of mappings")
        for framework, ids in entry.items():
            for ident in ids if isinstance(ids, list) else [ids]:
                if isinstance(ident, (dict, list)):
                    raise ValueError(f"'compliance' {framework}: expected a list of values")
                out.append(f"{framework}:{ident}")
    return tuple(out)


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
