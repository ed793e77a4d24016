"""Metrics: declared once, counted in a thread-safe registry, shown by status and /metrics.

Each service declares its metrics in one place (``forwarder/metrics.py``,
``commander/metrics.py``, ``collectors/metrics.py``, ``agent/metrics.py``): a name, a kind
(counter or gauge), a help text and label names. Everything else follows from that one
declaration:

- the values: a :class:`Registry` per service (one per process in production), updated
  from any thread (``registry.inc(REJECTED, reason="not_msgpack")``); figures whose owner
  keeps them itself (a queue's depth, a hot loop's counts) are copied in when status is
  asked (``registry.set(...)``), the way a Prometheus collector reads them at scrape time;
- the status (``agentbus status --json``): an unlabelled metric is a number, a labelled one
  a map ``{label value: n}`` (nested, one level per label); the metrics of a
  :class:`Group` are shown per value of the group's label (``"queues": {"stateless":
  {...}}``);
- the Prometheus exposition (:func:`exposition`, served by ``agent/health.py``):
  ``agentbus_<service>_<name>`` (``_total`` for counters), labels as labels.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: a labelled metric's values: label values (in the declared order) → value
Values = dict[tuple[str, ...], float]


class Kind(StrEnum):
    COUNTER = "counter"  # only goes up (restarts at zero with the process)
    GAUGE = "gauge"  # a level that goes up and down (a queue's depth, an age)


@dataclass(frozen=True, eq=False)
class Metric:
    """One declared metric: its status key, kind, help text and label names."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    #: False for a status convenience that /metrics leaves out (a total of a labelled
    #: metric that Prometheus sums by itself)
    export: bool = True


def counter(name: str, help: str, *labels: str, export: bool = True) -> Metric:
    return Metric(name, Kind.COUNTER, help, tuple(labels), export)


def gauge(name: str, help: str, *labels: str, export: bool = True) -> Metric:
    return Metric(name, Kind.GAUGE, help, tuple(labels), export)


@dataclass(frozen=True)
class Group:
    """Metrics kept per value of one label and shown grouped by it in status.

    ``Group("queues", "queue", "queue", (...))``: status shows ``"queues": {"stateless":
    {"sent": 3, ...}}``; /metrics shows ``agentbus_forwarder_queue_sent_total{queue=...}``.
    """

    key: str  # status key of the block
    label: str  # the label its values go by
    prefix: str  # Prometheus name infix
    metrics: tuple[Metric, ...]


@dataclass(frozen=True)
class MetricSet:
    """Every metric of one service (``service`` names it in /metrics)."""

    service: str
    metrics: tuple[Metric, ...]
    groups: tuple[Group, ...] = ()
    _members: frozenset[Metric] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for scope in (self.metrics, *(g.metrics for g in self.groups)):
            names = [m.name for m in scope]
            if len(names) != len(set(names)):
                raise ValueError(f"{self.service}: a metric name is declared twice: {names}")
        keys = [m.name for m in self.metrics] + [g.key for g in self.groups]
        if len(keys) != len(set(keys)):
            raise ValueError(f"{self.service}: a group key is also a metric name")
        object.__setattr__(self, "_members", frozenset(self.all()))
        exported = [self.prometheus_name(m) for m in self.all() if m.export]
        if len(exported) != len(set(exported)):
            raise ValueError(f"{self.service}: two metrics export the same name: {exported}")

    def all(self) -> Iterator[Metric]:
        """Every metric, the grouped ones included (their group label comes first)."""
        yield from self.metrics
        for group in self.groups:
            yield from group.metrics

    def __contains__(self, metric: object) -> bool:
        return metric in self._members

    def extend(self, *metrics: Metric, groups: Iterable[Group] = ()) -> MetricSet:
        """This set plus more metrics (a subclass's service adds to its base's)."""
        return MetricSet(self.service, (*self.metrics, *metrics), (*self.groups, *groups))

    def named(self, service: str) -> MetricSet:
        """The same metrics under another service name."""
        return MetricSet(service, self.metrics, self.groups)

    def labels_of(self, metric: Metric) -> tuple[str, ...]:
        """The metric's full label names (a grouped metric's group label first)."""
        for group in self.groups:
            if metric in group.metrics:
                return (group.label, *metric.labels)
        return metric.labels

    def prometheus_name(self, metric: Metric) -> str:
        """``agentbus_<service>_[<group prefix>_]<name>`` (``_total`` added for counters
        by the exposition)."""
        for group in self.groups:
            if metric in group.metrics:
                return f"agentbus_{self.service}_{group.prefix}_{metric.name}"
        return f"agentbus_{self.service}_{metric.name}"


