"""Run the reference server: bind, print where it listens, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import socket
import sys
from dataclasses import replace
from pathlib import Path

import uvicorn

from refserver.admintoken import TokenFileError, server_token
from refserver.app import create_app
from refserver.credentials import is_loopback
from refserver.options import ServerOptions
from refserver.state import ServerState
from refserver.tls import self_signed

#: seconds held long-polls get to finish when the server stops
GRACEFUL_SECONDS = 2
#: pending connections the kernel queues per listening socket (many agents at once)
BACKLOG = 2048


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
    # with proto 0 every answer after the first on a kept-alive connection waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def serve(options: ServerOptions, *, log_level: str = "warning") -> int:
    """Serve until stopped; returns the exit code."""
    cert: Path | None = options.tls_cert
    key: Path | None = options.tls_key
    if options.self_signed:
        cert, key = self_signed(options.data_dir / "tls", options.host)
    sockets = [_bind(options.host, options.port)]
    if options.management_port is not None:
        sockets.append(_bind(options.host, options.management_port))
    # Only once listening: a second server that cannot bind must not replace the token file
    # of the one that runs.
    try:
        token, token_file = server_token(options.data_dir, options.admin_token_file)
    except TokenFileError as exc:
        for sock in sockets:
            sock.close()
        print(f"agentbus server: {exc}", file=sys.stderr)
        return 2
    options = replace(options, admin_token=token, admin_token_file=token_file)
    state = ServerState(options)
    app = create_app(options, state)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        timeout_keep_alive=75,  # agents keep connections between batches
        backlog=BACKLOG,
        lifespan="off",
    )
    scheme = "https" if cert else "http"
    host = f"[{options.host}]" if ":" in options.host else options.host
    ports = [s.getsockname()[1] for s in sockets]
    where = f"{scheme}://{host}:{ports[0]}"
    extra = f", management API also on {scheme}://{host}:{ports[1]}" if len(ports) > 1 else ""
    tls_note = f"; certificate {cert}" if options.self_signed else ""
    # Never the password nor the admin token: this line lands in logs and terminals.
    print(
        f"agentbus server listening on {where} (management, comms and admin APIs{extra});"
        f" management user {options.user!r}, password from {options.password_source};"
        f" admin token in {options.admin_token_file}; data dir {options.data_dir}{tls_note}",
        flush=True,
    )
    if cert is None and not is_loopback(options.host):
        print(
            f"agentbus server: warning: plain HTTP on {options.host}: agent keys, passwords and"
            " tokens cross the network in clear; add --tls",
            file=sys.stderr,
            flush=True,
        )
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=sockets))
    finally:
        state.close()
        for sock in sockets:
            sock.close()
    return 0 if server.started else 1
