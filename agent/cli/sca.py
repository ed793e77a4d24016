"""`agentbus sca`: the security configuration assessment collector, or one assessment.

``agentbus sca [--once]`` runs the collector (like every service of the registry:
agent/cli/service.py). ``agentbus sca run [--policy FILE]... [--json]`` evaluates the
configured policies — or only the given files — once, here, and prints a summary (score,
passed / failed / not applicable per policy, the failed checks with their remediation)
without sending anything: the way to try a policy. Exit 0 when the assessment ran,
whatever its results; 1 when it could not (no policy, or every policy refused); 2 on
usage or configuration errors.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collectors.sca.assess import Assessment
    from collectors.sca.evaluate import PolicyResult

HELP = "security configuration assessment: run the collector, or 'sca run' to assess once"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from agent.cli import service
    from core import registry

    service.add_arguments(parser, registry.get("sca"))
    actions = parser.add_subparsers(dest="sca_action", metavar="ACTION", required=False)
    run_parser = actions.add_parser(
        "run", help="assess once and print the results (sends nothing)", description=__doc__
    )
    # SUPPRESS: `agentbus sca --config F run` keeps the F given before the action
    run_parser.add_argument(
        "--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file"
    )
    run_parser.add_argument(
        "--policy",
        metavar="FILE",
        action="append",
        help="assess this policy file instead of the configured ones (repeatable)",
    )
    run_parser.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "sca_action", None) != "run":
        from agent.cli import service

        return service.run("sca", args)
    import json
    import sys

    from agent.cli.common import config_of
    from bus.errors import EXIT_RUNTIME
    from collectors.sca.assess import assess

    config = config_of(args)
    assessment = assess(config.collectors.sca, args.policy)
    for _path, reason in assessment.refused:
        print(f"agentbus sca: refused: {reason}", file=sys.stderr)
    for result in assessment.results:
        for warning in result.policy.warnings:
            print(f"agentbus sca: warning: {result.policy.path}: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(as_json(assessment), indent=2))
    elif assessment.results:
        print(render(assessment))
    if not assessment.results:
        if not assessment.refused:
            print("agentbus sca: no policy to assess", file=sys.stderr)
        return EXIT_RUNTIME
    return 0


def as_json(assessment: Assessment) -> dict[str, Any]:
    return {
        "policies": [_policy_json(r) for r in assessment.results],
        "refused": [{"path": p, "reason": r} for p, r in assessment.refused],
    }


def _policy_json(result: PolicyResult) -> dict[str, Any]:
    p = result.policy
    return {
        "id": p.id,
        "name": p.name,
        "file": p.file,
        "path": p.path,
        "applicable": result.applicable,
        "reason": result.reason,
        "warnings": list(p.warnings),
        "score": result.score,
        "passed": result.count("passed"),
        "failed": result.count("failed"),
        "not_applicable": result.count("not applicable"),
        "checks": [
            {
                "id": c.id,
                "name": c.name,
                "result": o.result,
                "reason": o.reason,
                "remediation": c.remediation,
                "compliance": list(c.compliance),
                "mitre": list(c.mitre),
            }
            for c, o in result.checks
        ],
    }


def render(assessment: Assessment) -> str:
    lines: list[str] = []
    for result in assessment.results:
        p = result.policy
        if lines:
            lines.append("")
        lines.append(f"{p.name} ({p.id}, {p.path})")
        if not result.applicable:
            lines.append(f"  not assessed on this host: {result.reason}")
            continue
        score = "-" if result.score is None else f"{result.score}%"
        lines.append(
            f"  score {score}: {result.count('passed')} passed, {result.count('failed')} failed,"
            f" {result.count('not applicable')} not applicable"
        )
        failed = [(c, o) for c, o in result.checks if o.result == "failed"]
        if failed:
            lines.append("  failed:")
            for check, _ in failed:
                lines.append(f"    {check.id}  {check.name}")
                if check.remediation:
                    lines.append(f"          remediation: {check.remediation}")
        skipped = [(c, o) for c, o in result.checks if o.result == "not applicable"]
        if skipped:
            lines.append("  not applicable:")
            for check, outcome in skipped:
                lines.append(f"    {check.id}  {check.name}: {outcome.reason}")
    return "\n".join(lines)