class Registry:
    """The values of one service's declared metrics, safe to update from any thread.

    Also keeps a few facts that are not measurements (the last error and when it
    happened, a list of problems met at start-up), shown by status only.
    """

    def __init__(self, declared: MetricSet) -> None:
        self.declared = declared
        self._lock = threading.Lock()
        self._values: dict[Metric, Values] = {m: {} for m in declared.all()}
        self._facts: dict[str, Any] = {}
        self.started_at = time.time()

    def _key(self, metric: Metric, labels: Mapping[str, Any]) -> tuple[tuple[str, ...], Values]:
        if metric not in self.declared:
            raise KeyError(f"{metric.name!r} is not a metric of {self.declared.service}")
        names = self.declared.labels_of(metric)
        if labels.keys() != set(names):
            raise ValueError(
                f"{metric.name}: labels {sorted(labels)} given, {list(names)} declared"
            )
        return tuple(str(labels[n]) for n in names), self._values[metric]

    def inc(self, metric: Metric, n: float = 1, **labels: Any) -> None:
        if metric.kind is not Kind.COUNTER:
            raise TypeError(f"{metric.name} is a {metric.kind}: set it, do not count it")
        key, values = self._key(metric, labels)
        with self._lock:
            values[key] = values.get(key, 0) + n

    def set(self, metric: Metric, value: float, **labels: Any) -> None:
        """Set a gauge, or copy in a counter its owner keeps (at status time)."""
        key, values = self._key(metric, labels)
        with self._lock:
            values[key] = value

    def set_many(self, metric: Metric, values: Mapping[Any, Any], **labels: Any) -> None:
        """Copy in a labelled metric's map ``{last label value: n}``, the other labels
        given; label values no longer in the map are forgotten."""
        if metric not in self.declared:
            raise KeyError(f"{metric.name!r} is not a metric of {self.declared.service}")
        names = self.declared.labels_of(metric)
        if not names or labels.keys() != set(names[:-1]):
            raise ValueError(
                f"{metric.name}: labels {sorted(labels)} given, {list(names)} declared"
            )
        fixed = tuple(str(labels[n]) for n in names[:-1])
        with self._lock:
            table = self._values[metric]
            for old in [k for k in table if k[:-1] == fixed]:
                del table[old]
            for k, v in values.items():
                table[(*fixed, str(k))] = v

    def get(self, metric: Metric, **labels: Any) -> float:
        key, values = self._key(metric, labels)
        with self._lock:
            return values.get(key, 0)

    def total(self, metric: Metric) -> float:
        """The sum over every label value."""
        with self._lock:
            return sum(self._values[metric].values())

    # -- facts -------------------------------------------------------------------------
    def error(self, message: str) -> None:
        """Remember the last error and when it happened (shown by ``agentbus status``)."""
        with self._lock:
            self._facts["last_error"] = message
            self._facts["last_error_at"] = time.time()

    def fact(self, name: str, value: Any) -> None:
        """A non-numeric figure status shows as it is (not exported to /metrics)."""
        with self._lock:
            self._facts[name] = value

    def facts(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._facts)

    # -- status ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The status figures: every declared metric, then the facts and ``started_at``."""
        with self._lock:
            values = {m: dict(v) for m, v in self._values.items()}
            facts = dict(self._facts)
        out: dict[str, Any] = {}
        for m in self.declared.metrics:
            out[m.name] = _shape(values[m], len(m.labels))
        for group in self.declared.groups:
            block: dict[str, dict[str, Any]] = out.setdefault(group.key, {})
            for m in group.metrics:
                by_value: dict[str, Values] = {}
                for key, value in values[m].items():
                    by_value.setdefault(key[0], {})[key[1:]] = value
                for label_value, rest in by_value.items():
                    block.setdefault(label_value, {})[m.name] = _shape(rest, len(m.labels))
            for row in block.values():  # a labelled metric with no values yet: {}
                for m in group.metrics:
                    if m.labels:
                        row.setdefault(m.name, {})
        out.update(facts)
        out["started_at"] = self.started_at
        return out


def _shape(values: Values, depth: int) -> Any:
    """A number (no labels) or nested maps, one level per label."""
    if depth == 0:
        return _number(values.get((), 0))
    out: dict[str, Any] = {}
    for key, value in sorted(values.items()):
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = _number(value)
    return out


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# -- Prometheus ----------------------------------------------------------------------------
@dataclass
class Family:
    """One Prometheus metric family: ``name`` has no ``_total`` (the exposition adds it)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


def exposition(declared: MetricSet, figures: Mapping[str, Any]) -> Iterator[Family]:
    """The families of one service, from its declarations and its status figures."""
    for m in declared.metrics:
        if m.export:
            samples = list(_samples(figures.get(m.name), len(m.labels)))
            yield Family(declared.prometheus_name(m), m.kind, m.help, m.labels, samples)
    for group in declared.groups:
        block = figures.get(group.key)
        rows = block if isinstance(block, Mapping) else {}
        for m in group.metrics:
            if not m.export:
                continue
            samples = [
                ((str(label_value), *key), value)
                for label_value, row in rows.items()
                if isinstance(row, Mapping)
                for key, value in _samples(row.get(m.name), len(m.labels))
            ]
            yield Family(
                declared.prometheus_name(m), m.kind, m.help, (group.label, *m.labels), samples
            )


def _samples(value: Any, depth: int) -> Iterator[tuple[tuple[str, ...], float]]:
    if depth == 0:
        if isinstance(value, int | float):  # bool included
            yield (), float(value)
        return
    if isinstance(value, Mapping):
        for key, inner in value.items():
            for rest, number in _samples(inner, depth - 1):
                yield (str(key), *rest), number


#: what every service counts (core/service.py)
CONTROL_REJECTED = counter(
    "control_rejected", "bad requests on the service's control socket", "reason"
)
SERVICE = MetricSet("service", (CONTROL_REJECTED,))


def service_metrics(service: str, *metrics: Metric, groups: Iterable[Group] = ()) -> MetricSet:
    """A service's declarations: what every service counts, then its own."""
    return MetricSet(service, (*SERVICE.metrics, *metrics), tuple(groups))
