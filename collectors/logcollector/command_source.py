"""Command output as a source (the classic agent's ``command`` / ``full_command``).

Each configured command runs at start and then every ``command_interval``, under the
rules of every command the agent runs (:mod:`collectors.commands`: no shell, a timeout,
a minimal environment, its process group killed). What it prints on standard output
becomes events: one per non-empty line (``commands``), or one for the whole output
(``full_commands``). Output past ``command_max_output`` is cut there (the command is
killed) and flagged truncated; a command that times out, cannot start, or fails without
printing anything sends nothing and is counted by reason (``command_runs``).

Commands run on a worker thread, so a slow command never holds up the files and the
journal; the service's loop sends what they printed. Output is a snapshot, not a stream:
a run whose events were not committed when the agent stopped is not sent again (the
next run at the next start is).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collectors.commands import Output, run_command
from collectors.logcollector.settings import LogcollectorSettings, check_command


@dataclass(slots=True)
class CommandSource:
    """One configured command."""

    command: str
    argv: list[str]
    #: whole output as one event (full_command)
    full: bool
    runs: int = 0
    last_run: float | None = None
    last_error: str = ""
    next_due: float = field(default=0.0)


@dataclass(frozen=True, slots=True)
class Result:
    source: CommandSource
    output: Output
    #: when the command ended (ISO 8601, the events' event.created)
    created: str


def configured_sources(settings: LogcollectorSettings) -> list[CommandSource]:
    key = "collectors.logcollector"
    return [
        CommandSource(c, check_command(c, f"{key}.commands"), False) for c in settings.commands
    ] + [
        CommandSource(c, check_command(c, f"{key}.full_commands"), True)
        for c in settings.full_commands
    ]


def output_lines(output: str) -> list[str]:
    """The non-empty lines of an output (a trailing ``\\r`` dropped, like file lines)."""
    return [line.removesuffix("\r") for line in output.split("\n") if line.strip("\r")]


class CommandRunner:
    """Runs the due commands on a thread; ``results()`` hands their outputs over."""

    def __init__(
        self,
        sources: list[CommandSource],
        settings: LogcollectorSettings,
        stop_event: threading.Event,
        now_iso: Callable[[], str],
    ) -> None:
        self.sources = sources
        self.settings = settings
        self.stop_event = stop_event
        self._now_iso = now_iso
        #: bounded: a loop that cannot send (forwarder full) holds the commands back
        self._results: queue.Queue[Result] = queue.Queue(maxsize=max(1, len(sources)))
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.sources:
            return
        self._thread = threading.Thread(target=self._run, name="logcollector-commands", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def results(self) -> list[Result]:
        out: list[Result] = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        while not self.stop_event.is_set():
            now = time.monotonic()
            for source in self.sources:
                if self.stop_event.is_set():
                    return
                if source.next_due > now:
                    continue
                output = run_command(
                    source.argv,
                    timeout=self.settings.command_timeout,
                    max_output=self.settings.command_max_output,
                    truncate=True,
                )
                source.runs += 1
                source.last_run = time.time()
                source.last_error = output.error
                # The interval counts from the end of a run: a slow command never piles up.
                source.next_due = time.monotonic() + self.settings.command_interval
                result = Result(source, output, self._now_iso())
                while not self.stop_event.is_set():
                    try:
                        self._results.put(result, timeout=0.5)
                        break
                    except queue.Full:
                        continue
            wait = min(s.next_due for s in self.sources) - time.monotonic()
            if wait > 0:
                self.stop_event.wait(wait)
