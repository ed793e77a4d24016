"""`agentbus register`: enroll this agent with the server's management API.

Exit codes: 0 enrolled; 2 bad arguments (a name the server would refuse, also a host name
used as the default name) or already enrolled (use ``--force``); 3 the server could not be
reached (network, TLS) or did not accept the enrollment (wrong user or password, agent
refused, a pinned ``--uuid-version`` refused). Every failure is one line on stderr.

The id is a UUID v7 unless ``--uuid-version`` pins one; a server that accepts only v4 ids
gets a v4 at once, and one line on stderr says so.

The password: ``--password -`` reads one line from stdin (a pipe, a file); without the
flag, a prompt on a terminal, else stdin. A password given as ``--password VALUE`` still
works, but every local user can read it in ``ps`` while the command runs. (No environment
variable: ``AGENTBUS_*`` names configuration keys.)
"""

from __future__ import annotations

import argparse
import sys

HELP = "enroll this agent with the server (once; --force to enroll again)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    synopsis(
        parser,
        'echo "$PASSWORD" | agentbus register --enroll-url https://manager:55000 --user wazuh'
        " --password -",
        "agentbus register --enroll-url http://127.0.0.1:27000 --user wazuh --name web-01 --force",
    )
    parser.add_argument(
        "--enroll-url",
        required=True,
        metavar="URL",
        help="management API base URL, e.g. https://server:55000",
    )
    parser.add_argument("--user", required=True, help="management API user, e.g. wazuh")
    parser.add_argument(
        "--password",
        metavar="-|PASSWORD",
        help="management API password: '-' reads one line from stdin (recommended); a "
        "value given here is visible to other local users in ps (default: a prompt on a "
        "terminal, else stdin)",
    )
    parser.add_argument(
        "--name",
        help="agent name: 1-128 letters, digits, '_', '-', '.', '%%' (default: the hostname)",
    )
    parser.add_argument(
        "--uuid-version",
        type=int,
        choices=[4, 7],
        metavar="4|7",
        help="pin the agent id's UUID version (default: v7, and v4 when the server accepts "
        "only v4)",
    )
    parser.add_argument(
        "--key", help="agent key, 32 characters [A-Za-z0-9] (default: a random one)"
    )
    parser.add_argument(
        "--connect-url",
        metavar="URL",
        help="comms API base URL stored for the services (default: the enroll URL's host on "
        "port 27000, or the enroll URL itself when it names no port)",
    )
    parser.add_argument(
        "--verification-mode",
        choices=["full", "certificate", "none"],
        help="TLS checks for enrollment (default: agent.verification_mode of the config)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="enroll again, replacing the stored credentials (default: refuse when enrolled)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from agent.cli.common import config_of
    from comms.enroll import EnrollRequest, enroll
    from core.logs import setup_logging

    config = config_of(args)
    # The outcome is printed below; the log shows only what needs attention (e.g. TLS off).
    setup_logging(dataclasses.replace(config.log, level="WARNING"), "register")
    credentials = enroll(
        config,
        EnrollRequest(
            enroll_url=args.enroll_url,
            user=args.user,
            password=_password(args.password),
            name=args.name,
            key=args.key,
            connect_url=args.connect_url,
            verification_mode=args.verification_mode,
            force=args.force,
            uuid_version=args.uuid_version,
        ),
        notice=_note,
    )
    print(
        f"enrolled {credentials.name} as {credentials.uuid}; comms URL {credentials.server_url}; "
        f"credentials in {config.data_dir / 'credentials.json'}"
    )
    if args.verification_mode and args.verification_mode != config.agent.verification_mode:
        print(
            f"note: the services check TLS with agent.verification_mode = "
            f"{config.agent.verification_mode!r} from {config.source}, not "
            f"{args.verification_mode!r}; change it there if needed",
            file=sys.stderr,
        )
    return 0


def _note(text: str) -> None:
    print(f"agentbus: note: {text}", file=sys.stderr)


def _password(value: str | None) -> str:
    if value is not None and value != "-":
        return value
    if value is None and sys.stdin.isatty():
        import getpass

        return getpass.getpass("management API password: ")
    return sys.stdin.readline().rstrip("\r\n")
