"""Metrics: one declaration gives the status figures and the Prometheus exposition."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from agent.health import service_families
from agent.metrics import DECLARED, declared
from core.metrics import CONTROL_REJECTED, Group, Registry, counter, gauge, service_metrics

REJECTED = counter("rejected", "bad input, by reason", "reason")
RECEIVED = counter("received", "events accepted")
DEPTH = gauge("depth", "events waiting")
TOTAL = gauge("total", "a status convenience", export=False)
DOCS = counter("documents", "documents by collector and change", "collector", "change")
Q_SENT = counter("sent", "events sent")
Q_REQUESTS = counter("requests", "requests by status", "status")
QUEUES = Group("queues", "queue", "queue", (Q_SENT, Q_REQUESTS))
DEMO = service_metrics("demo", REJECTED, RECEIVED, DEPTH, TOTAL, DOCS, groups=[QUEUES])


def filled() -> Registry:
    reg = Registry(DEMO)
    reg.inc(REJECTED, reason="not_msgpack")
    reg.inc(REJECTED, 2, reason="not_msgpack")
    reg.inc(REJECTED, reason="too_large")
    reg.inc(RECEIVED, 10)
    reg.set(DEPTH, 4)
    reg.set(TOTAL, 99)
    reg.inc(DOCS, 2, collector="packages", change="created")
    reg.inc(Q_SENT, 5, queue="stateless")
    reg.set_many(Q_REQUESTS, {"204": 2, "error": 1}, queue="stateless")
    reg.set(Q_SENT, 1, queue="stateful")
    reg.set_many(CONTROL_REJECTED, {"multipart": 1})
    reg.error("boom")
    return reg


def exposition_text(figures: dict[str, Any], service: str = "demo") -> str:
    registry = CollectorRegistry()

    class Collector:
        def collect(self) -> Any:
            yield from service_families(DEMO if service == "demo" else declared(service), figures)

    registry.register(Collector())  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_status_shows_labelled_metrics_as_maps_and_groups_by_their_label() -> None:
    snap = filled().snapshot()
    assert snap["rejected"] == {"not_msgpack": 3, "too_large": 1}
    assert snap["received"] == 10 and snap["depth"] == 4 and snap["total"] == 99
    assert snap["documents"] == {"packages": {"created": 2}}
    assert snap["control_rejected"] == {"multipart": 1}
    assert snap["queues"] == {
        "stateless": {"sent": 5, "requests": {"204": 2, "error": 1}},
        "stateful": {"sent": 1, "requests": {}},
    }
    assert snap["last_error"] == "boom" and isinstance(snap["started_at"], float)


def test_an_unused_metric_is_still_shown() -> None:
    snap = Registry(DEMO).snapshot()
    assert snap["rejected"] == {} and snap["received"] == 0 and snap["queues"] == {}


def test_prometheus_kinds_names_and_labels_come_from_the_declarations() -> None:
    text = exposition_text(filled().snapshot())
    assert "# TYPE agentbus_demo_rejected_total counter" in text
    assert "# HELP agentbus_demo_rejected_total bad input, by reason" in text
    assert 'agentbus_demo_rejected_total{reason="not_msgpack"} 3.0' in text
    assert 'agentbus_demo_rejected_total{reason="too_large"} 1.0' in text
    assert "agentbus_demo_received_total 10.0" in text
    assert "# TYPE agentbus_demo_depth gauge" in text
    assert "agentbus_demo_depth 4.0" in text
    assert 'agentbus_demo_documents_total{change="created",collector="packages"} 2.0' in text
    assert 'agentbus_demo_queue_sent_total{queue="stateless"} 5.0' in text
    assert 'agentbus_demo_queue_requests_total{queue="stateless",status="error"} 1.0' in text
    assert 'agentbus_demo_control_rejected_total{reason="multipart"} 1.0' in text
    assert "agentbus_demo_total" not in text  # export=False
    assert "boom" not in text and "started_at" not in text  # facts are not metrics


def test_the_exposition_reads_status_as_it_came_over_the_control_socket() -> None:
    import msgpack

    wire = msgpack.unpackb(msgpack.packb(filled().snapshot()))
    assert exposition_text(wire) == exposition_text(filled().snapshot())


def test_real_declarations_export_the_services_figures() -> None:
    figures = {
        "received": 7,
        "rejected": {"not_msgpack": 2},
        "sent": 100,
        "queues": {"stateless": {"acked": 3, "requests": {"204": 1}, "events": 0}},
    }
    text = exposition_text(figures, "forwarder")
    assert "agentbus_forwarder_received_total 7.0" in text
    assert 'agentbus_forwarder_rejected_total{reason="not_msgpack"} 2.0' in text
    assert 'agentbus_forwarder_queue_acked_total{queue="stateless"} 3.0' in text
    assert 'agentbus_forwarder_queue_requests_total{queue="stateless",status="204"} 1.0' in text
    assert 'agentbus_forwarder_queue_events{queue="stateless"} 0.0' in text
    assert "agentbus_forwarder_sent_total" not in text  # the total: Prometheus sums


def test_every_service_declares_distinct_names() -> None:
    assert {"agent", "forwarder", "commander", "logcollector", "inventory", "fim", "sca"} <= set(
        DECLARED
    )
    for service, metric_set in DECLARED.items():
        names = [metric_set.prometheus_name(m) for m in metric_set.all() if m.export]
        assert len(names) == len(set(names)), service
    assert [m.name for m in declared("unknown").all()] == ["control_rejected"]


def test_undeclared_metrics_and_wrong_labels_are_refused() -> None:
    reg = Registry(DEMO)
    with pytest.raises(KeyError):
        reg.inc(counter("received", "a look-alike, not the declared one"))
    with pytest.raises(ValueError):
        reg.inc(REJECTED)  # reason missing
    with pytest.raises(ValueError):
        reg.inc(RECEIVED, reason="x")
    with pytest.raises(TypeError):
        reg.inc(DEPTH)  # a gauge is set, not counted


def test_increments_from_many_threads_are_all_counted() -> None:
    reg = Registry(DEMO)
    threads, per_thread = 8, 5000
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        start.wait()
        for _ in range(per_thread):
            reg.inc(RECEIVED)
            reg.inc(REJECTED, reason=f"r{i % 2}")
            reg.inc(Q_SENT, 2, queue="stateless")

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    snap = reg.snapshot()
    assert snap["received"] == threads * per_thread
    assert snap["rejected"] == {"r0": threads * per_thread // 2, "r1": threads * per_thread // 2}
    assert snap["queues"]["stateless"]["sent"] == 2 * threads * per_thread
