"""`agentbus config show`: the effective configuration, and where each value came from.

The configuration is built as every service builds it (core/config.py): the packaged
defaults, the local file, the group files in force (in the server's order), the
environment. ``--origin`` adds each key's layer: ``default``, the file's path,
``group:<name>``, ``env:<VAR>`` (a list a group added to shows both: ``default +
group:web``). Durations are shown in seconds and sizes in bytes.
"""

from __future__ import annotations

import argparse

HELP = "show the effective configuration (--origin: where each value came from)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    examples = (
        "agentbus config show --origin",
        "agentbus config show --json --config /etc/agentbus/agentbus.toml",
    )
    synopsis(parser, *examples)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print every key with its value", description=HELP)
    synopsis(show, *examples)
    show.add_argument(
        "--origin", action="store_true", help="say where each value came from (default: off)"
    )
    show.add_argument(
        "--json", action="store_true", help="print one JSON document (default: key = value)"
    )
    # also after the action (`agentbus config show --config F`)
    show.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="configuration file (default: $AGENTBUS_CONFIG, else the packaged default)",
    )


def run(args: argparse.Namespace) -> int:
    import json

    from agent.cli.common import config_of
    from core.config import flatten

    config = config_of(args)
    values = flatten(config)
    if args.json:
        doc: dict[str, object] = {
            "config_file": config.source,
            "groups": list(config.groups),
            "groups_applied_at": config.groups_applied_at,
            "groups_skipped": dict(config.groups_skipped),
            "values": values,
        }
        if args.origin:
            doc["origins"] = {k: config.origins.get(k, "default") for k in values}
        print(json.dumps(doc, indent=2))
        return 0
    groups = ", ".join(config.groups) or "none"
    print(f"# file {config.source}; groups {groups}")
    for group, why in config.groups_skipped.items():
        print(f"# group {group} not applied: {why}")
    width = max(len(k) for k in values)
    for key, value in values.items():
        line = f"{key:<{width}} = {json.dumps(value)}"
        if args.origin:
            line += f"  # {config.origins.get(key, 'default')}"
        print(line)
    return 0
