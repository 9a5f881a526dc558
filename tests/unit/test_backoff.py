import random
from itertools import islice

import pytest

from api.market.backoff import Backoff, backoff_delays


class Fixed(random.Random):
    """uniform(a, b) returns the point at `fraction` of the interval."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def first(n: int, **kwargs) -> list[float]:
    return list(islice(backoff_delays(**kwargs), n))


def test_it_grows_exponentially_without_jitter():
    assert first(5, base=1.0, factor=2.0, cap=60.0, jitter=0.0) == [1, 2, 4, 8, 16]


def test_it_stops_at_the_cap():
    assert first(9, base=1.0, factor=2.0, cap=60.0, jitter=0.0) == [
        1,
        2,
        4,
        8,
        16,
        32,
        60,
        60,
        60,
    ]


def test_it_stays_capped_forever_without_overflow():
    delays = backoff_delays(base=1.0, factor=10.0, cap=5.0, jitter=0.0)
    assert list(islice(delays, 2000))[-1] == 5.0


def test_equal_jitter_spans_the_upper_half_of_each_step():
    # jitter 0.5: delay = d/2 + uniform(0, d/2) with d = 1, 2, 4, 8
    low = first(4, jitter=0.5, rng=Fixed(0.0))
    high = first(4, jitter=0.5, rng=Fixed(1.0))
    mid = first(4, jitter=0.5, rng=Fixed(0.5))
    assert low == [0.5, 1.0, 2.0, 4.0]
    assert high == [1.0, 2.0, 4.0, 8.0]
    assert mid == [0.75, 1.5, 3.0, 6.0]


def test_full_jitter_can_reach_zero_but_not_below():
    assert first(3, jitter=1.0, rng=Fixed(0.0)) == [0.0, 0.0, 0.0]


def test_random_delays_stay_within_bounds():
    delays = first(
        200, base=0.5, factor=3.0, cap=30.0, jitter=0.7, rng=random.Random(1)
    )
    ceiling = 0.5
    for delay in delays:
        assert ceiling * 0.3 - 1e-12 <= delay <= ceiling
        ceiling = min(30.0, ceiling * 3.0)
    assert max(delays) <= 30.0


def test_the_same_seed_gives_the_same_delays():
    assert first(10, rng=random.Random(5)) == first(10, rng=random.Random(5))


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1}, {"cap": -1}, {"factor": 0.5}, {"jitter": -0.1}, {"jitter": 1.5}],
)
def test_it_rejects_nonsense_settings(kwargs):
    with pytest.raises(ValueError):
        backoff_delays(**kwargs)


def test_backoff_counts_attempts_and_restarts_after_reset():
    backoff = Backoff(base=1.0, factor=2.0, cap=10.0, jitter=0.0)
    assert [backoff.next() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.attempts == 0
    assert [backoff.next() for _ in range(2)] == [1, 2]


def test_backoff_uses_the_given_rng():
    backoff = Backoff(jitter=0.5, rng=Fixed(1.0))
    assert [backoff.next() for _ in range(3)] == [1.0, 2.0, 4.0]
