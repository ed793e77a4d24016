"""``python -m commander --config F``: the commander alone (same as ``agentbus commander``)."""

from __future__ import annotations

import argparse
import os
import sys

from loguru import logger

from core.config import Config


def serve(config: Config) -> int:
    """Run the commander; re-execute this process when a restart found no supervisor."""
    from commander.service import Commander

    service = Commander(config)
    code = service.run()
    if service.reexec_requested:
        argv = [sys.executable, "-m", "commander", "--config", config.source]
        logger.info("commander: re-executing {}", " ".join(argv))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, argv)
    return code


def main(argv: list[str] | None = None) -> int:
    from agent.cli.common import service_setup
    from bus.errors import AgentbusError

    parser = argparse.ArgumentParser(prog="python -m commander", description=__doc__)
    parser.add_argument("--config", metavar="FILE", help="configuration file")
    args = parser.parse_args(argv)
    try:
        return serve(service_setup(args, "commander"))
    except AgentbusError as exc:
        print(f"agentbus commander: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
