"""The one back-off rule of the agent: how long to wait after the n-th failure in a row.

Every retry loop (forwarder senders, commander poller and reporter, token renewal,
collectors' acknowledged sends, the supervisor's restarts) computes its delay with
:func:`compute_backoff`; each keeps only its own parameters and its own loop.

The delay grows exponentially: its *ceiling* is ``initial * 2 ** (attempts - 1)``, capped at
``maximum``. The jitter mode decides where in that ceiling the delay falls:

- ``"full"`` — uniform in ``[0, ceiling)``. For network retries: many agents that lost the
  same server do not come back in step (AWS's "full jitter"). A delay may be near zero,
  which is fine where something else bounds the rate (one probe at a time, a timeout).
- ``"equal"`` — ``ceiling / 2`` plus uniform in ``[0, ceiling / 2)``. Still spreads retries
  out, but always waits at least half the ceiling: for loops where a near-zero delay would
  retry at once against a peer that just said no.
- ``"none"`` — exactly the ceiling. Where there is nobody to spread out from (one local
  peer) or a near-zero delay would make a tight loop (restarting a crashed service).

``retry_after`` (a server's Retry-After, or a hint of the same meaning) is a floor: the
delay is never shorter, but the hint itself is capped at ``max_retry_after`` so a broken
server cannot park us for days.

Modelled on dramatiq's ``compute_backoff``; pure except for the random draw, which a
test replaces through ``rng`` (a function returning a float in ``[0, 1)``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Literal

Jitter = Literal["full", "equal", "none"]

#: the exponent stops growing here (2**62 times any sane initial delay is past any cap)
_MAX_EXPONENT = 62


def compute_backoff(
    attempts: int,
    *,
    initial: float,
    maximum: float,
    jitter: Jitter,
    retry_after: float | None = None,
    max_retry_after: float = math.inf,
    rng: Callable[[], float] | None = None,
) -> float:
    """Seconds to wait after ``attempts`` failures in a row (1 = the first failure).

    :param initial: the ceiling after the first failure; it doubles with each further one.
    :param maximum: the ceiling never grows past this.
    :param jitter: ``"full"``, ``"equal"`` or ``"none"`` (see the module documentation).
    :param retry_after: a floor for the delay (ignored when None or not positive), itself
        capped at ``max_retry_after``.
    :param rng: the random source (floats in ``[0, 1)``); ``random.random`` when None.
    """
    draw = random.random if rng is None else rng
    ceiling = min(maximum, initial * 2 ** min(max(attempts - 1, 0), _MAX_EXPONENT))
    if jitter == "full":
        delay = ceiling * draw()
    elif jitter == "equal":
        delay = ceiling / 2 + ceiling / 2 * draw()
    elif jitter == "none":
        delay = ceiling
    else:
        raise ValueError(f"unknown jitter mode {jitter!r}")
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay
