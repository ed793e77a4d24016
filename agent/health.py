"""Health for machines: ``/health`` (200 or 503) and ``/metrics`` (Prometheus text format).

Off by default (``[health] enabled``); listens on loopback unless ``[health] listen`` says
otherwise. Figures come from the same control sockets ``agentbus status`` reads, so the two
never disagree.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loguru import logger
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from agent.metrics import declared
from agent.status import collect_status
from core.config import Config, ConfigError
from core.metrics import Kind, MetricSet, exposition


class _StatusCollector:
    """A prometheus collector: which services answer, and each one's declared metrics."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
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
        for service, state in report["services"].items():
            if state.get("up"):
                yield from service_families(declared(service), state.get("counters", {}))


def service_families(
    metric_set: MetricSet, figures: dict[str, Any]
) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """A service's metrics, as its declarations say (agent/metrics.py, core/metrics.py):
    ``agentbus_<service>_<name>``, counters with ``_total``, labels as labels."""
    for family in exposition(metric_set, figures):
        cls = CounterMetricFamily if family.kind is Kind.COUNTER else GaugeMetricFamily
        out = cls(family.name, family.help, labels=list(family.labels))
        for labels, value in family.samples:
            out.add_metric(list(labels), value)
        yield out


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
