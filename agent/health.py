"""Health for machines: ``/health`` (200 or 503) and ``/metrics`` (Prometheus text format).

Off by default (``[health] enabled``); listens on loopback unless ``[health] listen`` says
otherwise. Figures come from the same control sockets ``agentbus status`` reads, so the two
never disagree.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loguru import logger
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from agent.status import collect_status
from core.config import Config, ConfigError

_NAME = re.compile(r"[^a-zA-Z0-9_]")
#: status keys that are not measurements (or are shown by their own metric)
_SKIP = frozenset({"ok", "pid", "children"})


class _StatusCollector:
    """A prometheus collector turning every numeric status figure into a gauge."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.snapshot()
        up = GaugeMetricFamily(
            "agentbus_service_up", "1 if the service answers", labels=["service"]
        )
        for service, state in report["services"].items():
            up.add_metric([service], 1.0 if state.get("up") else 0.0)
        yield up
        children = report["services"]["agent"].get("counters", {}).get("children", {})
        child_up = GaugeMetricFamily(
            "agentbus_child_up", "1 if the child process runs", labels=["child"]
        )
        restarts = GaugeMetricFamily(
            "agentbus_child_restarts", "restarts after a crash", labels=["child"]
        )
        for name, child in children.items():
            child_up.add_metric([name], 1.0 if child.get("up") else 0.0)
            restarts.add_metric([name], float(child.get("restarts") or 0))
        yield child_up
        yield restarts
        families: dict[str, GaugeMetricFamily] = {}
        for service, state in report["services"].items():
            counters = {k: v for k, v in state.get("counters", {}).items() if k not in _SKIP}
            for key, value in _numbers(counters):
                name = "agentbus_" + _NAME.sub("_", key)
                family = families.get(name)
                if family is None:
                    family = families[name] = GaugeMetricFamily(name, key, labels=["service"])
                family.add_metric([service], float(value))
        yield from families.values()


def _numbers(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            yield name, float(value)
        elif isinstance(value, int | float):
            yield name, value
        elif isinstance(value, dict):
            yield from _numbers(value, f"{name}_")


class HealthServer:
    """Serves /health and /metrics from a daemon thread."""

    def __init__(self, config: Config, _supervisor_status: Callable[[], dict[str, Any]]) -> None:
        host, _, port = config.health.listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"health.listen: expected host:port, got {config.health.listen!r}")
        self.config = config
        registry = CollectorRegistry()
        registry.register(_StatusCollector(lambda: collect_status(config, timeout=1.0)))  # type: ignore[arg-type]
        handler = _handler(config, registry)
        self.server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="health", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()
        logger.info("health endpoint on {}/health and /metrics", self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(config: Config, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                report = collect_status(config, timeout=1.0)
                body = json.dumps(report["summary"]).encode()
                self._send(200 if report["summary"]["healthy"] else 503, "application/json", body)
            elif self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass  # scrapes every few seconds would drown the log

    return Handler
