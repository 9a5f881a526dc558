from decimal import Decimal

import pytest

from api.market.bars import TickBars, TickCandle, TimeBar, TimeBars
from api.market.messages import Trade

S = 1_790_000_000  # an epoch second used as the base of every test
D = Decimal


def trade(ms: int, price: str, size: str = "1", symbol: str = "AAPL") -> Trade:
    """A trade at S seconds plus ms milliseconds."""
    return Trade(symbol, D(price), D(size), S * 1000 + ms)


# -- TimeBars: bucketing and values ------------------------------------------


def test_it_puts_a_trade_on_the_boundary_into_the_new_second():
    bars = TimeBars()
    bars.add(trade(999, "10"), now=S + 1)
    bars.add(trade(1000, "11"), now=S + 1)
    closed = bars.close_until(S + 10)
    assert [(b.second, b.close, b.tick_count) for b in closed] == [
        (S, D("10"), 1),
        (S + 1, D("11"), 1),
    ]


def test_it_builds_a_bar_from_out_of_order_trades():
    bars = TimeBars()
    for t in [
        trade(500, "10.5", "2"),
        trade(100, "10.1", "1"),  # earliest: the open
        trade(900, "10.9", "3"),  # latest: the close
        trade(300, "9.8", "4"),
        trade(700, "11.2", "10"),
    ]:
        bars.add(t, now=S + 1)
    [bar] = bars.close_until(S + 3)
    # sum(p*v) = 21 + 10.1 + 32.7 + 39.2 + 112 = 215.0; volume 20
    assert bar == TimeBar(
        symbol="AAPL",
        second=S,
        open=D("10.1"),
        high=D("11.2"),
        low=D("9.8"),
        close=D("10.9"),
        volume=D("20"),
        tick_count=5,
        vwap=D("10.7500000000"),
        first_ts_ms=S * 1000 + 100,
        last_ts_ms=S * 1000 + 900,
        price_change_1sec=None,
        price_momentum_5sec=None,
        revision=False,
        eligible_count=5,
    )


def test_it_breaks_timestamp_ties_by_arrival():
    bars = TimeBars()
    for t in [
        trade(200, "1"),
        trade(200, "2"),  # same ts as the first: the first arrived opens
        trade(800, "3"),
        trade(800, "4"),  # same ts as the previous: the last arrived closes
        trade(500, "5"),
    ]:
        bars.add(t, now=S)
    [bar] = bars.close_until(S + 3)
    assert (bar.open, bar.close) == (D("1"), D("4"))
    assert (bar.high, bar.low) == (D("5"), D("1"))


def test_it_sums_fractional_volumes_exactly():
    bars = TimeBars()
    bars.add(trade(1, "100", "0.1"), now=S)
    bars.add(trade(2, "100", "0.2"), now=S)
    [bar] = bars.close_until(S + 3)
    assert bar.volume == D("0.3")
    assert str(bar.volume) == "0.3"
    assert bar.vwap == D("100")


def test_it_computes_vwap_to_ten_places():
    bars = TimeBars()
    bars.add(trade(1, "10", "1"), now=S)
    bars.add(trade(2, "11", "2"), now=S)
    [bar] = bars.close_until(S + 3)
    # (10 + 22) / 3 = 10.6666...
    assert bar.vwap == D("10.6666666667")


def test_it_gives_no_vwap_when_all_sizes_are_zero():
    bars = TimeBars()
    bars.add(trade(1, "10", "0"), now=S)
    [bar] = bars.close_until(S + 3)
    assert bar.volume == 0
    assert bar.vwap is None
    assert bar.tick_count == 1


def test_it_keeps_symbols_apart_and_orders_output_by_second():
    bars = TimeBars()
    bars.add(trade(1500, "20", symbol="MSFT"), now=S + 2)
    bars.add(trade(100, "10", symbol="TSLA"), now=S + 2)
    bars.add(trade(200, "30", symbol="AAPL"), now=S + 2)
    closed = bars.close_until(S + 10)
    assert [(b.second, b.symbol, b.close) for b in closed] == [
        (S, "AAPL", D("30")),
        (S, "TSLA", D("10")),
        (S + 1, "MSFT", D("20")),
    ]


# -- TimeBars: closing -----------------------------------------------------


def test_it_closes_a_second_exactly_at_its_end_plus_grace():
    bars = TimeBars(grace=2.0)
    bars.add(trade(500, "10"), now=S + 0.5)
    assert bars.close_until(S + 2.999) == []  # end (S+1) + grace - epsilon
    assert bars.open_seconds() == 1
    [bar] = bars.close_until(S + 3.0)
    assert bar.second == S
    assert bars.open_seconds() == 0
    assert bars.bars_closed == 1


