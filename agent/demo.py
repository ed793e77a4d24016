"""`agentbus demo`: the whole system at once, in a temporary directory.

Starts the reference server, enrolls an agent, runs it (forwarder, commander, built-in
executor, logcollector, inventory, fim, sca), feeds it from an example collector and an example
executor, queues a few commands, shows live progress, and prints a summary read back from
the server. Every step prints one line, so a newcomer can follow what happens.

Active response is part of it too: the active-response executor runs as a process of its
own (as ``agentbus active-response`` does under its unit), with firewall-drop enabled by a
link in its allowed directory; the server asks it to block an address as a dry run, and
the program's answer — the nftables or iptables commands it would run — comes back as the
command's result (docs/active-response.md).

Centralized configuration is part of it: the server serves a file for group ``web`` that
adds a log file to the logcollector (docs/configuration.md); ``set-group web`` moves the
agent into the group, the agent reloads its logcollector alone, and lines written to that
file then arrive at the server, counted on their own line of the summary.

SCA runs with the baseline policy shipped with agentbus only; the summary shows its score
and a failed check with its remediation, read back from the server's ``sca`` documents.
Where journald runs, lines the demo writes to the journal (under an identifier of its
own) are a row too; elsewhere one line says the journal source is off.

Every row of the summary says before the agent starts what it expects — computed up
front (the inventory and SCA documents from the same scanners and policy, run here first)
— and ends with ``ok``, ``MISSING n of N`` or ``n MORE THAN EXPECTED``; the exit code is 1
when any row is not ``ok``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.errors import AgentbusError
from bus.sockets import MAX_IPC_PATH
from core.config import config_from_dict, to_toml

#: events the example collector publishes
EXAMPLE_EVENTS = 2000
#: lines written to the tailed log file
LOG_LINES = 300
#: lines written to the log file the group's configuration adds
GROUP_LINES = 50
#: what marks those lines (the summary counts the events holding it)
GROUP_MARK = "GET /demo-group"
#: lines the demo writes to the journal where journald runs
JOURNAL_LINES = 20
#: the inventory collectors the demo's agent runs
INVENTORY = ["system", "hardware", "networks"]
#: the index of the SCA documents (one per check)
SCA_INDEX = "wazuh-states-sca"
#: journald's native socket (entries written to it carry the fields the demo sets)
JOURNAL_SOCKET = "/run/systemd/journal/socket"
#: the address the demo's active response would block (a documentation address)
AR_ADDRESS = "203.0.113.7"
#: how long the demo waits for everything to arrive (seconds)
DEADLINE = 90.0
ADMIN_USER = "wazuh"
#: characters kept free in the run dir's path for the longest socket file name
RUN_DIR_ROOM = 40
ADMIN_PASSWORD = "wazuh"


class DemoFailed(AgentbusError):
    """The demo did not see what it expected on the server."""


@dataclass
class Seen:
    """What the server holds, read once per look (each row counts its part of it)."""

    counts: dict[str, int]
    logs: list[dict[str, Any]]
    fim: list[dict[str, Any]]
    #: the stateful documents the server holds for the demo's agent, by index
    documents: dict[str, list[dict[str, Any]]]

    def index(self, prefix: str) -> list[dict[str, Any]]:
        return [
            d for index, docs in self.documents.items() if index.startswith(prefix) for d in docs
        ]


@dataclass(frozen=True)
class Row:
    """One line of the summary: what must arrive, fixed before the agent starts."""

    key: str  # short, for the live progress line
    label: str  # what it counts, in words
    expected: int
    count: Callable[[Seen], int]


def verdict(got: int, expected: int) -> str:
    if got == expected:
        return "ok"
    if got < expected:
        return f"MISSING {expected - got} of {expected}"
    return f"{got - expected} MORE THAN EXPECTED"


class Demo:
    def __init__(self, base: Path, keep: bool) -> None:
        self.base = base
        self.keep = keep
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen[bytes] | None = None
        self.server_dir = base / "server"
        self.agent: subprocess.Popen[bytes] | None = None
        self.active_response: subprocess.Popen[bytes] | None = None
        self.config_file = base / "agentbus.toml"
        # ipc socket paths are limited (MAX_IPC_PATH): a deep --dir gets a short run dir
        self.run_dir = base / "run"
        if len(str(self.run_dir)) > MAX_IPC_PATH - RUN_DIR_ROOM:
            self.run_dir = Path(tempfile.mkdtemp(prefix="agentbus-demo-run-", dir="/tmp"))
        # the journal entries of this demo alone carry this identifier
        self.journal_id = f"agentbus-demo-{os.getpid()}"
        self.rows: list[Row] = []
        self.commands: dict[str, tuple[str, int]] = {}  # document id -> (what, code)

    # -- steps ---------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.start_server()
            config = self.enroll()
            journal = self.plan(config)
            self.start_agent()
            self.start_active_response()
            executor = self.start_example_executor(config)
            self.feed(config, journal)
            self.queue_commands()
            self.watch()
            ok = self.summary(journal)
            executor.stop()
            self.next_steps()
            return 0 if ok else 1
        finally:
            if not self.keep:
                self.stop_all()

    def start_server(self) -> None:
        say(f"starting the reference server on {self.url}")
        log = open(self.base / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.server = subprocess.Popen(
            [
                sys.executable, "-m", "agent.main", "server", "--host", "127.0.0.1",
                "--port", str(self.port), "--data-dir", str(self.server_dir),
                "--user", ADMIN_USER, "--command-hold", "20",
            ],
            # the password from the environment (argv is visible in ps), never a prompt
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**_clean_env(), "AGENTBUS_SERVER_PASSWORD": ADMIN_PASSWORD},
            start_new_session=True,
        )  # fmt: skip
        _until(self._admin_answers, 30, "the reference server did not start", self.server)
        self.group_log = self.base / "web" / "access.log"
        (self.base / "web").mkdir()
        # what `agentbus server group-file web FILE` serves (checked as agents check it)
        self.admin.put_file(
            "web.yml",
            (
                "# configuration of group web: the C++ agent's schema\n"
                f"logcollector:\n  localfiles:\n    - location: {self.group_log}\n"
            ).encode(),
        )
        say(f"group web's file (web.yml) adds {self.group_log} to the logcollector")

    def _admin_answers(self) -> bool:
        """The server wrote its admin token (at every start) and answers with it."""
        token_file = self.server_dir / "admin.token"
        if not token_file.exists():
            return False
        self.admin = _admin(self.url, token_file)
        return _answers(self.admin)

    def enroll(self) -> Any:
        from comms.enroll import EnrollRequest, enroll

        raw = {
            "agent": {
                "server_url": self.url,
                "data_dir": str(self.base / "data"),
                "run_dir": str(self.run_dir),
            },
            "log": {"level": "INFO"},
            "collectors": {
                "logcollector": {
                    "paths": [str(self.base / "logs" / "*.log")],
                    "read_from": "start",
                    # only what the demo writes: not this host's syslog files, and of the
                    # journal (where journald runs) only the demo's own entries
                    "syslog_paths": [],
                    "journald": "auto",
                    "journald_identifiers": [self.journal_id],
                },
                "fim": {"paths": [str(self.base / "watched")], "interval": "2s"},
                "inventory": {"interval": "1h", "collectors": INVENTORY},
                # the baseline policy shipped with agentbus, nothing from this host's dirs
                "sca": {"builtin_policies": True, "policies": [], "policy_dirs": []},
            },
        }
        config = config_from_dict(raw)
        (self.base / "logs").mkdir()
        (self.base / "watched").mkdir()
        self.config_file.write_text(to_toml(config))
        say("enrolling (agentbus register): the agent makes its id, a UUID v7")
        creds = enroll(
            config,
            EnrollRequest(
                enroll_url=self.url, user=ADMIN_USER, password=ADMIN_PASSWORD,
                name="demo-agent", connect_url=self.url,
            ),
            # the reference server is a Wazuh 6.0 server: it takes only v4 ids, so this
            # line appears, as it would against a real one
            notice=lambda text: say(f"note: {text}"),
        )  # fmt: skip
        self.agent_id = creds.uuid
        say(f"enrolled agent {creds.name} as {creds.uuid}")
        return config

    def plan(self, config: Any) -> bool:
        """Fix every row's expected count before the agent starts; True when the journal
        is collected here (journald runs)."""
        from collectors.inventory.scanners import scanners
        from collectors.logcollector.journald import find_journalctl, journald_present
        from collectors.sca.assess import assess

        # the same scanners and policy the agent runs, on the same host, run here first
        available = scanners(config.collectors.inventory.dpkg_status)
        inventory = sum(len(available[name]()) for name in INVENTORY)
        sca_checks = sum(len(r.policy.checks) for r in assess(config.collectors.sca).applicable)
        logs = self.base / "logs" / "app.log"
        journal = (
            journald_present(config.collectors.logcollector)
            and find_journalctl() is not None
            and os.path.exists(JOURNAL_SOCKET)
        )

        def fim(operation: str) -> Callable[[Seen], int]:
            return lambda seen: sum(1 for e in seen.fim if e.get("operation") == operation)

        self.rows = [
            Row("demo", "events of the example collector", EXAMPLE_EVENTS,
                lambda seen: seen.counts["demo"]),
            Row("log", f"lines of {logs}", LOG_LINES,
                lambda seen: sum(1 for e in seen.logs if _log_path(e) == str(logs))),
            Row("group", "lines of the file group web adds", GROUP_LINES,
                lambda seen: sum(1 for e in seen.logs if _log_path(e) == str(self.group_log))),
            Row("fim+", "fim: files created (passwd, hosts)", 2, fim("create")),
            Row("fim~", "fim: files modified (hosts)", 1, fim("update")),
            Row("fim-", "fim: files deleted (passwd)", 1, fim("delete")),
            Row("inventory", f"inventory documents ({', '.join(INVENTORY)})", inventory,
                lambda seen: len(seen.index("wazuh-states-inventory-"))),
            Row("sca", "sca documents (one per check of the baseline)", sca_checks,
                lambda seen: len(seen.index(SCA_INDEX))),
        ]  # fmt: skip
        if journal:
            self.rows.append(
                Row("journal", f"journal entries of {self.journal_id}", JOURNAL_LINES,
                    lambda seen: sum(1 for e in seen.logs if e.get("collector") == "journald")),
            )  # fmt: skip
        say("the server must receive (known before the agent starts):")
        for row in self.rows:
            print(f"    {row.expected:>6}  {row.label}")
        return journal

    def start_agent(self) -> None:
        say("starting the agent (agentbus run): forwarder, commander, executor, collectors")
        # 0750, as the unit makes it: the active-response executor refuses a commands
        # socket in a directory others than its owner may write
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o750)
        log = open(self.base / "agent.log", "ab")  # noqa: SIM115 - owned by the child
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "agent.main", "run", "--config", str(self.config_file)],
            stdout=log, stderr=subprocess.STDOUT, env=_clean_env(), start_new_session=True,
        )  # fmt: skip
        from agent.status import collect_status
        from core.config import load_config

        config = load_config(self.config_file, environ={})
        _until(
            lambda: collect_status(config)["summary"]["healthy"], 30,
            f"the agent did not come up (see {self.base / 'agent.log'})", self.agent,
        )  # fmt: skip

    def start_active_response(self) -> None:
        """The active-response executor, a process of its own, allowed one program (a link
        to our firewall-drop); it is served once the commander has its hello."""
        import tomllib

        import tomli_w

        from active_response.programs import SHIPPED_DIR

        allowed = self.base / "active-response"
        allowed.mkdir(mode=0o755)
        os.chmod(allowed, 0o755)
        (allowed / "firewall-drop").symlink_to(SHIPPED_DIR / "firewall-drop")
        raw = tomllib.loads(self.config_file.read_text())
        raw["active_response"] = {
            "programs_dir": str(allowed),
            "state_dir": str(self.base / "active-response-state"),
        }
        self.ar_config_file = self.base / "active-response.toml"
        self.ar_config_file.write_text(tomli_w.dumps(raw))
        log = open(self.base / "active-response.log", "ab")  # noqa: SIM115 - owned by the child
        self.active_response = subprocess.Popen(
            [sys.executable, "-m", "agent.main", "active-response", "--config", str(self.ar_config_file)],
            stdout=log, stderr=subprocess.STDOUT, env=_clean_env(), start_new_session=True,
        )  # fmt: skip
        from agent.status import collect_status
        from core.config import load_config

        config = load_config(self.config_file, environ={})

        def served() -> bool:
            commander = collect_status(config)["services"].get("commander", {})
            return "active-response" in commander.get("counters", {}).get("executors", {})

        _until(
            served,
            30,
            f"the active-response executor did not come up (see {log.name})",
            self.active_response,
        )
        say(
            f"active-response executor serves topic 'active-response' (allowed: firewall-drop, in {allowed})"
        )

    def start_example_executor(self, config: Any) -> Any:
        from bus.executor import Executor

        executor = Executor(["demo"], name="demo-executor", run_dir=config.agent.run_dir)

        @executor.handler("echo")
        def echo(command: Any) -> tuple[int, str]:
            return 0, f"echo: {command.args.get('text', '')}"

        executor.start()
        say("example executor serves topic 'demo' (action demo.echo)")
        return executor

    def feed(self, config: Any, journal: bool) -> None:
        from bus import Publisher

        say(
            f"example collector publishes {EXAMPLE_EVENTS} events; {LOG_LINES} log lines;"
            " 2 files created, then 1 modified and 1 deleted"
            + (f"; {JOURNAL_LINES} journal entries" if journal else "")
        )
        with Publisher(run_dir=config.agent.run_dir) as pub:
            for first in range(0, EXAMPLE_EVENTS, 200):
                pub.send_batch(
                    [
                        {
                            "module": "demo",
                            "collector": "publisher",
                            "data": {"seq": i, "msg": "hello"},
                        }
                        for i in range(first, first + 200)
                    ]
                )
        with open(self.base / "logs" / "app.log", "a") as log:
            for i in range(LOG_LINES):
                log.write(f"Nov 26 12:00:00 demo app[42]: user login ok seq={i}\n")
        watched = self.base / "watched"
        (watched / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (watched / "hosts").write_text("127.0.0.1 localhost\n")
        if journal:
            _write_journal(self.journal_id, JOURNAL_LINES)
        threading.Thread(target=self._modify_later, daemon=True).start()
        threading.Thread(target=self._write_group_log, daemon=True).start()

    def _write_group_log(self) -> None:
        # once the agent is in group web (its set-group succeeded): the file it now follows
        _until(self._in_group, 60, "set-group web got no result")
        with open(self.group_log, "a") as log:
            for i in range(GROUP_LINES):
                log.write(
                    f'127.0.0.1 - - [26/Nov/2025:12:00:00 +0000] "{GROUP_MARK}?seq={i}" 200\n'
                )

    def _in_group(self) -> bool:
        return any(
            r.get("code") == 0 and str(r.get("message", "")).startswith("Groups set to web")
            for r in self.admin.results()
        )

    def _modify_later(self) -> None:
        # after the first fim scan saw both files: one update, one delete
        _until(lambda: self.admin.count_events(module="fim") >= 2, 30, "fim saw nothing")
        watched = self.base / "watched"
        # replaced whole, so no scan can see it half written (that would be two updates)
        (watched / "hosts.new").write_text("127.0.0.1 localhost demo\n")
        os.replace(watched / "hosts.new", watched / "hosts")
        (watched / "passwd").unlink()

    def queue_commands(self) -> None:
        commands = [
            ("set-group web", "set-group", {"groups": ["web"]}, 0),
            ("demo.echo", "demo.echo", {"text": "hi"}, 0),
            (
                "firewall-drop (dry run)",
                "active-response.firewall-drop",
                {"command": "add", "dry_run": True, "alert": {"data": {"srcip": AR_ADDRESS}}},
                0,
            ),
            ("set-group with bad args", "set-group", {"groups": 5}, 1),
            ("an action nobody serves", "nosuch.scan", {}, 1),
        ]
        for what, name, args, code in commands:
            [doc] = self.admin.queue_command(
                name=name, agent_id=self.agent_id, args=args, timeout=30
            )
            self.commands[doc] = (what, code)
        say(f"queued {len(commands)} commands on the server (each expects a given code)")

    def seen(self) -> Seen:
        documents: dict[str, list[dict[str, Any]]] = {}
        for d in self.admin.documents():
            if d.get("agent_id") == self.agent_id:
                documents.setdefault(str(d.get("index")), []).append(d)
        return Seen(
            counts={"demo": self.admin.count_events(module="demo")},
            logs=self.admin.events(module="logcollector", limit=100_000),
            fim=self.admin.events(module="fim", limit=100_000),
            documents=documents,
        )

    def watch(self) -> None:
        deadline = time.monotonic() + DEADLINE
        shown = ""
        tty = sys.stdout.isatty()
        while True:
            seen = self.seen()
            counts = [(row, row.count(seen)) for row in self.rows]
            results = self._final_results()
            line = "  ".join(f"{row.key} {got}/{row.expected}" for row, got in counts)
            line += f"  commands {len(results)}/{len(self.commands)}"
            if line != shown:  # a terminal gets one live line, a log one line per change
                print(f"\r  {line}" if tty else f"  {line}", end="" if tty else "\n", flush=True)
                shown = line
            done = all(got >= row.expected for row, got in counts)
            finished = done and len(results) == len(self.commands)
            late = time.monotonic() > deadline
            if (finished or late) and tty:
                print()  # end the live line
            if finished:
                return
            if late:
                say("deadline reached; the summary shows what arrived")
                return
            time.sleep(0.5)

    def _final_results(self) -> dict[str, dict[str, Any]]:
        out = {}
        for r in self.admin.results():
            if r.get("document_id") in self.commands and r.get("code") != 2:
                out[r["document_id"]] = r
        return out

    def summary(self, journal: bool) -> bool:
        failed = 0
        seen = self.seen()
        print(f"\nwhat the server received{'':<30}{'got':>6}{'expected':>10}  verdict")
        for row in self.rows:
            got = row.count(seen)
            mark = verdict(got, row.expected)
            failed += mark != "ok"
            print(f"  {row.label:<51}{got:>6}{row.expected:>10}  {mark}")
        # the server checks documents against its strict index mappings, as a real one does
        stats = self.admin.stats()
        for label, lost in (
            ("documents refused by the index mappings", stats["documents_refused"]),
            ("stateless events swallowed", stats["stateless_swallowed"]),
        ):
            mark = "ok" if lost == 0 else f"{lost} LOST"
            failed += mark != "ok"
            print(f"  {label:<51}{lost:>6}{0:>10}  {mark}")

        print("\nsca: read back from the server's sca documents")
        failed += not self._show_sca(seen.index(SCA_INDEX))
        if not journal:
            print(f"\njournal source: {self._journal_state()}; so no journal row")

        print("\ncommands and their results (read back from the server)")
        results = self._final_results()
        for doc, (what, code) in self.commands.items():
            r = results.get(doc)
            if r is None:
                answer, mark, message = "none", "NO RESULT", ""
            else:
                answer, message = str(r["code"]), str(r.get("message", ""))
                mark = "ok" if r["code"] == code else f"WRONG CODE (expected {code})"
            failed += mark != "ok"
            print(f"  {what:<26}code {answer} (expected {code})  {mark}: {message}")
        print()
        if failed:
            say(f"demo FAILED: {failed} line(s) above not ok; logs in {self.base}")
        else:
            say("demo succeeded: every line above is ok")
        return not failed

    def _show_sca(self, docs: list[dict[str, Any]]) -> bool:
        """Each policy's score, and one failed check with its remediation."""
        if not docs:
            print("  no sca documents: MISSING")
            return False
        by_policy: dict[str, list[dict[str, Any]]] = {}
        for d in docs:
            by_policy.setdefault(d["data"]["policy"]["id"], []).append(d["data"])
        for policy, checks in sorted(by_policy.items()):
            n = {
                r: sum(1 for c in checks if c["check"].get("result") == r)
                for r in ("passed", "failed", "not applicable")
            }
            decided = n["passed"] + n["failed"]
            score = f"{round(100 * n['passed'] / decided)}%" if decided else "none"
            print(
                f"  {policy}: score {score} ({n['passed']} passed, {n['failed']} failed,"
                f" {n['not applicable']} not applicable)"
            )
            bad = sorted(
                (c["check"] for c in checks if c["check"].get("result") == "failed"),
                key=lambda c: str(c["id"]),
            )
            if bad:
                first = bad[0]
                print(f"  a failed check: {first['id']} {first['name']}")
                print(f"    remediation: {first.get('remediation', '(none given)')}")
            else:
                print("  no check failed on this host")
        return True

    def _journal_state(self) -> str:
        """Why the journal is not collected, as the agent's logcollector reports it."""
        from agent.status import collect_status
        from core.config import load_config

        config = load_config(self.config_file, environ={})
        service = collect_status(config)["services"].get("logcollector", {})
        state = service.get("counters", {}).get("sources", {}).get("journald")
        return str(state or "off: journald does not run here")

    def next_steps(self) -> None:
        print()
        if not self.keep:
            print(
                "next: `agentbus demo --keep` leaves all this running and ends with three\n"
                "commands to paste: agent status, send an event, queue a command."
            )
            return
        ab = _agentbus()
        cfg = self.config_file
        server = f"--url {self.url} --data-dir {self.server_dir}"
        print(
            f"""everything keeps running (--keep). Try next:
  {ab} status --config {cfg}
  {ab} send --config {cfg} --module myapp --collector cli '{{"msg": "hi from you"}}'
  {ab} server command {server} --agent {self.agent_id} --name active-response.firewall-drop --args '{{"command": "add", "dry_run": true, "alert": {{"data": {{"srcip": "{AR_ADDRESS}"}}}}}}'
then read back what the server got:
  {ab} server events {server} --module myapp --wait 10
  {ab} server results {server}
more: {ab} config show --origin --config {cfg} | grep group:
      {ab} ar list --config {self.ar_config_file}
logs: {self.base}/agent.log, {self.base}/server.log, {self.base}/active-response.log
stop: kill {self.agent.pid if self.agent else "?"} {self.server.pid if self.server else "?"} {self.active_response.pid if self.active_response else "?"}"""
        )

    def stop_all(self) -> None:
        for proc, name in (
            (self.active_response, "active-response"),
            (self.agent, "agent"),
            (self.server, "server"),
        ):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if name == "agent":
                say(f"agent stopped (exit {code})")


