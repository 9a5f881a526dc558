import logging
from decimal import Decimal

import pytest

from api.collector.spool import Spool, SpoolUnusable
from api.market.bars import TickCandle, TimeBar
from api.pipeline.kinds import SECOND, TICK100
from api.sentiment.scoring import Scores


def bar(second: int, close: str = "10.5", revision: bool = False) -> TimeBar:
    return TimeBar(
        symbol="AAPL",
        second=second,
        open=Decimal("10"),
        high=Decimal("11"),
        low=Decimal("9.5"),
        close=Decimal(close),
        volume=Decimal("0.0000012345"),
        tick_count=3,
        vwap=Decimal("10.25"),
        first_ts_ms=second * 1000,
        last_ts_ms=second * 1000 + 999,
        price_change_1sec=None,
        price_momentum_5sec=Decimal("-0.125"),
        revision=revision,
        eligible_count=2,
    )


def candle(number: int) -> TickCandle:
    return TickCandle(
        symbol="AAPL",
        number=number,
        open=Decimal("1"),
        high=Decimal("2"),
        low=Decimal("0.5"),
        close=Decimal("1.5"),
        volume=Decimal("100.25"),
        tick_count=100,
        first_ts_ms=1000,
        last_ts_ms=4500,
        duration_seconds=Decimal("3.5"),
        completed_at_ms=4500,
        eligible_count=60,
    )


def test_it_round_trips_bars_scores_and_candles_exactly(tmp_path):
    spool = Spool(tmp_path)
    scores = Scores(
        composite=12.5, news=None, technical=-3.0, flow=40.0, computed_at=9.5
    )
    spool.append([SECOND.encode((bar(100), scores)), SECOND.encode((bar(101), None))])
    spool.append([TICK100.encode(candle(7))])
    contents = spool.load()
    assert contents.items[SECOND][("AAPL", 100)] == (bar(100), scores)
    assert contents.items[SECOND][("AAPL", 101)] == (bar(101), None)
    assert contents.items[TICK100][("AAPL", 7)] == candle(7)
    assert contents.bad_lines == 0


def test_it_lets_the_last_record_of_a_key_win(tmp_path):
    spool = Spool(tmp_path)
    spool.append([SECOND.encode((bar(100, "10.5"), None))])
    spool.append([SECOND.encode((bar(100, "12.75", revision=True), None))])
    assert spool.load().items[SECOND][("AAPL", 100)][0].close == Decimal("12.75")


def test_it_recovers_a_truncated_last_record_with_a_warning(tmp_path, caplog):
    spool = Spool(tmp_path)
    spool.append([SECOND.encode((bar(s), None)) for s in (100, 101, 102)])
    data = spool.path.read_bytes()
    spool.path.write_bytes(data[:-25])  # a crash in the middle of the last line
    with caplog.at_level(logging.WARNING):
        contents = spool.load()
    assert sorted(contents.items[SECOND]) == [("AAPL", 100), ("AAPL", 101)]
    assert contents.bad_lines == 1
    assert contents.damaged == [data[:-25].decode().split("\n")[2]]
    assert "holds 1 damaged lines; the rest is kept" in caplog.text


def test_it_never_glues_a_new_record_onto_a_torn_last_line(tmp_path):
    spool = Spool(tmp_path)
    spool.append([SECOND.encode((bar(s), None)) for s in (100, 101)])
    spool.path.write_bytes(spool.path.read_bytes()[:-10])  # torn by a crash
    restarted = Spool(tmp_path)  # the next run appends to the same file
    restarted.append([SECOND.encode((bar(102), None)), TICK100.encode(candle(8))])
    contents = restarted.load()
    assert sorted(contents.items[SECOND]) == [("AAPL", 100), ("AAPL", 102)]
    assert contents.items[TICK100][("AAPL", 8)] == candle(8)
    assert contents.bad_lines == 1  # only the torn record itself


def test_it_hands_back_records_that_parse_but_do_not_decode(tmp_path):
    spool = Spool(tmp_path)
    spool.append(
        [SECOND.encode((bar(100), None)), {"k": "s", "sym": "AAPL"}, {"k": "x"}]
    )
    spool.path.write_text(spool.path.read_text() + "[1, 2]\n")
    contents = spool.load()
    assert list(contents.items[SECOND]) == [("AAPL", 100)]
    assert len(contents.damaged) == 3


def test_it_keeps_its_identity_across_runs_and_refuses_a_second_owner(tmp_path):
    first = Spool(tmp_path)
    identity = first.claim()
    assert len(identity) == 16
    with pytest.raises(SpoolUnusable, match="in use by another collector"):
        Spool(tmp_path).claim()
    first.release()
    assert Spool(tmp_path).claim() == identity


def test_it_says_in_one_line_why_a_spool_path_cannot_be_used(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(SpoolUnusable, match="cannot be used") as info:
        Spool(not_a_dir).claim()
    assert "\n" not in str(info.value)
    (tmp_path / "d" / "spool.jsonl").mkdir(parents=True)  # the file is a directory
    with pytest.raises(SpoolUnusable, match="spool.jsonl cannot be used"):
        Spool(tmp_path / "d").claim()


def test_it_starts_empty_after_clear(tmp_path):
    spool = Spool(tmp_path)
    spool.append([SECOND.encode((bar(100), None))])
    assert spool.size > 0
    spool.clear()
    assert spool.size == 0
    assert len(spool.load()) == 0


def test_it_keeps_the_newest_records_past_its_cap_and_counts_the_dropped(
    tmp_path, caplog
):
    spool = Spool(tmp_path, max_bytes=4000)
    with caplog.at_level(logging.WARNING):
        for second in range(100, 140):
            spool.append([SECOND.encode((bar(second), None))])
    contents = spool.load()
    kept = sorted(second for _, second in contents.items[SECOND])
    assert spool.size <= 4000
    assert kept == list(range(140 - len(kept), 140))  # the newest, contiguous
    assert spool.dropped == 40 - len(kept) > 0
    assert "reached its cap" in caplog.text
    assert "% of its" in caplog.text  # the warning as it filled
