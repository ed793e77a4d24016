"""`agentbus run`: the whole agent in the foreground, every built-in service supervised."""

from __future__ import annotations

import argparse
import resource

from loguru import logger

#: the soft limit of open files asked for when the hard limit is unlimited
UNLIMITED_HARD_TARGET = 65536

HELP = "run the forwarder, commander, built-in executor and enabled collectors (foreground)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    synopsis(
        parser,
        "agentbus run                                  # packaged default config",
        "agentbus run --config /etc/agentbus/agentbus.toml",
        "AGENTBUS_AGENT_ISOLATION=process agentbus run   # a process per service",
    )


def run(args: argparse.Namespace) -> int:
    from agent.cli.common import service_setup
    from agent.cli.service import reexec
    from agent.supervisor import Supervisor
    from comms.credentials import load_credentials
    from core.private_dirs import secure_agent_dirs

    config = service_setup(args, "agent")
    secure_agent_dirs(config)  # a too-open dir of another user: one line, exit 2
    load_credentials(config.data_dir)  # not enrolled: that one line before anything else
    raise_file_limit()
    supervisor = Supervisor(config)
    code = supervisor.run()
    if supervisor.reexec_requested:  # the restart command: every service stopped
        reexec("run", config.source)
    return code


def raise_file_limit() -> int:
    """Raise the soft limit of open files to the hard one; returns the soft limit now.

    Every service shares this process (and its limit): headroom keeps a flood of
    connections on one socket (the health endpoint) from starving the others of
    descriptors, and the bus from aborting on a failed socket.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        target = soft
    elif hard == resource.RLIM_INFINITY:
        target = max(soft, UNLIMITED_HARD_TARGET)  # the kernel refuses "infinity" here
    else:
        target = max(soft, hard)
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logger.debug("open files: cannot raise the limit from {} to {}: {}", soft, hard, exc)
            return soft
    logger.debug("open files: limit {} (hard {})", target, hard)
    return target
