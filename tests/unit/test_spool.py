import logging
from decimal import Decimal

from api.collector.spool import Spool, encode_bar, encode_candle
from api.market.bars import SecondBar, TickCandle
from api.sentiment.scoring import Scores


def bar(second: int, close: str = "10.5", revision: bool = False) -> SecondBar:
    return SecondBar(
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
    )


def test_it_round_trips_bars_scores_and_candles_exactly(tmp_path):
    spool = Spool(tmp_path)
    scores = Scores(
        composite=12.5, news=None, technical=-3.0, flow=40.0, computed_at=9.5
    )
    spool.append([encode_bar(bar(100), scores), encode_bar(bar(101), None)])
    spool.append([encode_candle(candle(7))])
    contents = spool.load()
    assert contents.bars[("AAPL", 100)] == (bar(100), scores)
    assert contents.bars[("AAPL", 101)] == (bar(101), None)
    assert contents.candles[("AAPL", 7)] == candle(7)
    assert contents.bad_lines == 0


def test_it_lets_the_last_record_of_a_key_win(tmp_path):
    spool = Spool(tmp_path)
    spool.append([encode_bar(bar(100, "10.5"), None)])
    spool.append([encode_bar(bar(100, "12.75", revision=True), None)])
    assert spool.load().bars[("AAPL", 100)][0].close == Decimal("12.75")


def test_it_recovers_a_truncated_last_record_with_a_warning(tmp_path, caplog):
    spool = Spool(tmp_path)
    spool.append([encode_bar(bar(s), None) for s in (100, 101, 102)])
    data = spool.path.read_bytes()
    spool.path.write_bytes(data[:-25])  # a crash in the middle of the last line
    with caplog.at_level(logging.WARNING):
        contents = spool.load()
    assert sorted(contents.bars) == [("AAPL", 100), ("AAPL", 101)]
    assert contents.bad_lines == 1
    assert "spool line 3 is damaged" in caplog.text


def test_it_starts_empty_after_clear(tmp_path):
    spool = Spool(tmp_path)
    spool.append([encode_bar(bar(100), None)])
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
            spool.append([encode_bar(bar(second), None)])
    contents = spool.load()
    kept = sorted(second for _, second in contents.bars)
    assert spool.size <= 4000
    assert kept == list(range(140 - len(kept), 140))  # the newest, contiguous
    assert spool.dropped == 40 - len(kept) > 0
    assert "reached its cap" in caplog.text
    assert "% of its" in caplog.text  # the warning as it filled
