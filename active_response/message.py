"""The message a program reads on its standard input: the classic agent's JSON message.

One JSON object, then end of input (docs/active-response.md)::

    {"version": 1,
     "origin": {"name": "<command id>", "module": "agentbus-active-response"},
     "command": "add" | "delete",
     "parameters": {"extra_args": [...], "alert": {...}, "program": "<name>"}}

What the command's ``args`` give: ``command`` (``add`` by default), ``extra_args`` (a list
of strings) and ``alert`` (the alert that triggered the response: an object, ``{}`` when
none). ``timeout`` (a timed response) and ``dry_run`` are for the executor and are not
passed. The automatic ``delete`` of a timed response carries the same parameters as its
``add``, with origin name ``timeout``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
MODULE = "agentbus-active-response"
COMMANDS = ("add", "delete")
#: the origin name of the automatic delete of a timed response
TIMEOUT_ORIGIN = "timeout"


class BadArgs(ValueError):
    """The command's arguments cannot make a message; the text says which one."""


@dataclass(frozen=True, slots=True)
class Request:
    """What a command asks of one program."""

    program: str
    command: str = "add"
    extra_args: list[str] = field(default_factory=list)
    alert: dict[str, Any] = field(default_factory=dict)
    #: seconds until the automatic delete (a timed add); 0 = none
    timeout: float = 0.0
    dry_run: bool = False

    @property
    def key(self) -> str:
        """What identifies the response in force: the program and what it acted on."""
        return json.dumps([self.program, self.extra_args, self.alert], sort_keys=True, default=str)


def request_from_args(program: str, args: dict[str, Any]) -> Request:
    """A :class:`Request` from a command's ``args``; BadArgs names what is wrong."""
    command = args.get("command", "add")
    if command not in COMMANDS:
        raise BadArgs(f"args.command must be add or delete, not {str(command)[:40]!r}")
    extra = args.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise BadArgs("args.extra_args must be a list of strings")
    alert = args.get("alert", {})
    if not isinstance(alert, dict):
        raise BadArgs("args.alert must be an object")
    timeout = args.get("timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
        raise BadArgs("args.timeout must be a number of seconds")
    if timeout and command != "add":
        raise BadArgs("args.timeout is for add only (the delete it schedules)")
    dry_run = args.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadArgs("args.dry_run must be true or false")
    return Request(program, command, list(extra), dict(alert), float(timeout), dry_run)


def build(request: Request, origin: str, command: str | None = None) -> bytes:
    """The message for ``request`` (its ``command`` unless another is given), UTF-8 JSON
    ending with a newline."""
    message = {
        "version": VERSION,
        "origin": {"name": origin, "module": MODULE},
        "command": command or request.command,
        "parameters": {
            "extra_args": request.extra_args,
            "alert": request.alert,
            "program": request.program,
        },
    }
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()
