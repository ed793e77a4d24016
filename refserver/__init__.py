"""The reference server: a faithful, strict implementation of PROTOCOL.md (docs/server.md).

One concept per module: ``app`` (the ASGI app factory), ``management`` (enrollment API),
``comms`` (``/api/v1``), ``ndjson`` (the events body parser), ``tokens`` (JWTs, key pair,
server clock), ``passwords`` (PBKDF2), ``store`` (SQLite), ``waiters`` (long-poll wake-ups),
``admin`` (operator API), ``faults`` (fault injection and request counts), ``tls``
(self-signed certificates), ``server`` (uvicorn), ``client`` (admin API client) and
``cli`` (``agentbus server``). Only ``cli`` is imported by ``agentbus`` itself; the rest
needs the ``[server]`` extra.
"""
