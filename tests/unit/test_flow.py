import random

import pytest

from api.sentiment.flow import FlowWindow


def brute_force(trades, now, window=60.0):
    """Tick rule over the whole history, then sum the sides inside the window."""
    side, last, buy, sell = 0, None, 0.0, 0.0
    for ts, price, size in trades:
        if last is not None and price != last:
            side = 1 if price > last else -1
        last = price
        if ts >= now - window and side:
            if side > 0:
                buy += size
            else:
                sell += size
    if buy + sell == 0:
        return None
    return (buy - sell) / (buy + sell) * 100


def test_it_classifies_by_the_tick_rule_with_unchanged_prices_taking_the_last_side():
    flow = FlowWindow()
    # 10 (no side yet), 11 up = buy 5, 11 unchanged = buy 5, 10 down = sell 2
    for ts, price, size in [(0, 10, 7), (1, 11, 5), (2, 11, 5), (3, 10, 2)]:
        flow.add(ts, price, size)
    assert flow.score(3.0) == pytest.approx((10 - 2) / 12 * 100)


def test_it_forgets_trades_older_than_the_window():
    flow = FlowWindow(window=60)
    flow.add(0, 10, 1)
    flow.add(1, 11, 100)  # buy, leaves the window at t=61
    flow.add(70, 10, 10)  # sell
    assert flow.score(70) == pytest.approx(-100.0)
    assert flow.score(200) is None


def test_it_knows_nothing_before_a_side_is_established():
    flow = FlowWindow()
    flow.add(0, 10, 5)
    flow.add(1, 10, 5)
    assert flow.score(1) is None


def test_it_matches_a_brute_force_over_random_streams():
    rng = random.Random(4)
    flow = FlowWindow(window=60)
    trades, ts, price = [], 0.0, 100.0
    for _ in range(3000):
        ts += rng.random() * 0.2
        price = round(price + rng.choice([-0.01, 0, 0, 0.01]), 2)
        size = rng.choice([1, 10, 100, 0.5])
        trades.append((ts, price, size))
        flow.add(ts, price, size)
        if rng.random() < 0.05:
            expected = brute_force(trades, ts)
            got = flow.score(ts)
            assert (got is None) == (expected is None)
            if expected is not None:
                assert got == pytest.approx(expected, abs=1e-6)


def test_it_keeps_at_most_max_trades_and_the_sums_of_exactly_those():
    rng = random.Random(9)
    flow = FlowWindow(window=1e9, max_trades=100)
    trades, price = [], 50.0
    for i in range(10_000):  # enough to shrink its arrays many times
        price = round(price + rng.choice([-0.01, 0.01]), 2)
        size = rng.choice([1, 3, 200])
        trades.append((float(i), price, size))
        flow.add(float(i), price, size)
        assert len(flow) <= 100
    # Every trade here has a side, so the window holds the last 100 trades.
    expected = brute_force(trades, now=9_999.0, window=99.0)
    assert flow.score(9_999.0) == pytest.approx(expected, abs=1e-6)
    assert len(flow) == 100