def test_it_honours_a_configured_grace():
    bars = TimeBars(grace=0.5)
    bars.add(trade(500, "10"), now=S + 0.5)
    assert bars.close_until(S + 1.49) == []
    assert len(bars.close_until(S + 1.5)) == 1


def test_it_takes_a_trade_arriving_late_but_before_the_close():
    bars = TimeBars(grace=2.0)
    bars.add(trade(100, "10"), now=S + 0.2)
    bars.add(trade(50, "9"), now=S + 2.9)  # late print, second still open
    [bar] = bars.close_until(S + 3)
    assert (bar.open, bar.close, bar.tick_count) == (D("9"), D("10"), 2)
    assert bars.late_trades == 0


def test_it_emits_nothing_for_seconds_without_trades():
    bars = TimeBars()
    bars.add(trade(100, "10"), now=S)
    bars.add(trade(5100, "11"), now=S + 5)
    closed = bars.close_until(S + 20)
    assert [b.second for b in closed] == [S, S + 5]
    assert bars.close_until(S + 40) == []


def test_it_emits_each_bar_once():
    bars = TimeBars()
    bars.add(trade(100, "10"), now=S)
    assert len(bars.close_until(S + 3)) == 1
    assert bars.close_until(S + 4) == []
    assert bars.close_until(S + 3) == []  # a clock stepping back reopens nothing


def test_it_closes_everything_at_infinity():
    bars = TimeBars()
    bars.add(trade(100, "10"), now=S)
    bars.add(trade(9100, "11"), now=S + 9)
    closed = bars.close_until(float("inf"))
    assert [b.second for b in closed] == [S, S + 9]
    assert bars.open_seconds() == 0
    assert bars.retained() == 0


# -- TimeBars: late trades and revisions -------------------------------------


def test_it_revises_a_closed_bar_with_a_late_trade():
    bars = TimeBars(grace=2.0, revision_window=300.0)
    bars.add(trade(200, "10", "1"), now=S + 0.2)
    bars.add(trade(600, "12", "1"), now=S + 0.6)
    [original] = bars.close_until(S + 3)
    assert (original.close, original.volume) == (D("12"), D("2"))

    # 8 s later, a print from the middle of the second: new low, not the close.
    bars.add(trade(400, "9", "2"), now=S + 8)
    # And one that becomes the new open.
    bars.add(trade(100, "11", "0.5"), now=S + 8)
    assert bars.late_trades == 2
    [revised] = bars.close_until(S + 8.1)
    # sum(p*v) = 10 + 12 + 18 + 5.5 = 45.5; volume 4.5; vwap 10.1111...
    assert revised == TimeBar(
        symbol="AAPL",
        second=S,
        open=D("11"),
        high=D("12"),
        low=D("9"),
        close=D("12"),
        volume=D("4.5"),
        tick_count=4,
        vwap=D("10.1111111111"),
        first_ts_ms=S * 1000 + 100,
        last_ts_ms=S * 1000 + 600,
        price_change_1sec=None,
        price_momentum_5sec=None,
        revision=True,
        eligible_count=4,
    )
    assert bars.revisions == 1
    assert bars.close_until(S + 9) == []  # emitted once


def test_a_late_trade_with_the_latest_timestamp_becomes_the_close():
    bars = TimeBars()
    bars.add(trade(900, "10"), now=S + 1)
    bars.close_until(S + 3)
    bars.add(trade(900, "13"), now=S + 4)  # ties the close's ts, arrived last
    [revised] = bars.close_until(S + 4)
    assert (revised.open, revised.close) == (D("10"), D("13"))


def test_several_late_trades_make_one_revision():
    bars = TimeBars()
    bars.add(trade(100, "10"), now=S)
    bars.close_until(S + 3)
    for ms in (200, 300, 400):
        bars.add(trade(ms, "10"), now=S + 5)
    [revised] = bars.close_until(S + 5)
    assert revised.tick_count == 4
    assert bars.revisions == 1
    assert bars.late_trades == 3


def test_a_late_trade_into_an_empty_closed_second_emits_a_revision():
    bars = TimeBars()
    bars.add(trade(100, "10"), now=S)
    bars.close_until(S + 5)  # seconds S..S+2 closed; S+1 had no trade
    bars.add(trade(1500, "11"), now=S + 5)
    [bar] = bars.close_until(S + 5)
    assert (bar.second, bar.close, bar.tick_count, bar.revision) == (
        S + 1,
        D("11"),
        1,
        True,
    )
    assert bar.price_change_1sec == D("10.000000")


