"""agentbus agent: CLI, configuration, logging, the service lifecycle and the supervisor."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentbus")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
