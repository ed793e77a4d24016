"""The documents of the ``wazuh-states-sca`` index: one per check of an applicable policy.

Fields are the index's (:mod:`bus.indices`, strict): ``check.*`` (id, name, description,
rationale, remediation, references, compliance, condition, rules as written in the
policy, result, reason) and ``policy.*`` (id, name, file, description, references);
``@timestamp`` is added by the stateful sync. A check's MITRE ids are not sent
(collectors.sca.policy says why). Lists are keyword arrays; empty texts and
lists are left out (an update then sets them to null). The document id is
``sha1hex(agent_uuid + ":" + policy id + ":" + check id)``: stable across runs, edits of
the policy file and its path.
"""

from __future__ import annotations

from typing import Any

from collectors.sca.evaluate import NOT_APPLICABLE, Outcome
from collectors.sca.policy import Check, Policy


def check_key(policy: Policy, check: Check) -> str:
    """The primary key of a check's document (the id is built from it)."""
    return f"{policy.id}:{check.id}"


def check_document(policy: Policy, check: Check, outcome: Outcome) -> dict[str, Any]:
    doc_check = _compact(
        {
            "id": check.id,
            "name": check.name,
            "description": check.description,
            "rationale": check.rationale,
            "remediation": check.remediation,
            "references": list(check.references),
            "compliance": list(check.compliance),
            "condition": check.condition,
            "rules": [r.raw for r in check.rules],
            "result": outcome.result,
            "reason": outcome.reason if outcome.result == NOT_APPLICABLE else "",
        }
    )
    return {"check": doc_check, "policy": policy_fields(policy)}


def policy_fields(policy: Policy) -> dict[str, Any]:
    return _compact(
        {
            "id": policy.id,
            "name": policy.name,
            "file": policy.file,
            "description": policy.description,
            "references": list(policy.references),
        }
    )


def _compact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v not in ("", [], None)}
