"""``python -m active_response --config FILE``: the executor, as ``agentbus active-response``."""

import argparse
import sys

from active_response import cli
from bus.errors import AgentbusError
from core.private_dirs import restrict_umask


def main() -> int:
    restrict_umask()  # nothing it creates is for other users
    parser = argparse.ArgumentParser(prog="agentbus-active-response", description=cli.HELP)
    parser.add_argument("--config", metavar="FILE", help="configuration file")
    cli.add_arguments(parser)
    try:
        return cli.run(parser.parse_args())
    except AgentbusError as exc:
        print(f"agentbus-active-response: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
