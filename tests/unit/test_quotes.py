"""Quote bars against a brute force over the quotes, written from the definitions
in api/market/quotes.py's docstring; and the cases users meet."""

from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from api.market.messages import Quote
from api.market.quotes import QuoteBars

BASE_MS = 1_790_000_000_000
GRACE = 2.0
WINDOW = 30.0
PROPERTY = settings(max_examples=80, deadline=None)

prices = st.decimals(min_value="1.00", max_value="1.10", places=4)
sizes = st.one_of(st.none(), st.integers(min_value=0, max_value=9).map(Decimal))


@st.composite
def streams(draw, max_lateness_ms: int):
    """(quote, arrival wall clock) in arrival order; some crossed, some locked."""
    n = draw(st.integers(min_value=1, max_value=100))
    arrival_ms = BASE_MS
    out = []
    for _ in range(n):
        arrival_ms += 100 * draw(st.integers(min_value=0, max_value=7))
        lateness = 250 * draw(
            st.integers(min_value=0, max_value=max_lateness_ms // 250)
        )
        bid = draw(prices)
        shape = draw(
            st.sampled_from(["normal", "normal", "normal", "locked", "crossed"])
        )
        ask = {"normal": bid + draw(prices) / 100, "locked": bid, "crossed": bid - 1}[
            shape
        ]
        quote = Quote(
            draw(st.sampled_from(["EURUSD", "AAPL"])),
            bid,
            ask,
            draw(sizes),
            draw(sizes),
            arrival_ms - lateness,
        )
        out.append((quote, arrival_ms / 1000))
    return out


def brute(members: list[tuple[int, Quote]]) -> dict:
    """members: (arrival index, quote) of one second."""
    good = [(q.ts_ms, i, q) for i, q in members if q.bid <= q.ask]
    mids = [(q.bid + q.ask) / 2 for _, _, q in good]
    close = max(good)[2] if good else None
    spread = None
    if good:
        spread = (sum(q.ask - q.bid for _, _, q in good) / len(good)).quantize(
            Decimal("1e-10"), rounding=ROUND_HALF_EVEN
        )
    quotes = [q for _, q in members]
    return {
        "bid": close.bid if close else None,
        "ask": close.ask if close else None,
        "bid_size": close.bid_size if close else None,
        "ask_size": close.ask_size if close else None,
        "best_bid": max((q.bid for *_, q in good), default=None),
        "worst_bid": min((q.bid for *_, q in good), default=None),
        "best_ask": min((q.ask for *_, q in good), default=None),
        "worst_ask": max((q.ask for *_, q in good), default=None),
        "mid_open": (min(good)[2].bid + min(good)[2].ask) / 2 if good else None,
        "mid_high": max(mids, default=None),
        "mid_low": min(mids, default=None),
        "mid_close": (close.bid + close.ask) / 2 if close else None,
        "spread_mean": spread,
        "quote_count": len(quotes),
        "crossed_count": sum(q.bid > q.ask for q in quotes),
        "locked_count": sum(q.bid == q.ask for q in quotes),
        "zero_size_count": sum(q.bid_size == 0 or q.ask_size == 0 for q in quotes),
        "first_ts_ms": min(q.ts_ms for q in quotes),
        "last_ts_ms": max(q.ts_ms for q in quotes),
    }


def summary(bar) -> dict:
    return {name: getattr(bar, name) for name in brute([(0, QUOTE)])}


QUOTE = Quote("X", Decimal(1), Decimal(2), None, None, BASE_MS)


@PROPERTY
@given(stream=streams(max_lateness_ms=8_000), close_every=st.integers(1, 5))
def test_it_matches_the_definitions_through_late_quotes(stream, close_every):
    bars = QuoteBars(grace=GRACE, revision_window=WINDOW)
    final = {}
    for i, (quote, now) in enumerate(stream):
        if i % close_every == 0:
            for bar in bars.close_until(now):
                final[(bar.symbol, bar.second)] = bar
        bars.add(quote, now)
    for bar in bars.close_until(stream[-1][1] + 10_000):
        final[(bar.symbol, bar.second)] = bar

    groups: dict = {}
    for i, (quote, _) in enumerate(stream):
        groups.setdefault((quote.symbol, quote.ts_ms // 1000), []).append((i, quote))
    assert bars.dropped_too_late == 0
    assert {key: summary(bar) for key, bar in final.items()} == {
        key: brute(members) for key, members in groups.items()
    }
    assert bars.open_seconds() == 0
    assert bars.retained() == 0  # everything let go long after the window


def q(ms: int, bid: str, ask: str, bs="5", asz="7") -> Quote:
    size = lambda v: None if v is None else Decimal(v)  # noqa: E731
    return Quote("AAPL", Decimal(bid), Decimal(ask), size(bs), size(asz), BASE_MS + ms)


def test_a_second_of_crossed_quotes_has_counts_and_no_prices():
    bars = QuoteBars()
    bars.add(q(100, "10.02", "10.01"), BASE_MS / 1000 + 1)
    bars.add(q(200, "10.03", "10.00", bs="0"), BASE_MS / 1000 + 1)
    [bar] = bars.close_until(BASE_MS / 1000 + 5)
    assert (bar.bid, bar.ask, bar.mid_close, bar.spread_mean) == (None,) * 4
    assert (bar.quote_count, bar.crossed_count, bar.zero_size_count) == (2, 2, 1)


def test_a_late_quote_revises_its_second_and_is_dropped_past_the_window():
    bars = QuoteBars(grace=1, revision_window=10)
    bars.add(q(500, "10.00", "10.02"), BASE_MS / 1000 + 1)
    [first] = bars.close_until(BASE_MS / 1000 + 3)
    assert (first.bid, first.spread_mean, first.revision) == (
        Decimal("10.00"),
        Decimal("0.0200000000"),
        False,
    )
    bars.add(q(900, "10.01", "10.02"), BASE_MS / 1000 + 4)  # the new close
    [revised] = bars.close_until(BASE_MS / 1000 + 4.5)
    assert (revised.bid, revised.quote_count, revised.revision) == (
        Decimal("10.01"),
        2,
        True,
    )
    assert revised.spread_mean == Decimal("0.0150000000")
    bars.add(q(100, "9", "11"), BASE_MS / 1000 + 60)
    assert bars.dropped_too_late == 1
    assert bars.close_until(BASE_MS / 1000 + 61) == []
