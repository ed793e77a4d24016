"""What several subcommands share: loading the config named by ``--config``, logging."""

from __future__ import annotations

import argparse

from core.config import Config, load_config
from core.logs import setup_logging


def config_of(args: argparse.Namespace) -> Config:
    """The configuration this invocation uses (``--config``, ``$AGENTBUS_CONFIG``, default)."""
    return load_config(getattr(args, "config", None))


def service_setup(args: argparse.Namespace, service: str) -> Config:
    """Load the config and set up logging for a long-running service."""
    config = config_of(args)
    setup_logging(config.log, service)
    return config
