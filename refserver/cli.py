"""`agentbus server`: run the reference server, or talk to a running one's admin API.

    agentbus server [--host H] [--port P] [--data-dir D] [--tls | --tls-cert C --tls-key K]
                    [--user U] [--password-file F] [--admin-token-file F]
                    [--failures-per-minute N] [--command-hold S] [--clock-skew S]
                    [--stateful-chunk N] [--allow-uuid7] [--no-strict-documents]
                    [--upsert-documents] [--detach]
    agentbus server stop [--data-dir D] [--timeout S]
    agentbus server command --agent ID|--group G --name N [--args JSON] [--timeout S]
    agentbus server events [--module M] [--agent ID] [--count] [--wait N]
    agentbus server agents | commands | results | stats
    agentbus server fault --status 503 [--count N | --seconds T] [--retry-after S] [--message M]
    agentbus server fault --clear | --list
    agentbus server revoke-tokens | put-file NAME FILE | resend DOCUMENT_ID

The password never comes from argv (refserver.credentials); the admin actions find the admin
token as refserver.admintoken says. Module-level imports stay light (``agentbus --help`` must
be fast); FastAPI and uvicorn are imported only when the server runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from core.helpfmt import synopsis

HELP = "the reference server (run it, or query and drive a running one)"

#: environment variable naming the server the admin actions talk to
URL_ENV = "AGENTBUS_SERVER_URL"
DEFAULT_DATA_DIR = "./agentbus-server"
#: files of a server started with --detach, in its data dir
LOG_FILE = "server.log"
PID_FILE = "server.pid"
#: how long --detach waits for the server to answer, and stop for it to exit (seconds)
DETACH_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
#: how often --detach, stop and events --wait look again (seconds)
POLL_INTERVAL = 0.1
#: the line the server prints once it listens (refserver.server)
LISTENING = "agentbus server listening on "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from refserver.admintoken import TOKEN_ENV, TOKEN_FILE, TOKEN_FILE_ENV
    from refserver.credentials import PASSWORD_ENV
    from refserver.options import (
        DEFAULT_COMMAND_HOLD,
        DEFAULT_FAILURES_PER_MINUTE,
        DEFAULT_PORT,
        DEFAULT_USER,
    )

    synopsis(
        parser,
        "agentbus server --detach --data-dir ./srv      # in the background, once it answers",
        "agentbus server events --data-dir ./srv --module myapp --wait 10",
        "agentbus server command --data-dir ./srv --agent ID --name restart",
        "agentbus server stop --data-dir ./srv",
    )
    serve = parser.add_argument_group("serving (no action given)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of every API")
    serve.add_argument(
        "--management-port", type=int, help="also serve the management API on this port"
    )
    serve.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where state is kept")
    tls = serve.add_mutually_exclusive_group()
    tls.add_argument(
        "--tls",
        "--self-signed",
        dest="self_signed",
        action="store_true",
        help="HTTPS with a self-signed certificate generated into DATA_DIR/tls (path printed)",
    )
    tls.add_argument("--tls-cert", help="HTTPS certificate (PEM); needs --tls-key")
    serve.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    serve.add_argument("--user", default=DEFAULT_USER, help="management API user")
    serve.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"management API password (else ${PASSWORD_ENV}, else a prompt on a terminal,"
        " else the default, refused on a non-loopback address)",
    )
    # Gone: a password in argv is visible in ps. Kept only to say so in one line.
    serve.add_argument("--password", help=argparse.SUPPRESS)
    serve.add_argument(
        "--admin-token-file",
        metavar="FILE",
        default=os.environ.get(TOKEN_FILE_ENV) or None,
        help=f"the admin API token: read from FILE if it exists, else made and written there"
        f" (0600); default ${TOKEN_FILE_ENV}, else a new one in DATA_DIR/{TOKEN_FILE}",
    )
    serve.add_argument(
        "--failures-per-minute",
        type=int,
        default=DEFAULT_FAILURES_PER_MINUTE,
        metavar="N",
        help="failed logins, agent key and admin token checks per minute and client address"
        f" before 429 (default {DEFAULT_FAILURES_PER_MINUTE}; 0: no limit)",
    )
    serve.add_argument(
        "--command-hold",
        type=float,
        default=DEFAULT_COMMAND_HOLD,
        metavar="SECONDS",
        help="how long GET /commands waits for a command before 408 (default 20 min)",
    )
    serve.add_argument(
        "--clock-skew",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="shift the server clock used for token iat/exp (negative: behind)",
    )
    serve.add_argument(
        "--key-hash-rounds",
        type=int,
        default=100_000,
        metavar="N",
        help="PBKDF2 rounds of stored agent keys (lower it only for tests and benchmarks)",
    )
    serve.add_argument(
        "--admin-any-host", action="store_true", help="answer the admin API from any address"
    )
    relax = parser.add_argument_group(
        "relaxing the real server's rules (for experiments; the default is as strict as 6.0.0)"
    )
    relax.add_argument(
        "--allow-uuid7", action="store_true", help="enrollment accepts UUID v7 ids besides v4"
    )
    relax.add_argument(
        "--no-strict-documents",
        dest="strict_documents",
        action="store_false",
        help="store stateful documents without checking them against their index's mapping"
        " (default: checked)",
    )
    relax.add_argument(
        "--upsert-documents",
        action="store_true",
        help="stateful create/update replace or create the document (no 409, 404 or merge)",
    )
    serve.add_argument(
        "--stateful-chunk",
        type=int,
        metavar="N",
        help="parse each stateful request per N-byte piece (headers included), as the 6.0.0"
        " comms API parses each receive chunk (16384: one TLS record)",
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="the server's log level (default warning)",
    )
    serve.add_argument(
        "--detach",
        action="store_true",
        help=f"run in the background: return once the server answers, its output in"
        f" DATA_DIR/{LOG_FILE}, its pid in DATA_DIR/{PID_FILE} (stop it with 'agentbus"
        " server stop --data-dir DATA_DIR'); no password prompt",
    )

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, f"http://127.0.0.1:{DEFAULT_PORT}"),
        help=f"the server (default ${URL_ENV}, else http://127.0.0.1:{DEFAULT_PORT})",
    )
    client.add_argument("--insecure", action="store_true", help="do not verify TLS")
    client.add_argument(
        "--admin-token-file",
        dest="client_token_file",
        metavar="FILE",
        default=os.environ.get(TOKEN_FILE_ENV) or None,
        help=f"the admin token (default ${TOKEN_FILE_ENV}, else ${TOKEN_ENV}, else"
        f" DATA_DIR/{TOKEN_FILE})",
    )
    client.add_argument(
        "--data-dir",
        dest="client_data_dir",
        metavar="DATA_DIR",
        help=f"the server's data dir, where its {TOKEN_FILE} is (default {DEFAULT_DATA_DIR})",
    )
    client.add_argument("--json", action="store_true", help="print JSON")

    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    p = actions.add_parser("command", parents=[client], help="queue a command")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--agent", help="agent id")
    target.add_argument("--group", help="every agent of this group")
    p.add_argument("--name", required=True, help="e.g. set-group, fetch-config, restart")
    p.add_argument("--args", help='arguments as a JSON object, e.g. \'{"groups":["web"]}\'')
    p.add_argument(
        "--timeout", type=int, help="seconds the agent has to run it (default: the agent's)"
    )
    synopsis(
        p,
        'agentbus server command --agent ID --name set-group --args \'{"groups":["web"]}\'',
        "agentbus server command --group web --name fetch-config",
    )

    p = actions.add_parser(
        "stop",
        help="stop a server started with --detach",
        description=f"Stop the server whose pid is in DATA_DIR/{PID_FILE} (started with"
        " --detach): SIGTERM, then SIGKILL if it has not exited within --timeout. Exit 0 once"
        " it is gone, 1 if no such server runs.",
    )
    p.add_argument(
        "--data-dir",
        dest="client_data_dir",
        metavar="DATA_DIR",
        help=f"the server's data dir, where its {PID_FILE} is (default {DEFAULT_DATA_DIR})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=STOP_TIMEOUT,
        metavar="SECONDS",
        help=f"how long it gets to stop before SIGKILL (default {STOP_TIMEOUT:g})",
    )
    synopsis(p, "agentbus server stop --data-dir ./srv")

    p = actions.add_parser(
        "events",
        parents=[client],
        help="list or count received events",
        description="Print the received events as NDJSON (or --count them). With --wait N,"
        " wait up to N seconds for at least one matching event: exit 0 once one came, 1 if"
        " none came in time.",
    )
    p.add_argument("--module", help="only events of this module (default: every module)")
    p.add_argument("--agent", help="only events of this agent id (default: every agent)")
    p.add_argument(
        "--type", choices=["stateless", "stateful"], help="only this type (default: both)"
    )
    p.add_argument("--count", action="store_true", help="print only how many")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for a matching event; exit 1 if none came (default: no wait)",
    )
    synopsis(
        p,
        "agentbus server events --module myapp --wait 10",
        "agentbus server events --agent ID --type stateful --count",
    )

    p = actions.add_parser("agents", parents=[client], help="list enrolled agents")
    synopsis(p, "agentbus server agents --data-dir ./srv --json")
    p = actions.add_parser("commands", parents=[client], help="list commands and their state")
    synopsis(p, "agentbus server commands --data-dir ./srv")
    p = actions.add_parser("results", parents=[client], help="list command results")
    p.add_argument("--document-id", help="only this command's (default: every command's)")
    synopsis(p, "agentbus server results --document-id DOC_ID")
    p = actions.add_parser("stats", parents=[client], help="request counters")
    synopsis(p, "agentbus server stats --data-dir ./srv")
    p = actions.add_parser("resend", parents=[client], help="make a sent command pending again")
    p.add_argument("document_id")
    synopsis(p, "agentbus server resend DOC_ID")
    p = actions.add_parser("revoke-tokens", parents=[client], help="invalidate every token issued")
    synopsis(p, "agentbus server revoke-tokens --data-dir ./srv")
    p = actions.add_parser("put-file", parents=[client], help="serve a file at /api/v1/files")
    p.add_argument("name", help="e.g. web.yml")
    p.add_argument("file", help="local file to upload ('-' for stdin)")
    synopsis(p, "agentbus server put-file notes.txt ./notes.txt")

    p = actions.add_parser(
        "group-file",
        parents=[client],
        help="set (or --show) a group's configuration file, <group>.yml",
        description="Serve FILE as the configuration of GROUP (<group>.yml at /api/v1/files), "
        "checked first as the agent checks it (docs/configuration.md).",
    )
    p.add_argument("group", help="the group's name, e.g. web")
    p.add_argument("file", nargs="?", help="local YAML file ('-' for stdin)")
    p.add_argument("--show", action="store_true", help="print the file the server serves")
    p.add_argument(
        "--no-check", action="store_true", help="serve it even if the agent would refuse it"
    )
    synopsis(p, "agentbus server group-file web ./web.yml", "agentbus server group-file web --show")

    p = actions.add_parser("fault", parents=[client], help="inject faults (or --clear, --list)")
    p.add_argument("--status", type=int, help="answer with this status (500, 503, 429, ...)")
    p.add_argument("--count", type=int, help="for this many requests")
    p.add_argument("--seconds", type=float, help="for this long")
    p.add_argument("--retry-after", type=float, help="Retry-After header value (seconds)")
    p.add_argument("--delay", type=float, help="wait this long before answering")
    p.add_argument("--drop", action="store_true", help="close the connection, no answer")
    p.add_argument("--max-body", type=int, help="only bodies above this many bytes (413)")
    p.add_argument("--path", help="only paths starting with this (default: all but /admin)")
    p.add_argument(
        "--message",
        help="the error text of --status (e.g. \"Couldn't connect to the indexer: connection"
        ' refused")',
    )
    p.add_argument("--clear", action="store_true", help="remove every fault")
    p.add_argument("--list", action="store_true", help="show the active faults")
    synopsis(
        p,
        "agentbus server fault --status 503 --count 5",
        "agentbus server fault --status 429 --retry-after 3 --seconds 10",
        "agentbus server fault --clear",
    )


def run(args: argparse.Namespace) -> int:
    if args.action is None:
        return _detach(args) if args.detach else _serve(args)
    if args.action == "stop":
        return _stop(Path(args.client_data_dir or args.data_dir), args.timeout)
    from refserver.admintoken import TokenFileError, client_token
    from refserver.client import AdminClient, AdminError

    try:
        token = client_token(
            args.client_token_file or args.admin_token_file, args.client_data_dir or args.data_dir
        )
    except TokenFileError as exc:
        print(f"agentbus server: {exc}", file=sys.stderr)
        return 2
    client = AdminClient(args.url, verify=not args.insecure, token=token)
    try:
        return _act(client, args)
    except AdminError as exc:
        hint = ""
        if exc.status == 401:
            hint = "; give --data-dir of the server, --admin-token-file or $AGENTBUS_ADMIN_TOKEN"
        print(f"agentbus server: {exc.message} (HTTP {exc.status}){hint}", file=sys.stderr)
        return 3
    except OSError as exc:  # requests' ConnectionError is an OSError
        print(f"agentbus server: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 3
    finally:
        client.close()


def _serve(args: argparse.Namespace) -> int:
    problem = _serve_args_problem(args)
    if problem is not None:
        print(f"agentbus server: {problem}", file=sys.stderr)
        return 2
    from refserver.credentials import CredentialsError, default_refusal, management_password

    try:
        password = management_password(args.password_file)
    except CredentialsError as exc:
        print(f"agentbus server: {exc}", file=sys.stderr)
        return 2
    refusal = default_refusal(args.host, password)
    if refusal is not None:
        print(f"agentbus server: {refusal}", file=sys.stderr)
        return 2
    try:
        from core.config import LogSection
        from core.logs import setup_logging
        from refserver.options import ServerOptions
        from refserver.server import serve
    except ImportError as exc:
        print(
            f"agentbus server: needs {exc.name}, which is not installed"
            " (pip install 'agentbus[server]')",
            file=sys.stderr,
        )
        return 2
    # stderr only, "[server]" prefix, and no variable values in tracebacks (tokens, keys).
    setup_logging(LogSection(level=args.log_level.upper()), "server")
    # Everything the server writes (database, keys, token, files) is its own alone.
    os.umask(0o077)
    options = ServerOptions(
        data_dir=Path(args.data_dir).resolve(),
        host=args.host,
        port=args.port,
        management_port=args.management_port,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        self_signed=args.self_signed,
        user=args.user,
        password=password.value,
        password_source=password.source,
        command_hold=args.command_hold,
        clock_skew=args.clock_skew,
        admin_any_host=args.admin_any_host,
        admin_token_file=Path(args.admin_token_file).resolve() if args.admin_token_file else None,
        failures_per_minute=args.failures_per_minute,
        key_hash_rounds=args.key_hash_rounds,
        allow_uuid7=args.allow_uuid7,
        strict_documents=args.strict_documents,
        upsert_documents=args.upsert_documents,
        stateful_chunk=args.stateful_chunk,
    )
    try:
        return serve(options, log_level=args.log_level)
    except OSError as exc:
        print(f"agentbus server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1


def _serve_args_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the serving options, in one line; None if nothing."""
    if args.key_hash_rounds < 1:
        return "--key-hash-rounds must be at least 1"
    if args.failures_per_minute < 0:
        return "--failures-per-minute must be 0 or more"
    if args.stateful_chunk is not None and args.stateful_chunk < 1:
        return "--stateful-chunk must be at least 1"
    if bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together"
    if args.password is not None:
        return (
            "--password is not taken (every local user sees argv in ps):"
            " use --password-file FILE, $AGENTBUS_SERVER_PASSWORD or the prompt"
        )
    return None


