"""`agentbus demo`: the whole system at once, in a temporary directory.

Starts the reference server, enrolls an agent, runs it (forwarder, commander, built-in
executor, logcollector, inventory, fim), feeds it from an example collector and an example
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
from dataclasses import dataclass, field
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
class Expected:
    """What the server must have received before the demo calls it a success."""

    events: dict[str, int] = field(default_factory=dict)
    commands: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (what, code)


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
        self.expected = Expected()

    # -- steps ---------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.start_server()
            config = self.enroll()
            self.start_agent()
            self.start_active_response()
            executor = self.start_example_executor(config)
            self.feed(config)
            self.queue_commands()
            self.watch()
            ok = self.summary()
            executor.stop()
            if self.keep:
                self.explain()
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
                },
                "fim": {"paths": [str(self.base / "watched")], "interval": "2s"},
                "inventory": {"interval": "1h", "collectors": ["system", "hardware", "networks"]},
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

    def feed(self, config: Any) -> None:
        from bus import Publisher

        say(
            f"example collector publishes {EXAMPLE_EVENTS} events; {LOG_LINES} log lines; 3 file changes"
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
        self.expected.events = {
            "demo": EXAMPLE_EVENTS,
            "logcollector": LOG_LINES + GROUP_LINES,
            "fim": 2,
            "inventory": 1,
        }
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

    def _show_group_lines(self) -> bool:
        """The events the server holds from the log file group web added: one line."""
        events = self.admin.events(module="logcollector", limit=100_000)
        got = sum(1 for e in events if GROUP_MARK in str(e))
        mark = "" if got >= GROUP_LINES else "   <-- missing"
        print(f"    of them from the file group web added: {got} of {GROUP_LINES}{mark}")
        return not mark

    def _modify_later(self) -> None:
        # after the first fim scan saw the files: one update, one delete
        _until(lambda: self.admin.count_events(module="fim") >= 2, 30, "fim saw nothing")
        (self.base / "watched" / "hosts").write_text("127.0.0.1 localhost demo\n")
        (self.base / "watched" / "passwd").unlink()
        self.expected.events["fim"] = 4

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
            self.expected.commands[doc] = (what, code)
        say(f"queued {len(commands)} commands on the server")

    def watch(self) -> None:
        deadline = time.monotonic() + DEADLINE
        shown = ""
        tty = sys.stdout.isatty()
        while True:
            counts = {m: self.admin.count_events(module=m) for m in self.expected.events}
            results = self._final_results()
            line = "  ".join(f"{m} {counts[m]}/{n}" for m, n in self.expected.events.items())
            line += f"  commands answered {len(results)}/{len(self.expected.commands)}"
            if line != shown:  # a terminal gets one live line, a log one line per change
                print(f"\r  {line}" if tty else f"  {line}", end="" if tty else "\n", flush=True)
                shown = line
            done = all(counts[m] >= n for m, n in self.expected.events.items())
            finished = done and len(results) == len(self.expected.commands)
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
            if r.get("document_id") in self.expected.commands and r.get("code") != 2:
                out[r["document_id"]] = r
        return out

    def summary(self) -> bool:
        ok = True
        print("\nevents received by the server")
        print(f"  {'module':<14}{'received':>10}{'expected':>10}")
        for module, n in self.expected.events.items():
            got = self.admin.count_events(module=module)
            mark = "" if got >= n else "   <-- missing"
            ok &= got >= n
            print(f"  {module:<14}{got:>10}{n:>10}{mark}")
            if module == "logcollector":
                ok &= self._show_group_lines()
        stats = self.admin.stats()
        refused, swallowed = stats["documents_refused"], stats["stateless_swallowed"]
        stored = len(self.admin.documents())
        mark = "" if refused == 0 and swallowed == 0 else "   <-- the server lost events"
        ok &= not mark
        # the server checks documents against its strict index mappings, as a real one does
        print(
            f"  {stored} documents stored; refused by the index mappings: {refused};"
            f" stateless events swallowed: {swallowed}{mark}"
        )
        print("\ncommands and their results (read back from the server)")
        results = self._final_results()
        for doc, (what, code) in self.expected.commands.items():
            r = results.get(doc)
            got = "no result" if r is None else f"code {r['code']}: {r.get('message', '')}"
            mark = "" if r is not None and r["code"] == code else f"   <-- expected code {code}"
            ok &= not mark
            print(f"  {what:<26}{got}{mark}")
        print()
        say(
            "demo succeeded"
            if ok
            else "demo FAILED: see the marks above and the logs in " + str(self.base)
        )
        return ok

    def explain(self) -> None:
        cfg = self.config_file
        print(
            f"""
everything keeps running (--keep). Look around:
  agentbus status --config {cfg}
  agentbus status --watch --config {cfg}
  agentbus config show --origin --config {cfg} | grep group:
  agentbus server group-file web --show --url {self.url} --data-dir {self.server_dir}
  echo '{{"msg": "hi"}}' | agentbus send --config {cfg} --module demo --collector cli
  agentbus server events --url {self.url} --data-dir {self.server_dir} --module demo | tail -3
  agentbus server command --url {self.url} --data-dir {self.server_dir} --agent {self.agent_id} --name demo.echo --args '{{"text":"yo"}}'
  agentbus server results --url {self.url} --data-dir {self.server_dir}
  agentbus ar list --config {self.ar_config_file}
  agentbus ar run firewall-drop add --arg srcip={AR_ADDRESS} --config {self.ar_config_file}
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
