"""Pure sentiment formulas: no I/O, no clock, no threads.

Every time is an epoch-seconds float passed in by the caller, so each formula can be
tested on literals. "Unknown" is None, never 0: a missing input must not pull the
composite towards neutral.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# (upper bound of |polarity|, impact) — the first bound above |polarity| wins.
IMPACT_TIERS: tuple[tuple[float, float], ...] = (
    (0.2, 0.0),
    (0.4, 2.0),
    (0.6, 5.0),
    (0.8, 15.0),
)
MAX_IMPACT = 25.0
DECAY_PER_MINUTE = 0.0383
SCORE_LIMIT = 100.0
MOMENTUM_POINTS_PER_PERCENT = 15.0
SMOOTHING_PREVIOUS = 0.8
DEFAULT_WEIGHTS = (0.45, 0.30, 0.25)


@dataclass(frozen=True)
class Article:
    url: str
    published_at: float  # epoch seconds
    polarity: float  # -1..+1
    title: str = ""


@dataclass(frozen=True)
class Scores:
    composite: float | None
    news: float | None
    technical: float | None
    flow: float | None
    computed_at: float


def clip(value: float, limit: float = SCORE_LIMIT) -> float:
    return max(-limit, min(limit, value))


def article_impact(polarity: float | None) -> float:
    """Tiered impact of one article. A None or non-finite polarity carries no
    information, so it has impact 0 rather than raising in the scoring loop."""
    if polarity is None or not math.isfinite(polarity):
        return 0.0
    magnitude = abs(polarity)
    impact = MAX_IMPACT
    for bound, tier_impact in IMPACT_TIERS:
        if magnitude < bound:
            impact = tier_impact
            break
    return math.copysign(impact, polarity) if impact else 0.0


def decayed_impact(impact: float, age_seconds: float) -> float:
    """Impact after `age_seconds`, decaying 3.83 % per minute in continuous time.
    A negative age (clock skew between us and the publisher) counts as 0."""
    age = max(0.0, age_seconds)
    return impact * (1.0 - DECAY_PER_MINUTE) ** (age / 60.0)


def news_score(articles: Iterable[Article], now: float) -> float | None:
    """Sum of decayed impacts, clipped; None when no article is known."""
    total = 0.0
    known = False
    for article in articles:
        known = True
        total += decayed_impact(
            article_impact(article.polarity), now - article.published_at
        )
    return clip(total) if known else None


def technical_momentum(
    closes: Sequence[tuple[float, float]], now: float, window: float = 30.0
) -> float | None:
    """15 points per 1 % change from the oldest to the newest close of the last
    `window` seconds, clipped. `closes` are (second_epoch, close), oldest first."""
    recent = [close for second, close in closes if now - window <= second <= now]
    if len(recent) < 2:
        return None
    oldest, newest = recent[0], recent[-1]
    if oldest <= 0:
        return None  # no meaningful percentage from a zero/negative price
    percent = (newest - oldest) / oldest * 100.0
    return clip(percent * MOMENTUM_POINTS_PER_PERCENT)


class TechnicalSmoother:
    """Exponential smoothing of one symbol's momentum: 0.8 x previous + 0.2 x new.
    The first known value initialises the state as is, so a fresh symbol does not
    start biased towards 0."""

    def __init__(self) -> None:
        self.value: float | None = None

    def update(self, raw: float | None) -> float | None:
        # An unknown momentum (too few closes) keeps the last smoothed value.
        if raw is not None:
            if self.value is None:
                self.value = raw
            else:
                self.value = (
                    SMOOTHING_PREVIOUS * self.value + (1 - SMOOTHING_PREVIOUS) * raw
                )
        return self.value


def order_flow(
    trades: Sequence[tuple[float, float, float]], now: float, window: float = 60.0
) -> float | None:
    """Buy/sell volume imbalance x 100 over the last `window` seconds, by the tick
    rule. `trades` are (ts_epoch_seconds, price, size) in time order.

    Uptick is a buy, downtick a sell, unchanged takes the previous side. Trades
    before the window are walked too, so the window's first trade is classified
    against the price (and side) just before it. A trade with no established side
    (the very first one, or unchanged prices since it) is left out.
    """
    start = now - window
    buy = sell = 0.0
    previous_price: float | None = None
    side = 0  # +1 buy, -1 sell, 0 unknown
    for ts, price, size in trades:
        if previous_price is not None:
            if price > previous_price:
                side = 1
            elif price < previous_price:
                side = -1
        previous_price = price
        if not start <= ts <= now or side == 0:
            continue
        if side > 0:
            buy += size
        else:
            sell += size
    classified = buy + sell
    if classified <= 0:
        return None
    return clip((buy - sell) / classified * 100.0)


def composite(
    news: float | None,
    technical: float | None,
    flow: float | None,
    weights: tuple[float, float, float] = DEFAULT_WEIGHTS,
) -> float | None:
    """Weighted sum renormalised over the known components; None if none is
    known (or only components weighted 0 are)."""
    if len(weights) != 3 or any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"weights must be 3 non-negative numbers, got {weights!r}")
    if sum(weights) <= 0:
        raise ValueError("weights must not all be zero")
    total = weight_sum = 0.0
    for value, weight in zip((news, technical, flow), weights, strict=True):
        if value is not None:
            total += weight * value
            weight_sum += weight
    if weight_sum <= 0:
        return None
    return clip(total / weight_sum)
