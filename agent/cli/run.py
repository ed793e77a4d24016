"""`agentbus run`: the whole agent in the foreground, every built-in service supervised."""

from __future__ import annotations

import argparse

HELP = "run the forwarder, commander, built-in executor and enabled collectors (foreground)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from agent.cli.common import service_setup
    from agent.cli.service import reexec
    from agent.supervisor import Supervisor

    config = service_setup(args, "agent")
    supervisor = Supervisor(config)
    code = supervisor.run()
    if supervisor.reexec_requested:  # the restart command: every service stopped
        reexec("run", config.source)
    return code
