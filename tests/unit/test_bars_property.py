"""Random trade streams against brute-force references written independently."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from api.market.bars import TickBars, TimeBars
from api.market.messages import Trade

BASE_MS = 1_790_000_000_000
SYMBOLS = ["AAPL", "MSFT", "BTC-USD"]
GRACE = 2.0
WINDOW = 30.0
PROPERTY = settings(max_examples=60, deadline=None)

prices = st.decimals(min_value="0.01", max_value="500", places=2)
sizes = st.one_of(
    st.integers(min_value=0, max_value=1000).map(Decimal),
    st.decimals(min_value="0", max_value="10", places=3),
)


@st.composite
def streams(draw, max_lateness_ms: int):
    """Trades with ts around arrival time, up to max_lateness_ms late.

    Returns (trade, arrival wall clock in seconds) in arrival order.
    """
    n = draw(st.integers(min_value=1, max_value=120))
    arrival_ms = BASE_MS
    out = []
    for _ in range(n):
        # Coarse steps make equal timestamps (ties) and exact boundaries common.
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
        out.append((trade, arrival_ms / 1000))
    return out


def run(stream, close_every: int):
    """Feed the stream, closing as time advances; the final bars, last one wins."""
    bars = TimeBars(grace=GRACE, revision_window=WINDOW)
    final = {}
    for i, (trade, now) in enumerate(stream):
        if i % close_every == 0:
            for bar in bars.close_until(now):
                final[(bar.symbol, bar.second)] = bar
        bars.add(trade, now)
    for bar in bars.close_until(stream[-1][1] + 10_000):
        final[(bar.symbol, bar.second)] = bar
    return bars, final


def reference(stream, close_every: int):
    """Brute force: which trades survive, then group by second and sort by ts."""
    closed_through = None  # the latest wall clock passed to close_until
    kept, dropped = [], 0
    for i, (trade, now) in enumerate(stream):
        if i % close_every == 0:
            closed_through = now if closed_through is None else max(closed_through, now)
        second = trade.ts_ms // 1000
        is_closed = closed_through is not None and second + 1 + GRACE <= closed_through
        if is_closed and now - (second + 1) > WINDOW:
            dropped += 1
        else:
            kept.append((i, trade))
    groups = {}
    for i, trade in kept:
        groups.setdefault((trade.symbol, trade.ts_ms // 1000), []).append((i, trade))
    expected = {}
    for key, members in groups.items():
        by_time = sorted(members, key=lambda m: (m[1].ts_ms, m[0]))
        first_ts = by_time[0][1].ts_ms
        last_ts = by_time[-1][1].ts_ms
        last_arrived_at_last_ts = max(
            (m for m in members if m[1].ts_ms == last_ts), key=lambda m: m[0]
        )
        volume = Decimal(0)
        for _, t in members:
            volume += t.size
        expected[key] = {
            "open": by_time[0][1].price,
            "close": last_arrived_at_last_ts[1].price,
            "high": max(t.price for _, t in members),
            "low": min(t.price for _, t in members),
            "volume": volume,
            "tick_count": len(members),
            "first_ts_ms": first_ts,
            "last_ts_ms": last_ts,
        }
    return expected, dropped


def summary(bar):
    return {
        "open": bar.open,
        "close": bar.close,
        "high": bar.high,
        "low": bar.low,
        "volume": bar.volume,
        "tick_count": bar.tick_count,
        "first_ts_ms": bar.first_ts_ms,
        "last_ts_ms": bar.last_ts_ms,
    }


@PROPERTY
@given(stream=streams(max_lateness_ms=8_000), close_every=st.integers(1, 5))
def test_it_matches_the_reference_when_nothing_is_too_late(stream, close_every):
    bars, final = run(stream, close_every)
    expected, dropped = reference(stream, close_every)
    assert dropped == 0
    assert bars.dropped_too_late == 0
    assert {key: summary(bar) for key, bar in final.items()} == expected
    assert sum(b.tick_count for b in final.values()) == len(stream)
    assert bars.open_seconds() == 0


@PROPERTY
@given(stream=streams(max_lateness_ms=60_000), close_every=st.integers(1, 5))
def test_it_drops_exactly_the_trades_older_than_the_window(stream, close_every):
    bars, final = run(stream, close_every)
    expected, dropped = reference(stream, close_every)
    assert bars.dropped_too_late == dropped
    assert {key: summary(bar) for key, bar in final.items()} == expected
    assert sum(b.tick_count for b in final.values()) == len(stream) - dropped


@PROPERTY
@given(stream=streams(max_lateness_ms=8_000), close_every=st.integers(1, 5))
def test_vwap_is_the_rounded_exact_ratio(stream, close_every):
    _, final = run(stream, close_every)
    for bar in final.values():
        if bar.volume:
            assert bar.low <= bar.vwap <= bar.high
        else:
            assert bar.vwap is None


@PROPERTY
@given(
    stream=streams(max_lateness_ms=5_000),
    size=st.integers(min_value=1, max_value=12),
    start=st.integers(min_value=1, max_value=10_000),
)
def test_tick_candles_cover_every_trade_once(stream, size, start):
    ticks = TickBars(size=size)
    for symbol in SYMBOLS:
        ticks.set_next_number(symbol, start)
    candles = []
    for trade, _ in stream:
        candle = ticks.add(trade)
        if candle is not None:
            candles.append(candle)
    assert sum(c.tick_count for c in candles) + ticks.pending_count() == len(stream)

    for symbol in SYMBOLS:
        mine = [t for t, _ in stream if t.symbol == symbol]
        theirs = [c for c in candles if c.symbol == symbol]
        chunks = [mine[i : i + size] for i in range(0, len(mine), size)]
        full, rest = chunks[: len(mine) // size], mine[len(mine) // size * size :]
        assert len(theirs) == len(full)
        assert ticks.pending(symbol) == rest
        for number, (candle, chunk) in enumerate(
            zip(theirs, full, strict=True), start=start
        ):
            first = min(t.ts_ms for t in chunk)
            last = max(t.ts_ms for t in chunk)
            assert candle.number == number
            assert candle.open == chunk[0].price
            assert candle.close == chunk[-1].price
            assert candle.high == max(t.price for t in chunk)
            assert candle.low == min(t.price for t in chunk)
            assert candle.volume == sum((t.size for t in chunk), Decimal(0))
            assert candle.tick_count == size
            assert (candle.first_ts_ms, candle.last_ts_ms) == (first, last)
            assert candle.duration_seconds == Decimal(last - first) / 1000
            assert candle.duration_seconds >= 0