def _serve_argv(args: argparse.Namespace) -> list[str]:
    """The serving options of ``args`` as arguments of ``python -m refserver``."""
    argv = [
        "--host", args.host,
        "--port", str(args.port),
        "--data-dir", str(Path(args.data_dir).resolve()),
        "--user", args.user,
        "--failures-per-minute", str(args.failures_per_minute),
        "--command-hold", repr(args.command_hold),
        "--clock-skew", repr(args.clock_skew),
        "--key-hash-rounds", str(args.key_hash_rounds),
        "--log-level", args.log_level,
    ]  # fmt: skip
    valued = {
        "--management-port": args.management_port,
        "--tls-cert": args.tls_cert and str(Path(args.tls_cert).resolve()),
        "--tls-key": args.tls_key and str(Path(args.tls_key).resolve()),
        "--admin-token-file": args.admin_token_file and str(Path(args.admin_token_file).resolve()),
        "--stateful-chunk": args.stateful_chunk,
    }
    for flag, value in valued.items():
        if value is not None:
            argv += [flag, str(value)]
    switches = {
        "--tls": args.self_signed,
        "--admin-any-host": args.admin_any_host,
        "--allow-uuid7": args.allow_uuid7,
        "--no-strict-documents": not args.strict_documents,
        "--upsert-documents": args.upsert_documents,
    }
    return argv + [flag for flag, on in switches.items() if on]


