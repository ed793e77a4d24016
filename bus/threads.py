"""Threads that know which service they work for.

With ``[agent] isolation = "thread"`` every built-in service runs in the agent's one
process, so a log line cannot take its ``[service]`` prefix from the process any more. The
thread that runs a service is marked with :func:`mark_service`, and every thread a service
starts with :func:`start_thread` inherits the mark: core/logs.py reads it with
:func:`current_service` for each line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: thread ident → the service it works for
_SERVICE_OF: dict[int, str] = {}


def current_service() -> str | None:
    """The service the calling thread works for (None: not marked)."""
    return _SERVICE_OF.get(threading.get_ident())


def mark_service(name: str | None) -> None:
    """Mark the calling thread as working for ``name`` (None removes the mark)."""
    if name is None:
        _SERVICE_OF.pop(threading.get_ident(), None)
    else:
        _SERVICE_OF[threading.get_ident()] = name


def start_thread(
    target: Callable[..., Any], name: str, *, daemon: bool = True, **kwargs: Any
) -> threading.Thread:
    """Start ``target(**kwargs)`` in a new thread working for the caller's service."""
    owner = current_service()

    def run() -> None:
        mark_service(owner)
        try:
            target(**kwargs)
        finally:
            mark_service(None)

    thread = threading.Thread(target=run, name=name, daemon=daemon)
    thread.start()
    return thread


class StopEvent(threading.Event):
    """A stop flag that also sets the events a loop waits on (:meth:`also_set`).

    Python cannot wait on two events at once: a loop that waits for "something changed"
    registers its event here, so a stop request wakes it too instead of being noticed on
    the next tick of a timer.
    """

    def __init__(self) -> None:
        super().__init__()
        self._also: list[threading.Event] = []

    def also_set(self, event: threading.Event) -> None:
        """Set ``event`` whenever this one is set (at once, if it already is)."""
        self._also.append(event)
        if self.is_set():
            event.set()

    def set(self) -> None:
        super().set()
        for event in self._also:
            event.set()
