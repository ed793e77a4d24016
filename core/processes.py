"""Child processes the agent starts and stops whole (commands, programs, journalctl)."""

from __future__ import annotations

import os
import signal
import subprocess


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group (it was started with its own session) and
    reap it; a group already gone is fine."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
