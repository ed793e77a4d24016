"""`agentbus commander`: run the command service alone, in the foreground.

It long-polls the server for commands, publishes each to the executors of its topic and
reports their results through the forwarder (which must run too, e.g. ``agentbus
forwarder``). The built-in executor of the ``agent`` topic is a separate process:
``python -m commander.agent_executor --config F`` (``agentbus run`` starts both).
"""

from __future__ import annotations

import argparse

HELP = "run the commander (server commands → local executors) in the foreground"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from agent.cli.common import service_setup
    from commander.__main__ import serve

    config = service_setup(args, "commander")
    return serve(config)
