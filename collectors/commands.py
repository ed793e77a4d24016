"""Running a configured command: no shell, a timeout, a cap on its output.

A command named by a policy (sca ``c:`` rules) or by the configuration (the
logcollector's command sources) runs as the agent, so it runs with as little as possible:
split with :func:`shlex.split` and executed directly (no shell to interpret what its
author did not mean), as the agent's own user, with an empty standard input, a minimal
environment (``PATH``, ``LC_ALL=C`` so that output is not translated), in a new session
whose whole process group is killed on timeout or when the output passes its cap. Only a
policy of a trusted directory, with ``allow_shell_commands``, may run a command through
``/bin/sh -c`` (collectors.sca.policy decides); the logcollector refuses such commands.

:func:`needs_shell` says whether a command line needs a shell — or starts one that would
read a line of the policy's text as shell code:

- shell syntax outside quotes: operators, redirections, globs, ``$``/backquote
  expansions, ``~``, a ``VAR=value`` prefix;
- a shell (``SHELLS``: sh, bash, dash, zsh, ksh, mksh, ash, hush, yash, posh, rbash,
  fish, csh, tcsh, by the base name of argv[0]) given a command to run: an option cluster
  with ``c`` (``-c``, ``-ec``, ``-xc``), or fish's ``--command``/``--init-command``/``-C``.
  A shell given a script file (``sh /usr/lib/x/check``) runs that file: allowed;
- ``busybox APPLET ...`` is read as ``APPLET ...`` (``busybox sh -c``);
- a wrapper that runs another command (``WRAPPERS``: env, nice, nohup, timeout, stdbuf,
  xargs, find, setsid, ionice, chrt, taskset, flock, chroot, unshare, nsenter, sudo,
  doas, time, strace, ltrace, parallel, systemd-run, prlimit...) with a shell anywhere in its
  arguments — any word of any argument whose base name is in ``SHELLS``
  (``env -i sh -c``, ``timeout 5 bash -ec``, ``find / -exec sh -c``,
  ``env -S 'sh -c x'``), even without ``-c``: what the wrapper will pass it is not read
  here, so it is refused rather than guessed;
- a command that always runs its argument through a shell (``SHELL_RUNNERS``: su,
  runuser, watch, script).

This is a guard against shell code in a policy, not a sandbox: an interpreter
(``python3 -c``, ``perl -e``, ``awk``) runs code of its own, and whatever a policy runs
runs as the agent — which is why policies are loaded only from trusted files
(collectors.sca.trust).

What is read is standard output. A command that exits non-zero is still judged on what it
printed (``systemctl is-enabled x`` prints ``disabled`` and exits 1); one that printed
nothing and failed, could not be started, timed out or printed too much gives no answer
(``error`` says why) — unless the caller asked for ``truncate``: then output past the cap
is cut there, the command killed, and what it printed up to the cap is the answer.
"""

from __future__ import annotations

import os
import selectors
import shlex
import subprocess
import time
from dataclasses import dataclass

from core.processes import kill_group

#: the environment of every command
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
SHELL = "/bin/sh"
_READ = 65536
#: characters that only mean something to a shell (outside quotes)
_SHELL_CHARS = set("|&;<>()$`*?[]{}~\n")
#: shells, by base name: given ``-c`` they run the policy's text as shell code
SHELLS = frozenset(
    (
        "sh",
        "bash",
        "rbash",
        "dash",
        "zsh",
        "ksh",
        "mksh",
        "pdksh",
        "ash",
        "hush",
        "yash",
        "posh",
        "fish",
        "csh",
        "tcsh",
    )
)
#: commands that run another command named in their arguments: refused when one of their
#: arguments names a shell
WRAPPERS = frozenset(
    (
        "env",
        "nice",
        "nohup",
        "timeout",
        "stdbuf",
        "xargs",
        "find",
        "setsid",
        "ionice",
        "chrt",
        "taskset",
        "flock",
        "chroot",
        "unshare",
        "nsenter",
        "sudo",
        "doas",
        "time",
        "strace",
        "ltrace",
        "parallel",
        "exec",
        "command",
        "builtin",
        "cgexec",
        "systemd-run",
        "prlimit",
        "numactl",
        "setpriv",
        "capsh",
        "faketime",
        "sg",
        "newgrp",
    )
)
#: commands that run their argument through a shell themselves
SHELL_RUNNERS = frozenset(("su", "runuser", "watch", "script"))


