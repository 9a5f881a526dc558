"""Bars built from prints that may update only some parts of a bar, against a
brute force written from the rule's statement: high/low from the high/low-eligible
prints, open/close from the last-eligible ones (earliest / latest timestamp, ties
by arrival), volume and VWAP from the volume-eligible ones, every print counted
in tick_count; a part no print was eligible for is None."""

from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from api.market.bars import Partial, TickBars, TimeBars
from api.market.conditions import EVERY, HIGH_LOW, LAST, VOLUME, Rules
from api.market.messages import Trade

BASE_MS = 1_790_000_000_000
SYMBOLS = ["AAPL", "MSFT"]
GRACE = 2.0
WINDOW = 30.0
PROPERTY = settings(max_examples=80, deadline=None)

prices = st.decimals(min_value="0.01", max_value="500", places=2)
sizes = st.integers(min_value=0, max_value=500).map(Decimal)
# Any combination of parts, not only those the table produces: the builders
# must be right for each part on its own.
flag_sets = st.sampled_from([EVERY, EVERY, 0, HIGH_LOW, LAST, VOLUME])
flag_sets = st.one_of(flag_sets, st.integers(min_value=0, max_value=7))


@st.composite
def streams(draw, max_lateness_ms: int):
    """(trade, flags, arrival wall clock) in arrival order."""
    n = draw(st.integers(min_value=1, max_value=100))
    arrival_ms = BASE_MS
    out = []
    for _ in range(n):
        arrival_ms += 100 * draw(st.integers(min_value=0, max_value=7))
        lateness = 250 * draw(
            st.integers(min_value=0, max_value=max_lateness_ms // 250)
        )
        trade = Trade(
            draw(st.sampled_from(SYMBOLS)),
            draw(prices),
            draw(sizes),
            arrival_ms - lateness,
        )
        out.append((trade, draw(flag_sets), arrival_ms / 1000))
    return out


def brute(members: list[tuple[int, Trade, int]]) -> dict:
    """members: (arrival index, trade, flags) of one bucket."""
    ranged = [t.price for _, t, f in members if f & HIGH_LOW]
    lasts = [(t.ts_ms, i, t.price) for i, t, f in members if f & LAST]
    counted = [t for _, t, f in members if f & VOLUME]
    volume = sum((t.size for t in counted), Decimal(0))
    pv = sum((t.price * t.size for t in counted), Decimal(0))
    vwap = None
    if volume:
        vwap = (pv / volume).quantize(Decimal("1e-10"), rounding=ROUND_HALF_EVEN)
    stamps = [t.ts_ms for _, t, _ in members]
    return {
        "open": min(lasts)[2] if lasts else None,
        "close": max(lasts)[2] if lasts else None,
        "high": max(ranged) if ranged else None,
        "low": min(ranged) if ranged else None,
        "volume": volume,
        "vwap": vwap,
        "tick_count": len(members),
        "eligible_count": len(ranged),
        "first_ts_ms": min(stamps),
        "last_ts_ms": max(stamps),
    }


def summary(bar) -> dict:
    return {
        "open": bar.open,
        "close": bar.close,
        "high": bar.high,
        "low": bar.low,
        "volume": bar.volume,
        "vwap": bar.vwap,
        "tick_count": bar.tick_count,
        "eligible_count": bar.eligible_count,
        "first_ts_ms": bar.first_ts_ms,
        "last_ts_ms": bar.last_ts_ms,
    }


@PROPERTY
@given(stream=streams(max_lateness_ms=8_000), close_every=st.integers(1, 5))
def test_each_part_comes_from_the_prints_eligible_for_it(stream, close_every):
    # Late prints (up to 8 s, inside the window) revise closed bars: the merge
    # path follows the same rules as a bar built at once.
    bars = TimeBars(grace=GRACE, revision_window=WINDOW)
    final = {}
    for i, (trade, flags, now) in enumerate(stream):
        if i % close_every == 0:
            for bar in bars.close_until(now):
                final[(bar.symbol, bar.second)] = bar
        bars.add(trade, now, flags)
    for bar in bars.close_until(stream[-1][2] + 10_000):
        final[(bar.symbol, bar.second)] = bar

    groups: dict = {}
    for i, (trade, flags, _) in enumerate(stream):
        groups.setdefault((trade.symbol, trade.ts_ms // 1000), []).append(
            (i, trade, flags)
        )
    assert bars.dropped_too_late == 0
    assert {key: summary(bar) for key, bar in final.items()} == {
        key: brute(members) for key, members in groups.items()
    }


@PROPERTY
@given(
    stream=streams(max_lateness_ms=0),
    cut=st.integers(min_value=0, max_value=100),
)
def test_a_bucket_carried_over_a_restart_equals_one_built_at_once(stream, cut):
    # One minute bucket: the first `cut` prints are aggregated by a run that
    # stops (its partial goes through the state file's JSON form), the rest by
    # the next run, seeded with it.
    minute = [(t, f) for t, f, _ in stream if t.symbol == "AAPL"]
    if not minute:
        return
    start = BASE_MS // 1000 // 60 * 60
    minute = [
        (Trade("AAPL", t.price, t.size, start * 1000 + t.ts_ms % 60_000), f)
        for t, f in minute
    ]
    cut = min(cut, len(minute))
    before, after = minute[:cut], minute[cut:]
    first = TimeBars(width=60)
    for trade, flags in before:
        first.add(trade, start + 1, flags)
    carried = first.partials(start + 1)
    second = TimeBars(width=60)
    for (symbol, at), partial in carried.items():
        second.seed(symbol, at, Partial.from_list(partial.to_list()))
    for trade, flags in after:
        second.add(trade, start + 1, flags)
    [bar] = second.close_until(start + 10_000)

    members = [(i, t, f) for i, (t, f) in enumerate(minute)]
    assert summary(bar) == brute(members)


@PROPERTY
@given(stream=streams(max_lateness_ms=5_000), size=st.integers(1, 12))
def test_a_candle_counts_every_print_and_prices_only_eligible_ones(stream, size):
    ticks = TickBars(size=size)
    candles = [
        candle
        for trade, flags, _ in stream
        if (candle := ticks.add(trade, flags)) is not None
    ]
    for symbol in SYMBOLS:
        mine = [(t, f) for t, f, _ in stream if t.symbol == symbol]
        theirs = [c for c in candles if c.symbol == symbol]
        assert len(theirs) == len(mine) // size
        for index, candle in enumerate(theirs):
            chunk = mine[index * size : (index + 1) * size]
            ranged = [t.price for t, f in chunk if f & HIGH_LOW]
            lasts = [t.price for t, f in chunk if f & LAST]  # arrival order
            assert candle.tick_count == size
            assert candle.eligible_count == len(ranged)
            assert candle.high == (max(ranged) if ranged else None)
            assert candle.low == (min(ranged) if ranged else None)
            assert candle.open == (lasts[0] if lasts else None)
            assert candle.close == (lasts[-1] if lasts else None)
            assert candle.volume == sum(
                (t.size for t, f in chunk if f & VOLUME), Decimal(0)
            )


def at(ms: int, price: str, codes: tuple[int, ...] = (), size: str = "100") -> Trade:
    return Trade("AAPL", Decimal(price), Decimal(size), BASE_MS + ms, codes)


def test_a_second_of_odd_lots_only_has_volume_and_no_prices():
    rules = Rules("eodhd")
    bars = TimeBars()
    trades = [at(100, "10", (37,), "5"), at(200, "11", (37,), "7")]
    for trade, flags in zip(trades, rules.flags(trades), strict=True):
        bars.add(trade, BASE_MS / 1000 + 1, flags)
    [bar] = bars.close_until(BASE_MS / 1000 + 5)
    assert (bar.open, bar.high, bar.low, bar.close) == (None, None, None, None)
    assert (bar.volume, bar.tick_count, bar.eligible_count) == (Decimal(12), 2, 0)
    assert bar.vwap == Decimal("10.5833333333")  # volume-eligible: odd lots count


def test_price_change_skips_seconds_without_a_close():
    # Second 0 closes at 10; second 1 has only odd lots; second 2 closes at 11:
    # its change is measured from second 0's close.
    rules = Rules("eodhd")
    bars = TimeBars()
    trades = [
        at(0, "10"),
        at(1_000, "50", (37,), "1"),
        at(2_000, "11"),
    ]
    for trade, flags in zip(trades, rules.flags(trades), strict=True):
        bars.add(trade, BASE_MS / 1000 + 3, flags)
    out = bars.close_until(BASE_MS / 1000 + 10)
    assert [b.close for b in out] == [Decimal(10), None, Decimal(11)]
    assert [b.price_change_1sec for b in out] == [None, None, Decimal("10.000000")]


# Monday 21 September 2026, New York: 08:00 (pre-market) and 10:13 (regular).
PRE_MARKET_MS = 1_789_992_000_000
REGULAR_MS = BASE_MS


def test_all_lets_every_print_count_and_eodhd_follows_the_table():
    def prints(base_ms: int) -> list[Trade]:
        return [
            Trade("AAPL", Decimal(10), Decimal(100), base_ms),
            Trade("AAPL", Decimal(99), Decimal(3), base_ms + 1, (37,)),  # odd lot
            Trade("AAPL", Decimal("10.5"), Decimal(100), base_ms + 2, (12,)),  # Form T
        ]

    assert Rules("all").flags(prints(REGULAR_MS)) == [EVERY, EVERY, EVERY]
    assert Rules("eodhd").flags(prints(REGULAR_MS)) == [EVERY, VOLUME, VOLUME]
    # Outside regular hours Form T is a regular print.
    assert Rules("eodhd").flags(prints(PRE_MARKET_MS)) == [EVERY, VOLUME, EVERY]


def test_the_market_status_field_is_only_a_cross_check():
    def prints(base_ms: int) -> list[Trade]:
        return [
            Trade("AAPL", Decimal(1), Decimal(1), base_ms, (12,), market_status=ms)
            for ms in ("open", "extended-hours", "closed", None, "something new")
        ]

    regular, pre = Rules("eodhd"), Rules("eodhd")
    # The calendar decides, whatever the status says.
    assert regular.flags(prints(REGULAR_MS)) == [VOLUME] * 5
    assert pre.flags(prints(PRE_MARKET_MS)) == [EVERY] * 5
    # Counted: "extended-hours" and "closed" in regular hours; "open" before it.
    assert (regular.disagreements, pre.disagreements) == (2, 1)
