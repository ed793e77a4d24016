"""The reference server: as strict as the real 6.0.0 server by default (docs/server.md),
implementing the server side of docs/protocol.md.

One concept per module: ``app`` (the ASGI app factory), ``management`` (enrollment API),
``comms`` (``/api/v1``), ``ndjson`` (the events body parser), ``chunks`` (the 6.0.0
per-chunk reading of stateful bodies, ``--stateful-chunk``), ``documents`` (the indexer's
mapping check and create/update/delete semantics), ``tokens`` (JWTs, key pair, server
clock), ``passwords`` (PBKDF2), ``store`` (SQLite), ``waiters`` (long-poll wake-ups),
``admin`` (operator API), ``admintoken`` (the admin API's token file), ``credentials``
(the management password's source; defaults refused off loopback), ``throttle`` (failed
credential checks per client address), ``faults`` (fault injection and request counts),
``errors`` (the two APIs' error shapes), ``tls`` (self-signed certificates), ``server``
(uvicorn), ``client`` (admin API client) and ``cli`` (``agentbus server``). Only ``cli``,
``admintoken`` and ``credentials`` are imported by ``agentbus`` itself; the rest needs the
``[server]`` extra.
"""
