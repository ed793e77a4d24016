"""`agentbus forwarder`: run the forwarder service alone, in the foreground.

It receives events on the bus, keeps them on disk and ships them to the server. SIGTERM or
SIGINT stop it gracefully (exit 0); a second signal exits at once — nothing committed to
disk is lost either way.
"""

from __future__ import annotations

import argparse

HELP = "run the forwarder service (events: bus → disk → server) in the foreground"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from agent.cli.common import service_setup
    from forwarder.service import Forwarder

    config = service_setup(args, "forwarder")
    return Forwarder(config).run()