def needs_shell(command: str) -> bool:
    """Whether ``command`` uses shell syntax: operators, globs, expansions, assignments.

    Characters inside single or double quotes are the argument's own (``grep 'a|b' f``
    needs no shell); ``$`` and backquotes expand even inside double quotes.
    """
    quote = ""
    escaped = False
    for c in command:
        if escaped:
            escaped = False
        elif quote == "'":
            if c == "'":
                quote = ""
        elif quote == '"':
            if c == '"':
                quote = ""
            elif c in "$`":
                return True
            elif c == "\\":
                escaped = True
        elif c == "\\":
            escaped = True
        elif c in "'\"":
            quote = c
        elif c in _SHELL_CHARS:
            return True
    first = command.split(None, 1)[0] if command.split() else ""
    # VAR=value command: an assignment for the shell
    if "=" in first and first.split("=", 1)[0].isidentifier():
        return True
    try:
        argv = shlex.split(command)
    except ValueError:
        return False  # not a command line at all: the caller refuses it when splitting
    return starts_shell(argv)


def starts_shell(argv: list[str] | tuple[str, ...]) -> bool:
    """Whether running ``argv`` starts a shell that runs code given on the command line
    (see the module's docstring)."""
    while argv and os.path.basename(argv[0]) == "busybox":
        argv = argv[1:]  # busybox APPLET ARGS is the applet
    if not argv:
        return False
    name = os.path.basename(argv[0])
    if name in SHELL_RUNNERS:
        return True
    if name in SHELLS:
        return any(_runs_code(name, arg) for arg in argv[1:])
    if name in WRAPPERS:
        # any word of any argument: "env -S 'sh -c x'", "find / -exec sh -c x {} ;"
        return any(os.path.basename(word) in SHELLS for arg in argv[1:] for word in arg.split())
    return False


def _runs_code(shell: str, arg: str) -> bool:
    """Whether the option ``arg`` of ``shell`` gives it code to run."""
    if shell == "fish" and (
        arg.startswith(("--command", "--init-command")) or (arg[:1] == "-" and "C" in arg)
    ):
        return True
    # a cluster of short options: -c, -ec, -xec, +ec
    return len(arg) > 1 and arg[0] in "-+" and arg[1] != "-" and "c" in arg[1:]


@dataclass(frozen=True, slots=True)
class Output:
    """What a command printed, or why there is no answer (``error``)."""

    stdout: str = ""
    exit_code: int | None = None
    error: str = ""
    #: why there is no answer, as a word to count by: not_found, not_executable,
    #: start_failed, timeout, too_large, failed
    reason: str = ""
    #: the output passed the cap and was cut there (only with ``truncate``)
    truncated: bool = False


def run_command(
    argv: list[str] | tuple[str, ...],
    *,
    timeout: float,
    max_output: int,
    shell: bool = False,
    truncate: bool = False,
) -> Output:
    """Run one command and collect its standard output (see the module's docstring)."""
    args = [SHELL, "-c", argv[0]] if shell else list(argv)
    shown = argv[0] if shell else " ".join(argv)
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=ENV,
            cwd="/",
            close_fds=True,
            start_new_session=True,  # its own process group: killed whole
        )
    except FileNotFoundError:
        return Output(error=f"command not found: {args[0]}", reason="not_found")
    except PermissionError:
        return Output(error=f"command cannot be executed: {args[0]}", reason="not_executable")
    except OSError as exc:
        return Output(
            error=f"command could not start: {args[0]}: {exc.strerror or exc}",
            reason="start_failed",
        )
    assert proc.stdout is not None
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout
    problem = reason = ""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                problem = f"command timed out after {timeout:g}s: {shown}"
                reason = "timeout"
                break
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), _READ)
            if not chunk:
                break
            size += len(chunk)
            if size > max_output:
                if truncate:
                    chunks.append(chunk[: len(chunk) - (size - max_output)])
                problem = f"command printed more than {max_output} bytes: {shown}"
                reason = "too_large"
                break
            chunks.append(chunk)
    proc.stdout.close()
    if problem:
        kill_group(proc)
        if truncate and reason == "too_large":
            return Output(b"".join(chunks).decode("utf-8", "replace"), truncated=True)
        return Output(error=problem, reason=reason)
    # Output closed: the command is ending (or passed its stdout on to a child, which
    # the deadline still bounds).
    try:
        code = proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return Output(error=f"command timed out after {timeout:g}s: {shown}", reason="timeout")
    stdout = b"".join(chunks).decode("utf-8", "replace")
    if code != 0 and not stdout.strip():
        return Output(
            exit_code=code,
            error=f"command failed (exit {code}) with no output: {shown}",
            reason="failed",
        )
    return Output(stdout, code)
