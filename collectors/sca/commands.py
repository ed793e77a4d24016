"""The command runner of ``c:`` rules: :mod:`collectors.commands`, shared with the
logcollector's command sources (the same rules for every command the agent runs)."""

from __future__ import annotations

from collectors.commands import ENV, SHELL, Output, needs_shell, run_command

__all__ = ["ENV", "SHELL", "Output", "needs_shell", "run_command"]
