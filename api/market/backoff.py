"""Reconnect delays: capped exponential growth with "equal jitter". Pure.

Equal jitter keeps a floor under each delay (never a tight loop) while still
spreading clients apart: with ceiling d = min(cap, base * factor**n), the delay is
d * (1 - jitter) plus a uniform draw from [0, d * jitter]. So it always lies in
[d * (1 - jitter), d], never above cap and never negative.
"""

import random
from collections.abc import Iterator


def backoff_delays(
    base: float = 1.0,
    factor: float = 2.0,
    cap: float = 60.0,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """An endless iterator of delays in seconds."""
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    if factor < 1:
        raise ValueError("factor must be at least 1")
    if not 0 <= jitter <= 1:
        raise ValueError("jitter must be within [0, 1]")
    return _delays(base, factor, cap, jitter, rng or random.Random())


def _delays(
    base: float, factor: float, cap: float, jitter: float, rng: random.Random
) -> Iterator[float]:
    ceiling = min(base, cap)
    while True:
        spread = ceiling * jitter
        # min() guards the float sum from landing a hair above the ceiling.
        yield min(ceiling, ceiling - spread + rng.uniform(0.0, spread))
        # Stop multiplying once capped so a long outage cannot overflow.
        if ceiling < cap:
            ceiling = min(cap, ceiling * factor)


class Backoff:
    """Stateful form for a receiver: next() after a failure, reset() after data."""

    def __init__(
        self,
        base: float = 1.0,
        factor: float = 2.0,
        cap: float = 60.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        self._policy = (base, factor, cap, jitter)
        self._rng = rng or random.Random()
        self._delays = backoff_delays(base, factor, cap, jitter, self._rng)
        self.attempts = 0

    def next(self) -> float:
        self.attempts += 1
        return next(self._delays)

    def reset(self) -> None:
        self._delays = backoff_delays(*self._policy, rng=self._rng)
        self.attempts = 0
