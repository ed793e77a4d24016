"""`agentbus run`: the whole agent in the foreground, one supervised process per service."""

from __future__ import annotations

import argparse

HELP = "run the forwarder, commander, built-in executor and enabled collectors (foreground)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from agent.cli.common import service_setup
    from agent.supervisor import Supervisor

    return Supervisor(service_setup(args, "agent")).run()
