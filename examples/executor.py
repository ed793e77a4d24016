#!/usr/bin/env python3
"""A complete executor: serve the server actions ``example.disk-usage`` and ``example.echo``.

Run it next to the agent (``AGENTBUS_AGENT_RUN_DIR`` names the agent's run dir when it is
not ``/run/agentbus``). The commander publishes every command whose name starts with
``example.`` on the topic ``example``; this script acknowledges it, runs the handler and
pushes ``(code, message)`` back, which the agent reports to the server.
"""

import shutil

from bus import Executor
from bus.executor import InvalidCommand

executor = Executor(["example"], name="example-executor")


@executor.handler("disk-usage")  # server action "example.disk-usage", args {"path": "/var"}
def disk_usage(command):
    path = command.args.get("path", "/")
    if not isinstance(path, str):
        raise InvalidCommand("Command is not valid: args.path must be a string")
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return 1, f"cannot read {path}: {exc.strerror}"
    return 0, f"{path}: {usage.used * 100 // usage.total}% used, {usage.free // 2**20} MiB free"


@executor.handler("echo")  # a handler may return just a message: code 0
def echo(command):
    return str(command.args.get("text", ""))


if __name__ == "__main__":
    executor.run()  # until SIGTERM / Ctrl-C