def run_demo(keep: bool = False, directory: str | None = None) -> int:
    from core.config import LogSection
    from core.logs import setup_logging

    setup_logging(LogSection(level="WARNING"), "demo")
    base = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="agentbus-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    say(f"working in {base}")
    return Demo(base, keep).run()


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _admin(url: str, token_file: Path) -> Any:
    from refserver.client import AdminClient

    return AdminClient(url, token_file=token_file)


def _answers(admin: Any) -> bool:
    try:
        admin.health()
        return True
    except Exception:
        return False


def _until(condition: Any, timeout: float, message: str, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise DemoFailed(f"{message} (it exited with {proc.returncode})")
        if time.monotonic() > deadline:
            raise DemoFailed(message)
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}


def _log_path(event: dict[str, Any]) -> str | None:
    """The file a logcollector event came from (None for other sources)."""
    data = event.get("data") or {}
    path = ((data.get("log") or {}).get("file") or {}).get("path")
    return str(path) if path is not None else None


def _write_journal(identifier: str, lines: int) -> None:
    """Entries to the running journald through its native socket (what sd_journal_send
    does): each datagram is one entry of FIELD=value lines."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for i in range(lines):
            entry = (
                f"MESSAGE=demo journal entry seq={i}\nSYSLOG_IDENTIFIER={identifier}\nPRIORITY=6\n"
            )
            sock.sendto(entry.encode(), JOURNAL_SOCKET)


def _agentbus() -> str:
    """How to call agentbus from a shell here: by name when it is on PATH, else by path."""
    import shutil

    beside = Path(sys.executable).parent / "agentbus"
    on_path = shutil.which("agentbus")
    if on_path and beside.exists() and Path(on_path).resolve() == beside.resolve():
        return "agentbus"
    if beside.exists():
        return str(beside)
    return f"{sys.executable} -m agent.main"
