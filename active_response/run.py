"""Running one program: its message on stdin, a timeout, an output cap, a clean environment.

The program runs without a shell, in ``/``, in a session of its own (its whole process
group is killed on timeout or when its output passes the cap), with only the environment
below: nothing of the executor's (no credentials, no ``AGENTBUS_*`` settings) but the
facts our programs need, named ``AGENTBUS_AR_*``. Its standard output and error are read
together; the last non-empty line is the result's message.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.processes import kill_group

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_READ = 65536


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended: ``exit_code`` (None when killed or not started), the last output
    line, and ``reason`` when it did not end by itself: timeout, too_large, start_failed."""

    exit_code: int | None
    last_line: str
    reason: str = ""
    seconds: float = 0.0
    #: the end of what it printed (the last 4 KiB at most)
    output: str = ""


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a program: PATH, LC_ALL=C and ``extra`` (AGENTBUS_AR_*)."""
    return {"PATH": PATH, "LC_ALL": "C", **extra}


def run_program(
    path: Path,
    message: bytes,
    *,
    argv: tuple[str, ...] = (),
    timeout: float,
    max_output: int,
    env: Mapping[str, str],
) -> Outcome:
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [str(path), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd="/",
            close_fds=True,
            start_new_session=True,  # its own process group: killed whole
        )
    except OSError as exc:
        why = f"cannot start: {exc.strerror or type(exc).__name__}"
        return Outcome(None, why, "start_failed", output=why)
    assert proc.stdin is not None and proc.stdout is not None
    deadline = started + timeout
    tail = b""
    size = 0
    reason = ""
    pending = message
    os.set_blocking(proc.stdin.fileno(), False)
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stdin, selectors.EVENT_WRITE)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                reason = "timeout"
                break
            events = sel.select(left)
            done = False
            for key, _ in events:
                if key.fileobj is proc.stdin:
                    try:
                        pending = pending[os.write(proc.stdin.fileno(), pending) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending = b""  # it does not read its input: its business
                    if not pending:  # all of it, or the program closed its input: end of input
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(proc.stdout.fileno(), _READ)
                if not chunk:
                    done = True
                    break
                size += len(chunk)
                # only the end is kept: the message is the last line
                tail = (tail + chunk)[-4096:]
                if size > max_output:
                    reason = "too_large"
                    done = True
                    break
            if done:
                break
    if not proc.stdin.closed:
        proc.stdin.close()
    proc.stdout.close()
    if reason:
        kill_group(proc)
        return _outcome(None, tail, reason, started)
    try:
        code = proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return _outcome(None, tail, "timeout", started)
    return _outcome(code, tail, "", started)


def _outcome(code: int | None, tail: bytes, reason: str, started: float) -> Outcome:
    text = tail.decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    return Outcome(code, last, reason, time.monotonic() - started, text)
