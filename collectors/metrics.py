"""Every metric of the built-in collectors, declared once (core/metrics.py says what follows).

Every collector counts what it hands to the forwarder (:class:`collectors.base.AckSender`);
stateful collectors (inventory, fim) count scans and documents by collector and change;
each collector adds its own.
"""

from __future__ import annotations

from core.metrics import MetricSet, counter, gauge, service_metrics

# -- every collector (collectors/base.py) ----------------------------------------------------
EVENTS_SENT = counter("events_sent", "events the forwarder committed")
EVENTS_REJECTED = counter("events_rejected", "events the forwarder refused")
SEND_TIMEOUTS = counter("send_timeouts", "sends the forwarder did not answer in time (retried)")
FORWARDER_FULL = counter("forwarder_full", "sends answered 'full' (retried)")
SEND_ERRORS = counter("send_errors", "sends that failed on the bus (retried)")
SENDING = (EVENTS_SENT, EVENTS_REJECTED, SEND_TIMEOUTS, FORWARDER_FULL, SEND_ERRORS)

# -- stateful collectors (collectors/stateful.py) ---------------------------------------------
SCANS = counter("scans", "scans completed")
LAST_SCAN_SECONDS = gauge("last_scan_seconds", "how long the last scan took")
LAST_SCAN_AT = gauge("last_scan_at", "when the last scan ended (Unix time)")
STATE_RESETS = counter("state_resets", "state files started afresh (the agent uuid changed)")
RESYNCS = counter("resyncs", "full resyncs, one per collector resynced")
DOCUMENTS = counter(
    "documents",
    "documents reported, by collector and change (created, updated, deleted, resent)",
    "collector",
    "change",
)
SCAN_REQUESTS = counter(
    "scan_requests",
    "scans asked for with the scan control command, by outcome (started, queued)",
    "outcome",
)
STATEFUL = (
    SCANS,
    LAST_SCAN_SECONDS,
    LAST_SCAN_AT,
    STATE_RESETS,
    RESYNCS,
    DOCUMENTS,
    SCAN_REQUESTS,
)

# -- logcollector ------------------------------------------------------------------------------
FILES = gauge("files", "files followed (logcollector) or in the last scan (fim)")
ROTATED_FILES = gauge("rotated_files", "rotated files still being read to their end")
ROTATIONS = counter("rotations", "rotations seen")
TRUNCATIONS = counter("truncations", "files truncated under us (read again from the start)")
OPEN_ERRORS = counter("open_errors", "files that could not be opened")
READ_ERRORS = counter("read_errors", "failed reads")
LINES = counter("lines", "lines read and sent")
INVALID_UTF8_LINES = counter("invalid_utf8_lines", "lines that were not valid UTF-8 (replaced)")
TRUNCATED_LINES = counter("truncated_lines", "lines cut at the maximum line size")
FILES_SKIPPED = counter(
    "files_skipped",
    "files not read, once per file, by reason (symlink, not_regular, owner)",
    "reason",
)
JOURNAL_ENTRIES = counter("journal_entries", "journal entries read and sent")
JOURNAL_ERRORS = counter(
    "journal_errors",
    "journal read problems, by reason (exited: journalctl ended and is started again;"
    " not_started: journalctl missing or not executable; bad_entry: a line that is not a"
    " journal entry; too_large: an entry over the size cap, skipped)",
    "reason",
)
COMMAND_RUNS = counter(
    "command_runs",
    "command source runs, by result (ok, truncated: output cut at command_max_output;"
    " timeout, failed, not_found, not_executable, start_failed: nothing sent)",
    "result",
)
COMMAND_EVENTS = counter("command_events", "events sent from command output")

# -- inventory -------------------------------------------------------------------------------
SCAN_ERRORS = counter("scan_errors", "scanners that failed (the others went on)")

# -- fim -------------------------------------------------------------------------------------
FILES_HASHED = counter("files_hashed", "files hashed (new or changed)")
ERRORS = counter("errors", "files and directories that could not be read, by reason", "reason")

# -- sca -------------------------------------------------------------------------------------
POLICIES = gauge("policies", "policies evaluated in the last run (their requirements hold)")
POLICIES_SKIPPED = counter(
    "policies_skipped",
    "policies not evaluated, by reason (refused: invalid or untrusted; not_applicable:"
    " requirements do not hold here)",
    "reason",
)
CHECKS = counter("checks", "checks evaluated, by result", "result")

COLLECTOR = service_metrics("collector", *SENDING)
STATEFUL_COLLECTOR = service_metrics("collector", *SENDING, *STATEFUL)
LOGCOLLECTOR = service_metrics(
    "logcollector",
    *SENDING,
    FILES,
    ROTATED_FILES,
    ROTATIONS,
    TRUNCATIONS,
    OPEN_ERRORS,
    READ_ERRORS,
    LINES,
    INVALID_UTF8_LINES,
    TRUNCATED_LINES,
    FILES_SKIPPED,
    JOURNAL_ENTRIES,
    JOURNAL_ERRORS,
    COMMAND_RUNS,
    COMMAND_EVENTS,
)
INVENTORY = service_metrics("inventory", *SENDING, *STATEFUL, SCAN_ERRORS)
FIM = service_metrics("fim", *SENDING, *STATEFUL, FILES, FILES_HASHED, ERRORS)
SCA = service_metrics("sca", *SENDING, *STATEFUL, POLICIES, POLICIES_SKIPPED, CHECKS)

#: every collector's declarations, by service name
DECLARED: dict[str, MetricSet] = {s.service: s for s in (LOGCOLLECTOR, INVENTORY, FIM, SCA)}
