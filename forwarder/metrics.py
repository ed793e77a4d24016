"""Every metric of the forwarder, declared once (core/metrics.py says what follows from it).

The receiver counts rejections into the service's registry as they happen; the hot
loop's counts and each queue's figures (``Store.figures()``, ``Sender.figures()``, kept by
their owners under their own locks) are copied in when status is asked. Each queue's
figures are shown per queue (``"queues": {"stateless": {...}}``) and exported with a
``queue`` label; the forwarder-wide totals are status conveniences (Prometheus sums).
"""

from __future__ import annotations

from core.metrics import Group, counter, gauge, service_metrics

# -- the receiver ------------------------------------------------------------------------
FRAMES = counter("frames", "frames read on the events socket")
RECEIVED = counter("received", "events accepted (valid) on either socket")
PERSISTED = counter("persisted", "events committed to a queue")
INGEST_REQUESTS = counter("ingest_requests", "requests on the acknowledged ingest socket")
INGEST_FULL = counter("ingest_full", "ingest requests answered 'full'")
INGEST_WAITING = gauge(
    "ingest_waiting", "ingest requests read and waiting for their client's turn (fairness)"
)
BLOCKED = gauge("blocked", "1 while a full queue holds a chunk (the events socket is not read)")
REJECTED = counter("rejected", "bad input, by reason (bus.envelope.REASONS)", "reason")

# -- forwarder-wide ------------------------------------------------------------------------
QUEUES_MOVED_ASIDE = counter("queues_moved_aside", "corrupt queue files moved aside at start")
QUARANTINE_EVENTS = gauge("quarantine_events", "events in the quarantine (refused by the server)")
TOKEN_EXPIRES_IN = gauge("token_expires_in", "seconds until the server token expires")
# totals over the queues (status only: /metrics has them per queue)
SENT = counter("sent", "events in requests posted, every attempt", export=False)
ACKED = counter("acked", "events the server accepted", export=False)
RETRIED = counter("retried", "failed requests, sent again", export=False)
QUARANTINED = counter("quarantined", "events moved to the quarantine", export=False)
DROPPED = counter("dropped", "events dropped by when_full = drop_oldest", export=False)
REQUESTS = counter(
    "requests", "requests by HTTP status ('error': no answer)", "status", export=False
)
QUEUE_EVENTS = gauge("queue_events", "events waiting on disk, in flight included", export=False)
QUEUE_BYTES = gauge("queue_bytes", "bytes waiting on disk, in flight included", export=False)
OLDEST_EVENT_AGE = gauge("oldest_event_age", "seconds the oldest event has waited", export=False)
BACKOFF = gauge("backoff", "seconds until the next request may go", export=False)

# -- per queue (label "queue": stateless, stateful) ------------------------------------------
Q_EVENTS = gauge("events", "events waiting on disk, in flight included")
Q_BYTES = gauge("bytes", "bytes waiting on disk, in flight included")
Q_CHUNKS = gauge("chunks", "chunks (rows) in the queue")
Q_IN_FLIGHT_EVENTS = gauge("in_flight_events", "events in requests being sent")
Q_MAX_BYTES = gauge("max_bytes", "the queue's bound (max_queue_bytes)")
Q_DROPPED = counter("dropped", "events dropped by when_full = drop_oldest")
Q_UNCOMMITTED_BYTES = gauge("uncommitted_bytes", "bytes handed to the writer, not committed yet")
Q_COMMITS = counter("commits", "chunks committed by the writer")
Q_WRITE_ERRORS = counter("write_errors", "failed queue writes (retried)")
Q_WRITE_FAILING = gauge("write_failing", "1 while the queue's writes fail")
Q_OLDEST_AGE = gauge("oldest_age", "seconds the oldest event of the queue has waited")
Q_SENT = counter("sent", "events in requests posted, every attempt")
Q_ACKED = counter("acked", "events the server accepted")
Q_RETRIED = counter("retried", "failed requests, sent again")
Q_QUARANTINED = counter("quarantined", "events moved to the quarantine")
Q_SPLITS = counter("splits", "batches split after a 400 or 413")
Q_ITEM_FAILURES = counter("item_failures", "stateful items refused inside a 200 (quarantined)")
Q_ITEMS_ALREADY_CREATED = counter(
    "items_already_created", "stateful creates answered 409: the document was there (delivered)"
)
Q_ITEMS_ALREADY_DELETED = counter(
    "items_already_deleted", "stateful deletes answered 404: the document was gone (delivered)"
)
Q_ITEMS_RECREATED = counter("items_recreated", "stateful updates answered 404, sent as creates")
Q_ITEMS_RECREATE_MOOT = counter(
    "items_recreate_moot", "re-creations not sent: a later event of the document decides"
)
Q_STATEFUL_OVERSIZED = counter(
    "stateful_oversized", "stateful events over the request bound, sent alone"
)
Q_IN_FLIGHT = gauge("in_flight", "requests being sent")
Q_REQUESTS = counter("requests", "requests by HTTP status ('error': no answer)", "status")
Q_BACKOFF = gauge("backoff", "seconds until the next request may go")
Q_BACKOFF_ATTEMPTS = gauge("backoff_attempts", "failed requests in a row")

QUEUES = Group(
    "queues",
    "queue",
    "queue",
    (
        Q_EVENTS,
        Q_BYTES,
        Q_CHUNKS,
        Q_IN_FLIGHT_EVENTS,
        Q_MAX_BYTES,
        Q_DROPPED,
        Q_UNCOMMITTED_BYTES,
        Q_COMMITS,
        Q_WRITE_ERRORS,
        Q_WRITE_FAILING,
        Q_OLDEST_AGE,
        Q_SENT,
        Q_ACKED,
        Q_RETRIED,
        Q_QUARANTINED,
        Q_SPLITS,
        Q_ITEM_FAILURES,
        Q_ITEMS_ALREADY_CREATED,
        Q_ITEMS_ALREADY_DELETED,
        Q_ITEMS_RECREATED,
        Q_ITEMS_RECREATE_MOOT,
        Q_STATEFUL_OVERSIZED,
        Q_IN_FLIGHT,
        Q_REQUESTS,
        Q_BACKOFF,
        Q_BACKOFF_ATTEMPTS,
    ),
)

FORWARDER = service_metrics(
    "forwarder",
    FRAMES,
    RECEIVED,
    PERSISTED,
    INGEST_REQUESTS,
    INGEST_FULL,
    INGEST_WAITING,
    BLOCKED,
    REJECTED,
    SENT,
    ACKED,
    RETRIED,
    QUARANTINED,
    DROPPED,
    REQUESTS,
    QUEUE_EVENTS,
    QUEUE_BYTES,
    OLDEST_EVENT_AGE,
    BACKOFF,
    QUARANTINE_EVENTS,
    QUEUES_MOVED_ASIDE,
    TOKEN_EXPIRES_IN,
    groups=[QUEUES],
)

#: figures the receiver and the queues keep themselves, copied in at status time
RECEIVER_FIGURES = (
    FRAMES,
    RECEIVED,
    PERSISTED,
    INGEST_REQUESTS,
    INGEST_FULL,
    INGEST_WAITING,
    BLOCKED,
)
#: forwarder-wide totals: the sum of each queue's figure
TOTALS = {SENT: Q_SENT, ACKED: Q_ACKED, RETRIED: Q_RETRIED, QUARANTINED: Q_QUARANTINED}
