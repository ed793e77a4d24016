"""``agentbus active-response``: run the active-response executor in the foreground.

Not a service of ``agentbus run``: it runs as a process of its own, with its own unit
(etc/agentbus-active-response.service) and only the privileges its programs need.
"""

from __future__ import annotations

import argparse

from active_response.settings import load
from core.logs import setup_logging

HELP = "run the active-response executor (its own process and unit; not part of 'run')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    synopsis(parser, "agentbus active-response --config /etc/agentbus/agentbus.toml")
    parser.description = (
        "Settings: [active_response] of the configuration file, every key with its default "
        "in docs/active-response.md."
    )


def run(args: argparse.Namespace) -> int:
    from active_response.executor import ActiveResponse

    config, settings = load(args.config)
    setup_logging(config.log, "active-response")
    return ActiveResponse(config, settings).run()
