"""One assessment: load every configured policy, evaluate those that apply here.

Shared by the collector (collectors.sca.service) and ``agentbus sca run``: a policy that
cannot be loaded (invalid, untrusted, a policy id already taken) is refused whole with
one line and the others still run; a policy whose requirements do not hold is skipped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from collectors.sca.evaluate import Evaluator, PolicyResult
from collectors.sca.policy import PolicyError, load_policy, policy_files
from collectors.sca.settings import ScaSettings


@dataclass(slots=True)
class Assessment:
    #: every policy loaded, applicable or not, in the order found
    results: list[PolicyResult] = field(default_factory=list)
    #: (path, one-line reason) of every refused policy
    refused: list[tuple[str, str]] = field(default_factory=list)

    @property
    def applicable(self) -> list[PolicyResult]:
        return [r for r in self.results if r.applicable]


def assess(
    settings: ScaSettings,
    paths: list[str] | None = None,
    stop_event: threading.Event | None = None,
) -> Assessment:
    """Evaluate ``paths`` (default: the configured policies); raises
    :class:`collectors.sca.evaluate.Interrupted` when ``stop_event`` is set meanwhile."""
    evaluator = Evaluator(settings, stop_event)
    out = Assessment()
    ids: dict[str, str] = {}
    for path in policy_files(settings) if paths is None else paths:
        try:
            policy = load_policy(path, settings)
        except PolicyError as exc:
            out.refused.append((path, str(exc)))
            continue
        if policy.id in ids:
            out.refused.append(
                (path, f"{path}: policy: id {policy.id!r} is already the id of {ids[policy.id]}")
            )
            continue
        ids[policy.id] = path
        out.results.append(evaluator.policy(policy))
    return out
