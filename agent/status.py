"""What ``agentbus status`` shows: every service's state, read from its control socket.

The services asked are the supervisor and every enabled service of the registry
(core/registry.py); the health endpoint (agent/health.py) reads the same report.

Each service asked answers on its status control socket (``control-<name>.sock``, which the
agent's group may read); clients refused on its CURVE tcp endpoints show as
``bus_refused: {endpoint: n}``.

The forwarder and the commander also report ``auth`` (their authentication: state, the
server's last message, the next try, the token's expiry); docs/enrollment.md lists the keys.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.metrics import declared
from bus.control import request
from bus.errors import BusError
from commander import metrics as cm
from core import registry
from core.config import Config
from core.metrics import Kind, Metric
from core.service import endpoints_from_config
from forwarder import metrics as fm

#: the supervisor of `agentbus run`, asked first
SUPERVISOR = "agent"


def services_asked(config: Config) -> list[str]:
    """Services asked, in display order: the supervisor, then every enabled service of the
    registry (core/registry.py), collectors included."""
    return [SUPERVISOR, *(spec.name for spec in registry.enabled(config))]


def collect_status(config: Config, *, timeout: float = 1.0) -> dict[str, Any]:
    """Ask every service for its counters; a service that does not answer is down."""
    endpoints = endpoints_from_config(config)
    names = services_asked(config)

    def ask(name: str) -> dict[str, Any]:
        try:
            counters = request(endpoints.control(name), {"cmd": "status"}, timeout=timeout)
            return {"up": bool(counters.get("ok", True)), "counters": counters}
        except BusError as exc:
            return {"up": False, "error": str(exc), "counters": {}}

    # All at once: a service that is down costs `timeout`, not `timeout` each.
    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="status") as pool:
        services: dict[str, dict[str, Any]] = dict(zip(names, pool.map(ask, names), strict=True))
    supervisor = services[SUPERVISOR]
    children = supervisor["counters"].get("children", {}) if supervisor["up"] else {}
    down = [n for n, c in children.items() if not c.get("up")]
    # A process can be alive and still not answer (hung, stopped): that is down too.
    down += [n for n in names[1:] if not services[n]["up"] and n not in down]
    running = any(s["up"] for s in services.values())
    summary = {"running": running, "healthy": running and not down, "down": down}
    return {
        "time": time.time(),
        "run_dir": config.agent.run_dir,
        "services": services,
        "summary": summary,
        "groups": groups_report(config, supervisor["counters"] if supervisor["up"] else None),
    }


def groups_report(config: Config, supervisor: dict[str, Any] | None) -> dict[str, Any]:
    """The groups whose files are in force and when they were applied: the running
    supervisor's word when it answers, else what ``config`` read from the data dir."""
    applied = (supervisor or {}).get("config")
    if isinstance(applied, dict):
        last = applied.get("last_reload") or {}
        return {
            "groups": applied.get("groups") or [],
            "applied_at": applied.get("groups_applied_at"),
            "reloaded_at": last.get("at"),
            "skipped": applied.get("groups_skipped") or {},
            "from": "agent",
        }
    return {
        "groups": list(config.groups),
        "applied_at": config.groups_applied_at,
        "reloaded_at": None,
        "skipped": dict(config.groups_skipped),
        "from": "files",
    }


