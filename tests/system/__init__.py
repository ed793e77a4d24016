"""Whole-system reliability tests: the real `agentbus run` against the reference server.

Run them with ``make test-system`` (they are marked ``system`` and left out of ``make
test``). Each test inflicts one fault — kill -9 of each service, a server outage, token
revocations, a slow server, a full disk, corrupt queue files, a hostile local client —
and accounts for every event and command; the figures are printed at the end of the run
and kept in ``bench/RESULTS.md``. Random moments come from ``SYSTEM_SEED`` (default 9):
``SYSTEM_SEED=4 make test-system`` replays another run. The full-disk test mounts a tmpfs
and is skipped, with the reason, where that is not allowed (it needs root).
"""
