"""Every metric of the commander, declared once (core/metrics.py says what follows from it).

The main loop, the poller and the reporter count into the service's registry as things
happen; the store's row counts and the fan-out's figures are copied in when status is
asked.
"""

from __future__ import annotations

from core.metrics import counter, gauge, service_metrics

# -- the poller ----------------------------------------------------------------------------
POLLS = counter("polls", "long-poll requests")
POLLS_408 = counter("polls_408", "long-polls that ended without commands")
POLL_ERRORS = counter("poll_errors", "long-polls that failed (backed off)")
COMMANDS_RECEIVED = counter("commands_received", "commands received from the server")
BAD_COMMANDS = counter("bad_commands", "malformed commands from the server, by reason", "reason")
DUPLICATES_SKIPPED = counter("duplicates_skipped", "commands delivered again, run once")

# -- the main loop ---------------------------------------------------------------------------
COMMANDS_PUBLISHED = counter("commands_published", "commands published a first time")
COMMANDS_ACKED = counter("commands_acked", "commands an executor acknowledged")
PROGRESS_REPORTS = counter("progress_reports", "'in progress' results from executors")
HELLOS = counter("hellos", "executor hellos")
EXECUTORS_REFUSED = counter(
    "executors_refused",
    "executor hellos refused, by reason (too_many_executors, too_many_topics)",
    "reason",
)
EXECUTED = counter("executed", "final results, by result code", "code")
VERDICTS = counter(
    "verdicts",
    "results the commander decided, by reason (no_executor, timeout_unacked, timeout_no_result)",
    "reason",
)
TIMED_OUT = counter("timed_out", "commands answered 'timeout' by the commander")
UNKNOWN = counter("unknown", "answers for commands not in flight (late or stray), by kind", "kind")
BAD_INPUT = counter("bad_input", "rejected messages on the results socket, by reason", "reason")
STORES_MOVED_ASIDE = counter("stores_moved_aside", "corrupt commands.db moved aside at start")

# -- the reporter --------------------------------------------------------------------------
RESULTS_REPORTED = counter("results_reported", "results handed to the forwarder")
RESULTS_REJECTED = counter("results_rejected", "results the forwarder refused")
REPORT_ERRORS = counter("report_errors", "failed hand-overs to the forwarder (retried)")

# -- copied in at status time --------------------------------------------------------------
IN_FLIGHT = gauge("in_flight", "commands published and not answered yet")
PUBLICATIONS = counter("publications", "publications, first ones and repeats")
LIVE_EXECUTORS = gauge("live_executors", "executors seen within executor_ttl")
STORED = gauge("stored", "commands in commands.db, by state", "state")
OUTBOX = gauge("outbox", "results waiting to be handed to the forwarder")
EXECUTED_REMEMBERED = gauge("executed_remembered", "executed command ids remembered")

COMMANDER = service_metrics(
    "commander",
    POLLS,
    POLLS_408,
    POLL_ERRORS,
    COMMANDS_RECEIVED,
    BAD_COMMANDS,
    DUPLICATES_SKIPPED,
    COMMANDS_PUBLISHED,
    COMMANDS_ACKED,
    PROGRESS_REPORTS,
    HELLOS,
    EXECUTORS_REFUSED,
    EXECUTED,
    VERDICTS,
    TIMED_OUT,
    UNKNOWN,
    BAD_INPUT,
    STORES_MOVED_ASIDE,
    RESULTS_REPORTED,
    RESULTS_REJECTED,
    REPORT_ERRORS,
    IN_FLIGHT,
    PUBLICATIONS,
    LIVE_EXECUTORS,
    STORED,
    OUTBOX,
    EXECUTED_REMEMBERED,
)