def _detach(args: argparse.Namespace) -> int:
    """Start the server in the background; return once it answers (or say why it did not).

    No prompt for the password: a block pasted into a shell would feed it the next line.
    The server reads --password-file or $AGENTBUS_SERVER_PASSWORD itself (its stdin is
    /dev/null), else takes the default, which it refuses off loopback. Its output goes to
    DATA_DIR/server.log, its pid to DATA_DIR/server.pid; ready means it printed its
    listening line and its admin API answers with the token it wrote.
    """
    import subprocess
    import time

    from refserver.admintoken import TOKEN_FILE, TokenFileError, read_token
    from refserver.client import AdminClient

    problem = _serve_args_problem(args)
    if problem is not None:
        print(f"agentbus server: {problem}", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir).resolve()
    pid_file, log_file = data_dir / PID_FILE, data_dir / LOG_FILE
    running = _server_pid(pid_file)
    if running is not None:
        print(
            f"agentbus server: a server started from {data_dir} runs already (pid {running});"
            f" stop it first: agentbus server stop --data-dir {data_dir}",
            file=sys.stderr,
        )
        return 1
    old = os.umask(0o077)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_file, "ab")  # noqa: SIM115 - the server's stdout from now on
    finally:
        os.umask(old)
    start = log.tell()
    with log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refserver", *_serve_argv(args)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by this terminal's Ctrl-C or hangup
        )
    _write_pid(pid_file, proc.pid)
    token_file = Path(args.admin_token_file).resolve() if args.admin_token_file else None
    token_file = token_file or data_dir / TOKEN_FILE
    scheme = "https" if args.self_signed or args.tls_cert else "http"
    host = f"[{args.host}]" if ":" in args.host else args.host
    host = "127.0.0.1" if host == "0.0.0.0" else "[::1]" if host == "[::]" else host
    url = f"{scheme}://{host}:{args.port}"
    deadline = time.monotonic() + DETACH_TIMEOUT
    while True:
        code = proc.poll()
        if code is not None:
            pid_file.unlink(missing_ok=True)
            output = _read_from(log_file, start).strip()
            print(f"agentbus server: the server exited with code {code}:", file=sys.stderr)
            print(output or "(no output)", file=sys.stderr)
            return code or 1
        if time.monotonic() >= deadline:
            proc.kill()
            proc.wait()
            pid_file.unlink(missing_ok=True)
            print(
                f"agentbus server: not ready within {DETACH_TIMEOUT:g}s; stopped it (log:"
                f" {log_file})",
                file=sys.stderr,
            )
            return 1
        if LISTENING in _read_from(log_file, start):
            try:
                client = AdminClient(url, verify=False, timeout=2.0, token=read_token(token_file))
                try:
                    client.health()
                finally:
                    client.close()
            except (OSError, TokenFileError, ValueError):
                pass  # not answering yet (requests' errors are OSErrors)
            else:
                break
        time.sleep(POLL_INTERVAL)
    # Detached on purpose: nobody here waits for it (and Popen must not warn that it runs).
    proc.returncode = 0
    print(
        f"agentbus server ready on {url} (pid {proc.pid}); log {log_file}, pid file"
        f" {pid_file}, admin token {token_file}; stop it with: agentbus server stop"
        f" --data-dir {data_dir}"
    )
    return 0


