"""The supervisor's metrics, and every service's declarations by service name.

``agentbus status`` and ``/metrics`` read the services' figures from their control
sockets; what each figure is (kind, help, labels, Prometheus name) comes from here, the
declarations each service package makes once (core/metrics.py).
"""

from __future__ import annotations

from collectors.metrics import DECLARED as COLLECTORS
from commander.metrics import COMMANDER
from core.metrics import SERVICE, MetricSet, counter, service_metrics
from forwarder.metrics import FORWARDER

STARTS = counter("starts", "child processes started")
RESTARTS = counter("restarts", "child processes restarted after they exited")
HEALTH_CONNECTIONS = counter("health_connections", "connections accepted by the health endpoint")
HEALTH_DROPPED = counter(
    "health_dropped",
    "health endpoint connections closed without an answer, by reason (refused: every slot "
    "busy; evicted: the oldest idle one, to make room; timeout: no complete request in "
    "time; too_large: a request over the size limit; accept_error: out of descriptors)",
    "reason",
)

AGENT = service_metrics("agent", STARTS, RESTARTS, HEALTH_CONNECTIONS, HEALTH_DROPPED)

#: every service's declarations, by service name
DECLARED: dict[str, MetricSet] = {
    s.service: s for s in (AGENT, FORWARDER, COMMANDER, *COLLECTORS.values())
}


def declared(service: str) -> MetricSet:
    """The declarations of ``service`` (only the common ones for a service not known here)."""
    return DECLARED.get(service) or SERVICE.named(service)
