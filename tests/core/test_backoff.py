"""core.backoff.compute_backoff: pure, with an injected random source."""

from __future__ import annotations

import random

import pytest

from core.backoff import compute_backoff


def delays(n: int, **kw: object) -> list[float]:
    return [compute_backoff(a, **kw) for a in range(1, n + 1)]  # type: ignore[arg-type]


def test_no_jitter_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    assert delays(7, initial=1.0, maximum=30.0, jitter="none") == [1, 2, 4, 8, 16, 30, 30]
    assert delays(3, initial=0.2, maximum=5.0, jitter="none") == [0.2, 0.4, 0.8]


def test_full_jitter_is_uniform_between_zero_and_the_ceiling() -> None:
    assert delays(5, initial=1.0, maximum=8.0, jitter="full", rng=lambda: 0.0) == [0.0] * 5
    assert delays(5, initial=1.0, maximum=8.0, jitter="full", rng=lambda: 0.5) == [
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
    ]


def test_equal_jitter_waits_at_least_half_the_ceiling() -> None:
    low = delays(4, initial=0.1, maximum=0.4, jitter="equal", rng=lambda: 0.0)
    high = delays(4, initial=0.1, maximum=0.4, jitter="equal", rng=lambda: 0.999999)
    assert low == pytest.approx([0.05, 0.1, 0.2, 0.2])
    assert high == pytest.approx([0.1, 0.2, 0.4, 0.4], rel=1e-5)


def test_equal_jitter_draws_what_random_uniform_over_the_upper_half_draws() -> None:
    # The commander's poller used random.uniform(ceiling / 2, ceiling): same numbers.
    for attempt in range(1, 10):
        ceiling = min(60.0, 1.0 * 2 ** (attempt - 1))
        expected = random.Random(attempt).uniform(ceiling / 2, ceiling)
        draw = random.Random(attempt).random
        got = compute_backoff(attempt, initial=1.0, maximum=60.0, jitter="equal", rng=draw)
        assert got == expected


@pytest.mark.parametrize("jitter", ["full", "equal", "none"])
def test_retry_after_is_a_floor_capped_by_max_retry_after(jitter: str) -> None:
    kw = {"initial": 1.0, "maximum": 8.0, "jitter": jitter, "rng": lambda: 1.0}
    assert compute_backoff(1, retry_after=30.0, **kw) == 30.0  # type: ignore[arg-type]
    assert compute_backoff(1, retry_after=30.0, max_retry_after=20.0, **kw) == 20.0  # type: ignore[arg-type]
    # a shorter hint does not shorten the back-off; 0, negative and None are no hint
    for hint in (0.5, 0.0, -3.0, None):
        assert compute_backoff(4, retry_after=hint, **kw) == 8.0  # type: ignore[arg-type]


def test_huge_attempt_counts_stay_at_the_cap() -> None:
    assert compute_backoff(10_000, initial=1.0, maximum=60.0, jitter="none") == 60.0
    assert compute_backoff(0, initial=1.0, maximum=60.0, jitter="none") == 1.0


def test_the_default_random_source_stays_within_the_ceiling() -> None:
    for attempt in range(1, 20):
        full = compute_backoff(attempt, initial=0.5, maximum=10.0, jitter="full")
        equal = compute_backoff(attempt, initial=0.5, maximum=10.0, jitter="equal")
        ceiling = min(10.0, 0.5 * 2 ** (attempt - 1))
        assert 0.0 <= full <= ceiling
        assert ceiling / 2 <= equal <= ceiling


def test_an_unknown_jitter_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown jitter mode"):
        compute_backoff(1, initial=1.0, maximum=2.0, jitter="half")  # type: ignore[arg-type]