def test_it_drops_a_trade_older_than_the_window_and_counts_it():
    bars = TimeBars(grace=2.0, revision_window=300.0)
    bars.add(trade(100, "10"), now=S)
    bars.close_until(S + 3)
    bars.add(trade(200, "99"), now=S + 1 + 300)  # exactly at the window: merged
    bars.add(trade(300, "98"), now=S + 1 + 300.001)  # beyond it: dropped
    assert bars.dropped_too_late == 1
    assert bars.late_trades == 1
    [revised] = bars.close_until(S + 301.1)
    assert (revised.tick_count, revised.high) == (2, D("99"))


def test_it_drops_a_trade_far_in_the_future():
    bars = TimeBars()
    bars.add(trade(60_000, "10"), now=S)  # exactly now + 60 s: kept
    bars.add(trade(60_001, "10"), now=S)
    bars.add(trade(3_600_000, "10"), now=S)
    assert bars.dropped_future == 2
    assert bars.open_seconds() == 1


def test_it_releases_kept_bars_after_the_window():
    bars = TimeBars(grace=2.0, revision_window=300.0)
    bars.add(trade(100, "10"), now=S)
    bars.add(trade(1100, "10"), now=S + 1)
    bars.close_until(S + 5)
    assert bars.retained() == 2
    # Kept for the window plus 6 s, so revised edge bars keep their references:
    # bar S goes once now - (S + 1) > 306.
    bars.close_until(S + 307)
    assert bars.retained() == 2
    bars.close_until(S + 307.5)
    assert bars.retained() == 1
    bars.close_until(S + 308.5)
    assert bars.retained() == 0


def test_it_keeps_memory_bounded_over_a_long_run():
    bars = TimeBars(grace=2.0, revision_window=10.0)
    for second in range(1000):
        bars.add(trade(second * 1000 + 1, "10"), now=S + second)
        bars.close_until(S + second + 0.5)
    assert bars.bars_closed == 997
    assert bars.open_seconds() == 3
    # window 10 + 6 kept seconds, at most one more in flight
    assert bars.retained() <= 17


# -- TimeBars: price change and momentum --------------------------------------


def closes(bars: TimeBars, prices: dict[int, str]) -> list[TimeBar]:
    for offset, price in prices.items():
        bars.add(trade(offset * 1000 + 500, price), now=S + offset)
    return bars.close_until(S + max(prices) + 10)


def test_it_computes_price_change_against_the_previous_bar():
    out = closes(TimeBars(), {0: "100", 1: "101", 3: "99.99"})
    assert [b.price_change_1sec for b in out] == [
        None,
        D("1.000000"),
        # (99.99 - 101) / 101 * 100 = -1.0000000 (rounded to 6 places)
        D("-1.000000"),
    ]


def test_it_computes_momentum_from_the_oldest_bar_in_the_last_five_seconds():
    out = closes(TimeBars(), {0: "100", 1: "110", 2: "120", 5: "90", 6: "99", 7: "200"})
    momentum = {b.second - S: b.price_momentum_5sec for b in out}
    assert momentum == {
        0: None,
        1: D("10.000000"),  # from 100
        2: D("20.000000"),  # from 100
        5: D("-10.000000"),  # from 100 (second 0 is in [0, 4])
        6: D("-10.000000"),  # from 110 (second 1 is in [1, 5])
        7: D("66.666667"),  # from 120 (second 2 is in [2, 6])
    }


def test_it_has_no_momentum_when_the_last_five_seconds_are_empty():
    out = closes(TimeBars(), {0: "100", 6: "110"})
    assert out[1].price_momentum_5sec is None
    assert out[1].price_change_1sec == D("10.000000")


def test_it_computes_change_across_a_gap_longer_than_the_window():
    bars = TimeBars(grace=2.0, revision_window=10.0)
    bars.add(trade(500, "100"), now=S)
    bars.close_until(S + 3)
    bars.close_until(S + 100)  # bar S released
    assert bars.retained() == 0
    bars.add(trade(100_500, "105"), now=S + 100)
    [bar] = bars.close_until(S + 103)
    assert bar.price_change_1sec == D("5.000000")


def test_a_revision_recomputes_its_own_change_but_not_later_bars():
    bars = TimeBars()
    out = closes(bars, {0: "100", 1: "110", 2: "121"})
    assert [b.price_change_1sec for b in out] == [None, D("10.000000"), D("10.000000")]
    bars.add(trade(1900, "120"), now=S + 13)  # new close of second 1
    [revised] = bars.close_until(S + 13)
    assert revised.second == S + 1
    assert revised.close == D("120")
    assert revised.price_change_1sec == D("20.000000")
    assert revised.price_momentum_5sec == D("20.000000")