def _stop(data_dir: Path, timeout: float) -> int:
    """SIGTERM the server of ``data_dir``'s pid file, SIGKILL after ``timeout``."""
    import signal
    import time

    pid_file = data_dir.resolve() / PID_FILE
    pid = _server_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)  # stale: its process is gone
        print(f"agentbus server: no server started from {data_dir.resolve()} runs", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    how = "stopped"
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        how = f"killed (it had not stopped within {timeout:g}s)"
        while _alive(pid):
            time.sleep(POLL_INTERVAL)
    pid_file.unlink(missing_ok=True)
    print(f"agentbus server {how} (pid {pid})")
    return 0


def _write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def _server_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process runs and is a reference server; else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # a pid reused by another program is not ours to signal
    if b"refserver" not in cmdline or not _alive(pid):
        return None
    return pid


def _alive(pid: int) -> bool:
    """The process runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _act(client: Any, args: argparse.Namespace) -> int:
    action = args.action
    if action == "command":
        try:
            cargs = json.loads(args.args) if args.args else None
        except json.JSONDecodeError as exc:
            print(f"agentbus server: --args is not JSON: {exc.msg}", file=sys.stderr)
            return 2
        ids = client.queue_command(
            name=args.name, agent_id=args.agent, group=args.group, args=cargs, timeout=args.timeout
        )
        _out(args, ids, lines=ids)
    elif action == "events":
        return _events(client, args)
    elif action == "agents":
        rows = client.agents()
        _out(args, rows, lines=[f"{a['id']}  {a['name']}  groups={a['groups']}" for a in rows])
    elif action == "commands":
        rows = client.commands()
        _out(args, rows, lines=[_command_line(c) for c in rows])
    elif action == "results":
        rows = client.results(args.document_id)
        _out(
            args,
            rows,
            lines=[f"{r['document_id']}  code={r['code']}  {r['message']}" for r in rows],
        )
    elif action == "stats":
        print(json.dumps(client.stats(), indent=2))
    elif action == "resend":
        client.resend(args.document_id)
    elif action == "revoke-tokens":
        client.revoke_tokens()
    elif action == "put-file":
        content = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        client.put_file(args.name, content)
    elif action == "group-file":
        return _group_file(client, args)
    elif action == "fault":
        return _fault(client, args)
    return 0


def _events(client: Any, args: argparse.Namespace) -> int:
    import time

    deadline = time.monotonic() + (args.wait or 0.0)
    while True:
        if args.count:
            n = client.count_events(module=args.module, agent=args.agent, type=args.type)
            rows: list[Any] = []
        else:
            rows = client.events(
                module=args.module, agent=args.agent, type=args.type, limit=args.limit
            )
            n = len(rows)
        if n or args.wait is None or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    if args.count:
        _out(args, {"count": n}, lines=[str(n)])
    for row in rows:
        print(json.dumps(row, separators=(",", ":")))
    if args.wait is not None and not n:
        print(f"agentbus server: no matching event within {args.wait:g}s", file=sys.stderr)
        return 1
    return 0


def _group_file(client: Any, args: argparse.Namespace) -> int:
    from core.groupset import file_name, valid_group_name

    if not valid_group_name(args.group):
        print(f"agentbus server: {args.group!r} is not a valid group name", file=sys.stderr)
        return 2
    name = file_name(args.group)
    if args.show:
        content = client.get_file(name)
        if content is None:
            print(f"agentbus server: no file for group {args.group}", file=sys.stderr)
            return 1
        sys.stdout.write(content.decode("utf-8", "replace"))
        return 0
    if args.file is None:
        print("agentbus server: group-file needs FILE (or --show)", file=sys.stderr)
        return 2
    content = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    if not args.no_check:
        from core.config import check_changes
        from core.groupfile import GroupFileError, parse_group_file

        try:
            parsed = parse_group_file(args.group, content)
            check_changes(parsed)
        except GroupFileError as exc:
            print(f"agentbus server: agents would refuse {name}: {exc}", file=sys.stderr)
            return 2
        for warning in parsed.warnings:
            print(f"agentbus server: {name}: {warning}", file=sys.stderr)
    client.put_file(name, content)
    _out(args, {"file": name}, lines=[f"group {args.group}: {name} served"])
    return 0


def _fault(client: Any, args: argparse.Namespace) -> int:
    if args.clear:
        client.clear_faults()
        return 0
    if args.list:
        for rule in client.faults():
            print(json.dumps(rule, separators=(",", ":")))
        return 0
    rule = client.set_fault(
        status=args.status,
        count=args.count,
        seconds=args.seconds,
        retry_after=args.retry_after,
        delay=args.delay,
        drop=args.drop,
        max_body=args.max_body,
        path=args.path,
        message=args.message,
    )
    print(json.dumps(rule, separators=(",", ":")))
    return 0


def _command_line(c: dict[str, Any]) -> str:
    result = c["result"]
    done = f"  result={result['code']} {result['message']}" if result else ""
    return f"{c['document_id']}  {c['agent_id']}  {c['name']}  {c['status']}{done}"


def _out(args: argparse.Namespace, payload: Any, *, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(payload))
    else:
        for line in lines:
            print(line)


def main(argv: list[str] | None = None) -> int:
    """``python -m refserver [...]``: the same as ``agentbus server [...]``, without the agent."""
    parser = argparse.ArgumentParser(prog="python -m refserver", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
