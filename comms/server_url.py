"""Which server URLs the agent may use: plain ``http://`` only to loopback, unless allowed.

Over plain http the agent's key, its tokens and the enrollment password cross the network
in clear. Every service client takes its URL from :func:`comms.credentials.comms_url` and
``agentbus register`` checks its two URLs before sending the password; both call
:func:`check_server_url`. Kept apart from :mod:`comms.http` so that reading the credentials
does not import requests (the agent executor's process stays small).
"""

from __future__ import annotations

import ipaddress
import threading
from urllib.parse import urlsplit

from loguru import logger

from comms.errors import InsecureServerURL
from core.config import Config

#: host names that are loopback without a lookup (a lookup could be steered)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})

_insecure_warned: set[str] = set()
_insecure_lock = threading.Lock()


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` or ``localhost`` by its name (no lookup)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_server_url(url: str, config: Config, *, what: str = "the server URL") -> str:
    """Refuse ``http://`` to a host other than loopback unless allowed; returns ``url``.

    Over plain http the agent's key, its tokens and the enrollment password travel in
    clear. With ``[agent] allow_insecure_http = true`` such a URL is used, and one warning
    per process and origin says so.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or is_loopback(parts.hostname or ""):
        return url
    origin = f"{parts.scheme}://{parts.netloc}"
    if not config.agent.allow_insecure_http:
        raise InsecureServerURL(
            f"{what} {origin} is plain http to a host other than loopback: the agent's key, "
            "its tokens and the enrollment password would travel in clear; use https, or "
            "set [agent] allow_insecure_http = true to accept that"
        )
    with _insecure_lock:
        first = origin not in _insecure_warned
        _insecure_warned.add(origin)
    if first:
        logger.warning(
            "{} {} is plain http ([agent] allow_insecure_http = true): the key, tokens and "
            "password travel in clear",
            what,
            origin,
        )
    return url