def rates(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Per-second rates of the forwarder's counters between two reports."""
    span = max(after["time"] - before["time"], 1e-6)
    b = before["services"]["forwarder"]["counters"]
    a = after["services"]["forwarder"]["counters"]
    out = {}
    for key in ("received", "acked", "sent"):
        if isinstance(a.get(key), int | float) and isinstance(b.get(key), int | float):
            out[key] = max(0.0, (a[key] - b[key]) / span)
    return out


def render(report: dict[str, Any], rate: dict[str, float] | None = None) -> str:
    """The human table of one report."""
    services = report["services"]
    if not report["summary"]["running"]:
        return f"agentbus is not running (no service answers in {report['run_dir']})"
    lines: list[str] = []
    sup = services["agent"]
    if sup["up"]:
        c = sup["counters"]
        how = {"thread": ", services as threads", "process": ", a process per service"}
        lines.append(
            f"agent      up   pid {c.get('pid')}{how.get(c.get('isolation', ''), '')}, "
            f"since {_ago(c.get('started_at'))}"
        )
        lines.append(_groups(report.get("groups") or {}))
        for name, child in c.get("children", {}).items():
            state = "up  " if child.get("up") else "DOWN"
            extra = f"restarts {child['restarts']}" if child.get("restarts") else ""
            if child.get("reloads"):
                extra += (", " if extra else "") + (
                    f"reloaded {child['reloads']}x, last {_ago(child.get('reloaded_at'))}"
                )
            if child.get("last_exit") and (child.get("restarts") or not child.get("up")):
                extra += f", last exit {child['last_exit']} {_ago(child.get('last_exit_at'))}"
            lines.append(f"  {name:<15} {state} since {_ago(child.get('since'))} {extra}".rstrip())
        dropped = c.get("health_dropped") or {}
        if dropped:
            lines.append(
                "  health endpoint dropped "
                + ", ".join(f"{r} {n:,}" for r, n in sorted(dropped.items()))
            )
    else:
        lines.append("agent      not supervised (agentbus run is not running)")
    lines.append(_forwarder(services["forwarder"], rate or {}))
    lines.append(_commander(services["commander"]))
    for name, service in services.items():
        if name not in (SUPERVISOR, "forwarder", "commander"):
            lines.append(_service(name, service))
    for name, service in services.items():
        refused = service["counters"].get("bus_refused") if service["up"] else None
        if isinstance(refused, dict) and refused:
            lines.append(
                f"{name:<10} refused bus clients (key not admitted): "
                + ", ".join(f"{e} {n:,}" for e, n in sorted(refused.items()))
            )
    return "\n".join(lines)


def _groups(groups: dict[str, Any]) -> str:
    """``  groups     web, linux (files applied 3m ago)``."""
    names = groups.get("groups") or []
    line = "  groups          " + (", ".join(names) if names else "none")
    if groups.get("applied_at"):
        line += f" (files applied {_ago(groups['applied_at'])})"
    for group, why in (groups.get("skipped") or {}).items():
        line += f"\n  group {group} NOT APPLIED: {why}"
    return line


def _service(name: str, service: dict[str, Any]) -> str:
    """One line for a service with no section of its own (collectors, executors): the
    counters it declares that have moved, each a total over its labels."""
    if not service["up"]:
        return f"{name:<10} DOWN"
    c = service["counters"]
    moved = []
    for metric in declared(name).all():
        if (
            metric.kind is not Kind.COUNTER
            or not metric.export
            or metric.name == "control_rejected"
        ):
            continue
        total = _total(c.get(metric.name))
        if total:
            moved.append(f"{metric.name.replace('_', ' ')} {total:,}")
    line = f"{name:<10} up   since {_ago(c.get('started_at'))}"
    line += ("  " + "  ".join(moved)) if moved else ""
    sources = c.get("sources")
    if isinstance(sources, dict):  # the logcollector: which of its sources are live
        line += "\n  sources  " + ", ".join(
            f"{k} {v}" for k, v in sources.items() if isinstance(v, str)
        )
    if c.get("last_error"):
        line += f"\n  last error {_ago(c.get('last_error_at'))}: {c['last_error']}"
    return line


def _total(value: Any) -> int:
    """A counter's value, summed over its labels when it has any."""
    if isinstance(value, dict):
        return sum(_total(v) for v in value.values())
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _forwarder(service: dict[str, Any], rate: dict[str, float]) -> str:
    if not service["up"]:
        return "forwarder  DOWN"
    c = service["counters"]
    out = [f"forwarder  up   since {_ago(c.get('started_at'))}"]
    for kind, q in (c.get("queues") or {}).items():
        oldest = q.get("oldest_age")
        age = f", oldest {oldest:.1f}s" if isinstance(oldest, int | float) else ""
        out.append(
            f"  queue {kind:<9} {q.get('events', 0):>10,} events {_bytes(q.get('bytes', 0)):>9}{age}"
        )
    out.append(
        "  received {:,}  sent {:,}  acked {:,}  retried {:,}  dropped {:,}  quarantined {:,}".format(
            *(
                int(c.get(k) or 0)
                for k in ("received", "sent", "acked", "retried", "dropped", "quarantined")
            )
        )
    )
    rejected = {k: v for k, v in _labelled(c, fm.REJECTED).items() if v}
    if rejected:
        out.append("  rejected " + ", ".join(f"{k} {v:,}" for k, v in sorted(rejected.items())))
    if rate:
        out.append(
            f"  rate     {rate.get('received', 0):,.0f} ev/s in, {rate.get('acked', 0):,.0f} ev/s delivered"
        )
    if c.get("quarantine_events"):
        out.append(
            f"  quarantine {c['quarantine_events']:,} events the server refused "
            "(agentbus quarantine list|retry|drop)"
        )
    if c.get("backoff"):
        out.append(f"  backing off {c['backoff']:.1f}s")
    if isinstance(c.get("auth"), dict):
        out.append(_auth(c["auth"]))
    elif c.get("token_expires_in") is not None:
        out.append(f"  token expires in {c['token_expires_in']:.0f}s")
    if c.get("last_error"):
        out.append(f"  last error {_ago(c.get('last_error_at'))}: {c['last_error']}")
    for kind, q in (c.get("queues") or {}).items():
        if q.get("write_failing"):
            out.append(
                f"  queue {kind} CANNOT WRITE since {_ago(q.get('write_error_at'))}: {q.get('write_error')}"
            )
    for problem in c.get("queue_errors") or []:  # a corrupt queue file met at start-up
        out.append(f"  queue problem at start: {problem}")
    return "\n".join(out)


def _commander(service: dict[str, Any]) -> str:
    if not service["up"]:
        return "commander  DOWN"
    c = service["counters"]
    executed = _labelled(c, cm.EXECUTED)
    out = [
        f"commander  up   since {_ago(c.get('started_at'))}",
        f"  polls {int(c.get('polls') or 0):,}  commands {int(c.get('received') or c.get('commands_received') or 0):,}"
        f"  in flight {int(c.get('in_flight') or 0)}  timed out {int(c.get('timed_out') or 0)}"
        f"  duplicates {int(c.get('duplicates') or c.get('duplicates_skipped') or 0)}",
        "  results  "
        + (", ".join(f"code {k}: {v}" for k, v in sorted(executed.items())) or "none yet"),
        "  executors " + (", ".join(sorted(c.get("executors") or {})) or "none live"),
    ]
    if isinstance(c.get("auth"), dict):
        out.append(_auth(c["auth"]))
    if c.get("last_error"):
        out.append(f"  last error {_ago(c.get('last_error_at'))}: {c['last_error']}")
    return "\n".join(out)


def _labelled(figures: dict[str, Any], metric: Metric) -> dict[str, Any]:
    """A labelled metric's ``{label value: n}`` from a service's figures."""
    value = figures.get(metric.name)
    return value if isinstance(value, dict) else {}


def _auth(auth: dict[str, Any]) -> str:
    """One line: how the service's authentication goes (keys in docs/enrollment.md)."""
    state = str(auth.get("state"))
    parts: list[str] = []
    if state in ("retrying", "refused", "not_enrolled") and auth.get("message"):
        status = auth.get("http_status")
        parts.append(f"{auth['message']}" + (f" (HTTP {status})" if status else ""))
    if state == "retrying":
        wait = auth.get("next_try_in")
        when = f"in {wait:.0f}s" if isinstance(wait, int | float) and wait >= 1 else "due"
        parts.append(f"next try {when} ({int(auth.get('failures') or 0)} failed)")
    if state == "pending":
        parts.append("authenticates at the next request")
    expires = auth.get("token_expires_in")
    if isinstance(expires, int | float) and state != "refused":
        parts.append(f"token expires in {expires:.0f}s" if expires > 0 else "token expired")
    label = state.upper() if state in ("retrying", "refused") else state.replace("_", " ")
    return f"  auth     {label}" + (": " + "; ".join(parts) if parts else "")


def progress(report: dict[str, Any], rate: dict[str, float], start_backlog: int) -> str | None:
    """A bar while a backlog drains: events left, rate, time to empty."""
    c = report["services"]["forwarder"]["counters"]
    left = int(c.get("queue_events") or 0)
    if start_backlog <= 0 or left <= 0:
        return None
    done = max(0.0, 1 - left / start_backlog)
    width = 30
    bar = "#" * int(done * width) + "-" * (width - int(done * width))
    speed = rate.get("acked", 0.0)
    eta = f"{left / speed:,.0f}s" if speed > 0 else "?"
    return f"backlog [{bar}] {left:,} left, {speed:,.0f} ev/s, empty in {eta}"


def _ago(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    seconds = max(0.0, time.time() - ts)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _bytes(n: Any) -> str:
    value = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
