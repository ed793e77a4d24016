"""The commander service: long-poll → persist → fan out → collect results → report.

Threads: the *poller* holds the long-poll and stores what arrives; the *reporter* hands
results to the forwarder; the main loop owns every ZeroMQ socket (XPUB commands, PULL
results, an inproc mailbox from the poller) and every command in flight.

The main loop sleeps in ``zmq.Poller.poll`` until a socket has something, or until the
fan-out's next deadline (a republication, a command's timeout); with nothing in flight it
has no timeout at all. New commands and a restart that may go ahead ring the mailbox; a
stop request sets a :class:`bus.sockets.WakeEvent` registered in the same poll.

Start-up recovery (docs/protocol.md, "Commands"): a command stored but never published is published now; a
command that was published or running when the commander stopped gets result 1 "Agent
stopped during execution" — except ``restart``, which gets 0 "Agent restarted", since
being back is what it asked for.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import zmq
from loguru import logger

from bus.control import request as control_request
from bus.errors import BusError, InvalidEvent
from bus.results import ResultCode
from bus.sockets import Binding, WakeEvent, bind, make_socket, poll_ms
from commander import metrics as cm
from commander import results
from commander.command import ServerCommand
from commander.fanout import ExecutorTable, Fanout
from commander.poller import CommandSource, Poller
from commander.reporter import Reporter
from commander.store import CommandStore, OutboxItem
from comms.api import ServerClient, auth_status
from comms.credentials import load_credentials
from comms.tokens import TokenManager
from core.config import Config
from core.logs import RateLimitedLog
from core.service import Service
from core.storage import open_or_move_aside

#: messages read from the results socket per loop turn (keeps deadlines checked under a flood)
RESULTS_PER_TURN = 1000
#: how long the supervisor gets to answer a restart request (seconds)
SUPERVISOR_TIMEOUT = 2.0

STOPPED = "Agent stopped during execution"
RESTARTED = "Agent restarted"


class Commander(Service):
    """Runs the command path of the agent; ``client`` replaces the comms client in tests."""

    name = "commander"
    declared = cm.COMMANDER

    def __init__(self, config: Config, *, client: CommandSource | None = None) -> None:
        super().__init__(config)
        self.client = client
        self.store: CommandStore | None = None
        self.fanout: Fanout | None = None
        self.executors = ExecutorTable.from_config(config, self.metrics)
        self._restart_due = threading.Event()
        self._inbox: queue.Queue[ServerCommand] = queue.Queue()
        self._bindings: list[Binding] = []
        self._mailbox_lock = threading.Lock()
        self._mailbox_push: zmq.Socket | None = None
        self._mailbox_pull: zmq.Socket | None = None
        #: readable once a stop is requested (a signal handler can set it; the main loop
        #: polls it next to its sockets)
        self._stopping: WakeEvent | None = None
        self._rejects = RateLimitedLog(config.bus.reject_log_per_minute)
        self._poller: Poller | None = None
        self._reporter: Reporter | None = None

    # -- lifecycle -------------------------------------------------------------------
    def startup(self) -> None:
        cfg = self.config.commander
        if self.client is None:
            self.client = _server_client(self.config)
        # What is opened is registered on self.resources at once, so a failed start
        # releases exactly that; released last opened, first.
        stack = self.resources
        self.store = self._open_store(self.config.data_dir / "commands.db")
        stack.callback(self._close_store)
        self.store.prune_executed()
        ctx: zmq.Context = zmq.Context.instance()
        opts = self.socket_options
        stack.callback(self._close_sockets)  # whichever of them are open by then
        pub = make_socket(ctx, zmq.XPUB, opts)
        pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # see every subscription, not only the first
        self._bindings.append(bind(pub, self.endpoints.commands, opts))
        self._bindings.append(bind(make_socket(ctx, zmq.PULL, opts), self.endpoints.results, opts))
        address = f"inproc://commander-mailbox-{id(self)}"
        self._mailbox_pull = ctx.socket(zmq.PULL)
        self._mailbox_pull.bind(address)
        self._mailbox_push = ctx.socket(zmq.PUSH)
        self._mailbox_push.connect(address)
        self._stopping = WakeEvent()
        stack.callback(self._stopping.close)
        self.stop_event.also_set(self._stopping)
        self.fanout = Fanout(
            pub,
            self.executors,
            republish_interval=cfg.republish_interval,
            hello_grace=cfg.hello_grace,
        )
        self._recover()
        self._reporter = Reporter(
            self.store,
            self.endpoints.ingest,
            self.metrics,
            self.stop_event,
            max_message_bytes=self.config.bus.max_message_bytes,
            on_delivered=self._delivered,
        )
        self._reporter.start()
        stack.callback(self._join_reporter)
        self._poller = Poller(
            self.client,
            self.store,
            self.metrics,
            self.stop_event,
            self._deliver,
            request_timeout=cfg.request_timeout,
            command_timeout=cfg.command_timeout,
            backoff_initial=cfg.backoff_initial,
            backoff_max=cfg.backoff_max,
            on_answered=self._wake_reporter,
            # the server's final refusal (exit 3): the one fatal path of every service
            on_fatal=self.fail,
        )
        self._poller.start()
        stack.callback(self._end_long_poll)

    def _open_store(self, path: Path) -> CommandStore:
        """Open commands.db; a corrupt file is moved aside and a fresh one started.

        A file SQLite cannot read would otherwise stop the commander at every start, and
        with it every command for this host. The commands it held get no result from this
        agent; the file is kept next to the new one for a post-mortem.
        """
        return open_or_move_aside(
            path, lambda: CommandStore(path), on_moved_aside=self._store_moved_aside
        )

    def _store_moved_aside(self, message: str) -> None:
        logger.error("commander: {}", message)
        self.metrics.inc(cm.STORES_MOVED_ASIDE)
        self.metrics.fact("store_errors", [message])
        self.metrics.error(message)

    def main_loop(self) -> None:
        assert self.fanout is not None and self._mailbox_pull is not None
        assert self._stopping is not None
        pub, pull = self.fanout.sock, self._bindings[1].sock
        poller = zmq.Poller()
        for sock in (pub, pull, self._mailbox_pull):
            poller.register(sock, zmq.POLLIN)
        poller.register(self._stopping, zmq.POLLIN)
        while not self.stop_event.is_set():
            # Until a socket, the mailbox or a stop request, or the fan-out's next deadline.
            ready = dict(poller.poll(poll_ms(self.fanout.next_wakeup())))
            if self._mailbox_pull in ready:
                self._take_inbox()
            if pub in ready:
                while pub.poll(0):
                    self.fanout.on_subscription(pub.recv())
            if pull in ready:
                self._take_results(pull)
            self._tick()
            if self._restart_due.is_set():
                self._restart_due.clear()
                self._restart()

    # Stopping: everything startup() opened is on self.resources (no shutdown() of its own).
    def _join_reporter(self) -> None:
        assert self._reporter is not None
        self._reporter.join(max(0.0, self.stop_deadline - time.monotonic()))

    def _end_long_poll(self) -> None:
        """Stopping: end the poller's long-poll now rather than when the server answers.

        Left behind, the poller could take commands from the server after its service
        stopped: in the agent's one process ([agent] isolation = "thread") the next run
        would never see them.
        """
        poller = self._poller
        abort = getattr(self.client, "abort", None)
        while poller is not None and poller.alive and time.monotonic() < self.stop_deadline:
            if abort is not None:
                abort()  # again while it lives: a call may have begun after the last one
            poller.join(0.1)

    def _close_store(self) -> None:
        if self.store is not None and not (self._poller is not None and self._poller.alive):
            # A poller still inside its long-poll may yet store a command: leave the file
            # open for it (SQLite is crash-safe; the process exit closes it).
            self.store.close()

    def status(self) -> dict[str, Any]:
        m = self.metrics
        live = self.executors.live()
        m.set(cm.LIVE_EXECUTORS, len(live))
        if self.fanout is not None:
            m.set(cm.IN_FLIGHT, len(self.fanout.flights))
            m.set(cm.PUBLICATIONS, self.fanout.publications)
        if self.store is not None:
            counts = self.store.counts()
            m.set_many(cm.STORED, counts["stored"])
            m.set(cm.OUTBOX, counts["outbox"])
            m.set(cm.EXECUTED_REMEMBERED, counts["executed_remembered"])
        out = super().status()
        out["pid"] = os.getpid()
        out["executors"] = live
        # how authentication goes: a poller backing off on a server hiccup looks the same
        # as an idle one otherwise
        auth = auth_status(self.client)
        if auth is not None:
            out["auth"] = auth
        return out

    # -- start-up recovery -----------------------------------------------------------
    def _recover(self) -> None:
        assert self.store is not None and self.fanout is not None
        answered = 0
        for item in self.store.in_flight():
            cmd = item.command
            if item.state == "received":
                self.fanout.add(cmd)
                logger.info(
                    "commander: {} ({}) was never published; publishing it",
                    cmd.name,
                    cmd.document_id,
                )
                continue
            code, message = (
                (ResultCode.SUCCESS, RESTARTED)
                if cmd.name == "restart"
                else (ResultCode.FAILURE, STOPPED)
            )
            self.store.report(cmd.document_id, code, message)
            self.metrics.inc(cm.EXECUTED, code=int(code))
            answered += 1
            logger.info("commander: {} ({}) → {} {!r}", cmd.name, cmd.document_id, code, message)
        if answered:
            logger.info("commander: answered {} command(s) left over from the last run", answered)

    # -- the main loop's steps -------------------------------------------------------
    def _deliver(self, commands: list[ServerCommand]) -> None:
        """Called by the poller thread with newly stored commands."""
        for cmd in commands:
            self._inbox.put(cmd)
        self._wake_main()

    def _wake_main(self) -> None:
        """Wake the main loop from its poll (the poller and reporter threads)."""
        with self._mailbox_lock:
            if self._mailbox_push is not None:
                try:
                    self._mailbox_push.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # the main loop has wake-ups queued already

    def _take_inbox(self) -> None:
        assert self.fanout is not None and self._mailbox_pull is not None
        while self._mailbox_pull.poll(0):
            self._mailbox_pull.recv()
        while True:
            try:
                cmd = self._inbox.get_nowait()
            except queue.Empty:
                return
            self.fanout.add(cmd)

    def _take_results(self, pull: zmq.Socket) -> None:
        for _ in range(RESULTS_PER_TURN):
            if not pull.poll(0):
                return
            frames = pull.recv_multipart()
            try:
                message = results.parse(frames, self.config.bus.max_message_bytes)
            except InvalidEvent as exc:
                self.metrics.inc(cm.BAD_INPUT, reason=exc.reason)
                self._rejects.warning(
                    exc.reason, "commander: rejected a message on the results socket: {}", exc
                )
                continue
            self._handle(message)

    def _handle(self, message: results.Message) -> None:
        assert self.fanout is not None and self.store is not None
        if isinstance(message, results.Hello):
            self.metrics.inc(cm.HELLOS)
            new = self.executors.hello(message)
            if new:
                logger.info("commander: executor {} serves {}", message.executor, ", ".join(new))
                self.fanout.on_live(new)
            return
        flight = self.fanout.flights.get(message.id)
        if flight is None:
            # A late answer (the command already timed out) or a stray id: nothing to do.
            kind = "acks" if isinstance(message, results.Ack) else "results"
            self.metrics.inc(cm.UNKNOWN, kind=kind)
            self._rejects.warning(
                "unknown_id", "commander: {} for a command not in flight: {}", kind, message.id
            )
            return
        if isinstance(message, results.Ack):
            if not flight.acked:
                self.fanout.ack(message.id)
                self.metrics.inc(cm.COMMANDS_ACKED)
                self.store.set_state(message.id, "acked")
            return
        cmd = flight.command
        if message.code == ResultCode.IN_PROGRESS:
            self.store.report(cmd.document_id, message.code, message.message, final=False)
            self.metrics.inc(cm.PROGRESS_REPORTS)
            if cmd.name == "restart":
                # The agent restarts once this report is with the forwarder (_delivered).
                self.fanout.remove(cmd.document_id)
                logger.info("commander: restart ({}) in progress", cmd.document_id)
            else:
                flight.acked = flight.progress = True
        else:
            self.fanout.remove(cmd.document_id)
            self.store.report(cmd.document_id, message.code, message.message)
            self.metrics.inc(cm.EXECUTED, code=int(message.code))
            logger.info(
                "commander: {} ({}) → {} {!r}",
                cmd.name,
                cmd.document_id,
                message.code,
                message.message,
            )
        self._wake_reporter()

    def _tick(self) -> None:
        assert self.fanout is not None and self.store is not None
        first, verdicts = self.fanout.tick()
        for flight in first:
            self.metrics.inc(cm.COMMANDS_PUBLISHED)
            if not flight.acked:  # an ack may already have come in
                self.store.set_state(flight.command.document_id, "published")
        for v in verdicts:
            self.store.report(v.document_id, v.code, v.message)
            self.metrics.inc(cm.EXECUTED, code=int(v.code))
            self.metrics.inc(cm.VERDICTS, reason=v.reason)
            if v.code == ResultCode.TIMEOUT:
                self.metrics.inc(cm.TIMED_OUT)
            logger.warning("commander: {} → {} {!r}", v.document_id, v.code, v.message)
        if verdicts:
            self._wake_reporter()

    def _wake_reporter(self) -> None:
        if self._reporter is not None:
            self._reporter.wake()

    # -- restart ---------------------------------------------------------------------
    def _delivered(self, items: list[OutboxItem]) -> None:
        """Reporter thread: results are with the forwarder; a restart may go ahead now."""
        if any(
            i.name == "restart" and i.code == ResultCode.IN_PROGRESS and not i.final for i in items
        ):
            self._restart_due.set()
            self._wake_main()

    def _restart(self) -> None:
        """Ask the supervisor to restart the agent; without one, re-execute this process."""
        endpoint = self.endpoints.admin("agent")  # restart: the supervisor's admin socket
        try:
            reply = control_request(endpoint, {"cmd": "restart"}, timeout=SUPERVISOR_TIMEOUT)
        except BusError as exc:
            reply = {"ok": False, "error": str(exc)}
        if reply.get("ok"):
            logger.info("commander: the supervisor is restarting the agent")
            return
        logger.info(
            "commander: no supervisor restarted the agent ({}); restarting the commander",
            reply.get("error"),
        )
        self.reexec_requested = True
        self.request_stop()

    def _close_sockets(self) -> None:
        with self._mailbox_lock:
            for sock in (self._mailbox_push, self._mailbox_pull):
                if sock is not None:
                    sock.close(linger=0)
            self._mailbox_push = self._mailbox_pull = None
        for binding in self._bindings:
            binding.close(linger_ms=self.socket_options.linger_ms)
        self._bindings.clear()


def _server_client(config: Config) -> CommandSource:
    """The comms client of this agent (loads the credentials: NotEnrolled if there are none)."""
    credentials = load_credentials(config.data_dir)
    return ServerClient(config, TokenManager(config, credentials))
