"""What waits to be written: bounded in memory, spooled when asked, and never a
bar lost or written twice by mistake."""

from dataclasses import replace
from decimal import Decimal

from api.collector.backlog import Backlog
from api.collector.spool import Spool
from api.market.bars import TickCandle, TimeBar
from api.pipeline.kinds import MINUTE, SECOND, TICK100
from api.pipeline.messages import Bars


def bar(second: int, close: str = "1", revision: bool = False) -> TimeBar:
    one, c = Decimal(1), Decimal(close)
    return TimeBar(
        "AAPL", second, one, one, one, c, one, 1, one, 0, 0, None, None, revision, 1
    )


def candle(number: int, symbol: str = "AAPL") -> TickCandle:
    one = Decimal(1)
    return TickCandle(symbol, number, one, one, one, one, one, 100, 0, 0, one, 0, 100)


def seconds(*items) -> Bars:
    return Bars({SECOND: [(item, None) for item in items]})


def backlog(spool=None, max_pending=1000) -> tuple[Backlog, list]:
    quarantined = []
    return (
        Backlog(spool, max_pending, lambda lines, where: quarantined.extend(lines)),
        quarantined,
    )


def test_it_drops_the_oldest_past_the_limit_without_a_spool_and_counts_them():
    b, _ = backlog()
    for second in range(1, 1102):
        b.add(seconds(bar(second)))
    assert b.waiting <= 1000
    assert min(k[1] for k in b.pending[SECOND]) == 1102 - b.waiting
    assert b.overflow_dropped == 1101 - b.waiting


def test_it_keeps_the_oldest_on_disk_past_the_limit_with_a_spool(tmp_path):
    spool = Spool(tmp_path)
    b, _ = backlog(spool)
    for second in range(1, 1102):
        b.add(seconds(bar(second)))
    assert b.waiting <= 1000
    assert b.overflow_dropped == 0 and b.spool_has_more
    on_disk = {second for _, second in spool.load().items[SECOND]}
    in_memory = {second for _, second in b.pending[SECOND]}
    assert on_disk | in_memory == set(range(1, 1102))


def test_it_lets_a_revision_replace_its_pending_original_and_stay_new():
    b, _ = backlog()
    assert b.add(seconds(bar(10))) is True  # a second closed: a flush is due
    assert b.add(seconds(bar(10, "2", revision=True))) is False
    assert b.add(Bars({TICK100: [candle(1)]})) is False  # rides along
    ((item, new),) = b.pending[SECOND].values()
    assert item[0].close == Decimal(2) and new  # the row is still new to the db


def test_it_only_lets_go_of_what_was_written_not_of_what_replaced_it():
    b, _ = backlog()
    b.add(seconds(bar(10), bar(11)))
    (chunk,) = b.chunks(100)
    b.add(seconds(bar(11, "3", revision=True)))  # arrives while the chunk is out
    b.written(chunk)
    assert list(b.pending[SECOND]) == [("AAPL", 11)]
    assert b.pending[SECOND][("AAPL", 11)][0][0].close == Decimal(3)


def test_it_hands_out_chunks_oldest_first_for_every_kind():
    b, _ = backlog(max_pending=10_000)
    b.add(seconds(*(bar(s) for s in range(5000, 0, -1))))
    b.add(Bars({TICK100: [candle(n) for n in range(1, 4)], MINUTE: []}))
    chunks = list(b.chunks(2000))
    assert [len(c[SECOND]) for c in chunks] == [2000, 2000, 1000]
    assert [key[1] for key, _, _ in chunks[0][SECOND][:3]] == [1, 2, 3]
    assert [key[1] for key, _, _ in chunks[0][TICK100]] == [1, 2, 3]
    assert TICK100 not in chunks[1]


def test_it_spools_only_what_changed_since_the_last_spooling(tmp_path):
    spool = Spool(tmp_path)
    b, _ = backlog(spool)
    b.add(seconds(bar(1), bar(2)))
    assert b.spool_dirty() == 2
    assert b.spool_dirty() == 0
    b.add(seconds(bar(2, "5", revision=True)))
    assert b.spool_dirty() == 1
    assert spool.load().items[SECOND][("AAPL", 2)][0].close == Decimal(5)


def test_it_keeps_a_standbys_last_bars_and_no_candles():
    b, _ = backlog()
    b.add(seconds(*(bar(s) for s in range(100, 200))))
    b.add(Bars({TICK100: [candle(1)]}))
    b.keep_recent(horizon=150)
    assert sorted(k[1] for k in b.pending[SECOND]) == list(range(150, 200))
    assert not b.pending[TICK100]


def test_it_trims_only_the_symbols_it_stands_by_for_and_writes_the_rest():
    b, _ = backlog()
    b.add(seconds(*(bar(s) for s in range(100, 200))))
    b.add(seconds(*(replace(bar(s), symbol="MSFT") for s in range(100, 200))))
    b.add(Bars({TICK100: [candle(1), candle(4, "MSFT")]}))
    standby = lambda _, key: key[0] == "MSFT"  # noqa: E731 - another writes MSFT
    b.keep_recent(horizon=150, which=standby)
    assert sorted(k[1] for k in b.pending[SECOND] if k[0] == "AAPL") == list(
        range(100, 200)
    )
    assert sorted(k[1] for k in b.pending[SECOND] if k[0] == "MSFT") == list(
        range(150, 200)
    )
    assert list(b.pending[TICK100]) == [("AAPL", 1)]
    mine = lambda _, key: key[0] == "AAPL"  # noqa: E731
    chunk_symbols = {
        key[0]
        for chunk in b.chunks(1000, mine)
        for es in chunk.values()
        for key, *_ in es
    }
    assert chunk_symbols == {"AAPL"}
    assert b.drop(standby) == 50
    assert {k[0] for p in b.pending.values() for k in p} == {"AAPL"}


def test_it_follows_another_writer_in_memory_and_on_disk(tmp_path):
    spool = Spool(tmp_path)
    b, _ = backlog(spool)
    b.add(seconds(*(bar(s) for s in range(100, 110))))
    b.add(Bars({MINUTE: [(bar(60), None), (bar(120), None)]}))
    b.add(Bars({TICK100: [candle(7), candle(3, "MSFT")]}))
    b.spool_dirty()
    # Each kind has its own floor: the other writer stored seconds up to 104
    # and minutes up to the one starting at 60.
    b.follow(
        {SECOND: {"AAPL": 104}, MINUTE: {"AAPL": 60}}, lambda _, key: key[0] == "AAPL"
    )
    assert sorted(k[1] for k in b.pending[SECOND]) == list(range(105, 110))
    assert list(b.pending[MINUTE]) == [("AAPL", 120)]
    assert list(b.pending[TICK100]) == [("MSFT", 3)]  # another symbol: kept
    on_disk = spool.load().items
    assert sorted(k[1] for k in on_disk[SECOND]) == list(range(105, 110))
    assert list(on_disk[MINUTE]) == [("AAPL", 120)]
    assert list(on_disk[TICK100]) == [("MSFT", 3)]
