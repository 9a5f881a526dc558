"""Observed intervals and gaps (api/market/coverage.py), and the writer's
coverage book (api/collector/coverage.py) without a database."""

from api.collector.coverage import DEAD_SCAN_EVERY, HEARTBEAT, CoverageBook
from api.market.coverage import (
    end_reason,
    gaps,
    merge,
    partial_seconds,
    unobserved_seconds,
)
from api.pipeline.messages import Watch


def test_merge_joins_overlapping_and_touching_intervals():
    assert merge([(5, 7), (1, 3), (3, 4), (6, 9), (10, 10)]) == [(1, 4), (5, 9)]


def test_gaps_are_what_no_interval_covers_inside_the_window():
    spans = [(2, 4), (3, 6), (8, 9)]
    assert gaps(0, 10, spans) == [(0, 2), (6, 8), (9, 10)]
    assert gaps(2.5, 5, spans) == []
    assert gaps(0, 10, []) == [(0, 10)]
    assert gaps(20, 30, spans) == [(20, 30)]


def test_edges_inside_a_second_make_it_partial():
    spans = [(10.25, 20.0), (20.0, 30.5)]  # touching: one interval 10.25-30.5
    assert partial_seconds(spans) == {10, 30}
    # Whole seconds not observed in full: the gaps widened, and the cut seconds.
    assert unobserved_seconds(0, 40, spans) == [(0, 11), (30, 40)]
    assert unobserved_seconds(0, 40, [(5.0, 7.0), (7.5, 9.2)]) == [
        (0, 5),
        (7, 8),
        (9, 40),
    ]


def test_the_receivers_words_become_stored_reasons():
    assert end_reason("stopped") == "shutdown"
    assert end_reason("market closed") == "market_close"
    assert end_reason("stale") == "stale"
    assert end_reason("connection dropped") == "reconnect"
    assert end_reason("pong timeout") == "reconnect"


def book(tmp_path=None) -> CoverageBook:
    return CoverageBook(source="eodhd_ws", collector="here:1:0", directory=tmp_path)


def test_an_interval_is_stored_when_it_opens_and_its_reach_only_once_bars_are():
    b = book()
    b.watch(Watch("us", ("AAPL", "MSFT"), 100.0))
    opened = b.ready(now=0.0, everything_stored=False)
    assert sorted((i.symbol, i.start, i.end) for i in opened) == [
        ("AAPL", 100.0, None),
        ("MSFT", 100.0, None),
    ]
    b.stored(opened, now=0.0)
    b.progress(110.0)
    # Bars handed on before the progress still wait: the reach does not move.
    assert b.ready(now=10.0, everything_stored=False) == []
    reached = b.ready(now=10.0, everything_stored=True)
    assert {i.seen for i in reached} == {110.0}
    b.stored(reached, now=10.0)
    b.progress(112.0)
    assert b.ready(now=11.0, everything_stored=True) == []  # not a heartbeat yet
    beat = b.ready(now=10.0 + HEARTBEAT, everything_stored=True)
    assert {(i.symbol, i.seen) for i in beat} == {("AAPL", 112.0), ("MSFT", 112.0)}


def test_dead_collectors_are_looked_for_at_first_on_new_symbols_and_then_rarely():
    b = book()
    b.watch(Watch("us", ("AAPL",), 100.0))
    assert b.dead_scan_due(now=0.0)  # the first store: a crash before this run
    b.dead_scanned(now=0.0)
    assert not b.dead_scan_due(now=HEARTBEAT)  # not at every heartbeat
    b.watch(Watch("us", ("AAPL",), 101.0))  # a reconnect: nothing new observed
    assert not b.dead_scan_due(now=2 * HEARTBEAT)
    b.watch(Watch("us", ("MSFT",), 102.0))  # a symbol added live
    assert b.dead_scan_due(now=2 * HEARTBEAT)
    b.dead_scanned(now=2 * HEARTBEAT)
    assert not b.dead_scan_due(now=2 * HEARTBEAT + DEAD_SCAN_EVERY - 0.1)
    assert b.dead_scan_due(now=2 * HEARTBEAT + DEAD_SCAN_EVERY)


def test_an_ended_interval_waits_for_its_bars_then_is_stored_with_its_reason():
    b = book()
    b.watch(Watch("us", ("AAPL",), 100.0))
    b.stored(b.ready(0.0, False), 0.0)
    b.watch(Watch("us", ("AAPL",), 130.5, True, "connection dropped"))
    b.progress(130.0)
    assert b.ready(1.0, True) == []  # bars up to 130.5 not all handed on yet
    b.progress(131.0)
    [ended] = b.ready(2.0, True)
    assert (ended.end, ended.reason, ended.detail) == (
        130.5,
        "reconnect",
        "connection dropped",
    )


def test_a_standby_that_takes_over_claims_only_what_it_kept():
    b = book()
    b.watch(Watch("us", ("AAPL",), 100.0))  # never stored: a standby stores nothing
    b.clip_unstored(earliest=400.0)
    [interval] = b.ready(0.0, False)
    assert (interval.start, interval.seen) == (400.0, 400.0)


def test_what_could_not_be_stored_is_kept_for_the_next_run(tmp_path):
    b = book(tmp_path)
    b.watch(Watch("us", ("AAPL",), 100.0))
    b.progress(105.0)
    b.ready(10.0, True)
    assert b.save_pending() == 1
    again = book(tmp_path)
    [kept] = again.everything()
    # It was open when the process stopped: it ends where its bars were stored.
    assert (kept.start, kept.end, kept.reason, kept.collector) == (
        100.0,
        105.0,
        "crash",
        "here:1:0",
    )
    assert not (tmp_path / "coverage-pending.json").exists()