def test_it_rejects_negative_settings():
    with pytest.raises(ValueError):
        TimeBars(grace=-1)
    with pytest.raises(ValueError):
        TimeBars(revision_window=-1)


# -- TickBars ----------------------------------------------------------------------


def feed(ticks: TickBars, n: int, symbol: str = "AAPL", start: int = 0):
    """Trade i has price 100 + i/100, size i, ts S*1000 + i."""
    candles = []
    for i in range(start, start + n):
        price = D(100) + D(i) / 100
        candle = ticks.add(Trade(symbol, price, D(i), S * 1000 + i))
        if candle is not None:
            candles.append(candle)
    return candles


def test_it_completes_a_candle_on_the_hundredth_trade():
    ticks = TickBars()
    assert feed(ticks, 99) == []
    assert ticks.pending_count() == 99
    [candle] = feed(ticks, 1, start=99)
    assert candle == TickCandle(
        symbol="AAPL",
        number=1,
        open=D("100.00"),
        high=D("100.99"),
        low=D("100.00"),
        close=D("100.99"),
        volume=D(4950),  # 0 + 1 + ... + 99
        tick_count=100,
        first_ts_ms=S * 1000,
        last_ts_ms=S * 1000 + 99,
        duration_seconds=D("0.099"),
        completed_at_ms=S * 1000 + 99,
        eligible_count=100,
    )
    assert ticks.pending_count() == 0


def test_the_hundred_and_first_trade_starts_the_next_candle():
    ticks = TickBars()
    feed(ticks, 101)
    [pending] = ticks.pending("AAPL")
    assert pending.price == D("101.00")
    [second] = feed(ticks, 99, start=101)
    assert second.number == 2
    assert (second.open, second.close) == (D("101.00"), D("101.99"))
    assert second.volume == sum(range(100, 200))
    assert second.tick_count == 100


def test_it_numbers_candles_from_the_next_number():
    ticks = TickBars()
    ticks.set_next_number("AAPL", 42)
    candles = feed(ticks, 250)
    assert [c.number for c in candles] == [42, 43]
    assert feed(ticks, 10, symbol="MSFT") == []
    assert [c.number for c in feed(ticks, 90, symbol="MSFT", start=10)] == [1]


def test_it_uses_arrival_order_for_open_and_close_and_ts_for_times():
    ticks = TickBars(size=3)
    assert ticks.add(Trade("A", D("5"), D("1"), 3000)) is None
    assert ticks.add(Trade("A", D("7"), D("1"), 1000)) is None
    candle = ticks.add(Trade("A", D("6"), D("0.5"), 2500))
    assert (candle.open, candle.high, candle.low, candle.close) == (
        D("5"),
        D("7"),
        D("5"),
        D("6"),
    )
    assert (candle.first_ts_ms, candle.last_ts_ms) == (1000, 3000)
    assert candle.duration_seconds == D("2.000")
    assert candle.completed_at_ms == 3000
    assert candle.volume == D("2.5")


def test_it_keeps_symbols_apart():
    ticks = TickBars(size=2)
    assert ticks.add(Trade("A", D(1), D(1), 1000)) is None
    assert ticks.add(Trade("B", D(2), D(1), 1000)) is None
    candle = ticks.add(Trade("A", D(3), D(1), 1000))
    assert (candle.symbol, candle.open, candle.close) == ("A", D(1), D(3))
    assert ticks.pending_count() == 1


def test_it_continues_a_restored_partial_candle_exactly():
    before = TickBars()
    feed(before, 130)
    saved = before.pending("AAPL")
    assert len(saved) == 30

    after = TickBars()
    after.set_next_number("AAPL", 2)
    after.restore("AAPL", saved)
    assert after.pending_count() == 30
    assert feed(after, 70, start=130) == feed(before, 70, start=130)


def test_pending_is_a_copy():
    ticks = TickBars()
    feed(ticks, 5)
    ticks.pending("AAPL").clear()
    assert len(ticks.pending("AAPL")) == 5
    assert ticks.pending("MSFT") == []


def test_it_refuses_an_impossible_restore():
    ticks = TickBars(size=3)
    three = [Trade("A", D(1), D(1), 1000)] * 3
    with pytest.raises(ValueError):
        ticks.restore("A", three)
    with pytest.raises(ValueError):
        ticks.restore("B", three[:1])
