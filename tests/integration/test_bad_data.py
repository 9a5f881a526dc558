"""Data the database cannot take never stops the bars behind it: glitch prints,
figures too large for their column, spool records that are torn, garbled or
unstorable."""

import json
import time
from decimal import Decimal

import pytest

from api.collector.spool import Spool
from api.market.bars import TickCandle, TimeBar
from api.models import SecondSnapshot
from api.pipeline.kinds import SECOND, TICK100
from tests.integration import reference
from tests.integration.test_collector import collector, feed, received
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def glitch_burst(server, app, price: float) -> None:
    """1.5 s of MSFT prints at `price` in the middle of a steady stream."""
    assert wait_until(lambda: received(app) > 600, 20)
    server.set_glitch("MSFT", price)
    time.sleep(1.5)
    server.set_glitch("MSFT", None)
    before = received(app)
    assert wait_until(lambda: received(app) > before + 900, 20)
    server.set_silent(True)
    time.sleep(1.0)  # everything sent is read


def glitched(sent: list[dict], price: float) -> tuple[set, set]:
    """The 1-second and 100-trade bar keys that hold a glitch print."""
    seconds = {("MSFT", t["t"] // 1000) for t in sent if t["p"] == price}
    msft = [t for t in sent if t["s"] == "MSFT"]
    candles = {
        ("MSFT", n // 100 + 1)
        for n, t in enumerate(msft)
        if t["p"] == price and n < len(msft) // 100 * 100
    }
    return seconds, candles


def test_it_keeps_every_bar_through_a_burst_of_glitch_prints(tmp_path):
    with feed(rate=300, seed=79, jitter_ms=0) as server:
        with collector(server, spool_dir=tmp_path) as app:
            glitch_burst(server, app, 1e-10)
            assert app.shutdown() == 0
        sent = server.sent_trades()
    seconds, _ = glitched(sent, 1e-10)
    assert len(seconds) >= 2
    # The prints are kept as the feed sent them (a print is not ours to judge:
    # the trade-condition rules decide what moves a bar); 1e-10 fits the price
    # columns exactly, so every bar - the glitch's too - is stored and right.
    start = app.aggregator.start_second
    assert reference.stored_second_bars() == reference.second_bars(sent, start)
    assert reference.stored_tick_candles() == reference.tick_candles(sent)
    assert not app.writer.quarantine.counts
    # The percent change out of the glitch (about +4e14 %) cannot fit its
    # numeric(20,6) column: NULL, counted - not a poisoned batch.
    nulled = app.writer.stats.nulled
    assert nulled["price_change_1sec"] >= 1, nulled
    rows = list(
        SecondSnapshot.objects.filter(ticker__symbol="MSFT").order_by("timestamp")
    )
    out_of_glitch = [
        row
        for before, row in zip(rows, rows[1:], strict=False)
        if before.ohlc_1sec_close == Decimal("1e-10")
        and row.ohlc_1sec_close > Decimal(1)
    ]
    assert out_of_glitch
    assert all(row.price_change_1sec is None for row in out_of_glitch)
    assert app.writer.stats.db_errors == {}


def test_it_quarantines_bars_no_column_can_hold_and_stores_all_the_rest(tmp_path):
    with feed(rate=300, seed=83, jitter_ms=0) as server:
        with collector(server, spool_dir=tmp_path) as app:
            glitch_burst(server, app, 1e-12)  # finer than the columns' 10 places
            assert app.shutdown() == 0
        sent = server.sent_trades()
    bad_seconds, bad_candles = glitched(sent, 1e-12)
    assert bad_seconds and bad_candles
    start = app.aggregator.start_second
    expected = reference.second_bars(sent, start)
    stored = reference.stored_second_bars()
    assert stored == {k: v for k, v in expected.items() if k not in bad_seconds}
    candles = reference.tick_candles(sent)
    assert reference.stored_tick_candles() == {
        k: v for k, v in candles.items() if k not in bad_candles
    }
    # Every quarantined bar is in the dead-letter file, exactly, with its reason.
    lines = (tmp_path / "quarantine.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {
        (r["record"]["sym"], r["record"]["sec"])
        for r in records
        if r["kind"] == "second"
    } == bad_seconds
    assert {
        (r["record"]["sym"], r["record"]["num"])
        for r in records
        if r["kind"] == "tick100"
    } == bad_candles
    bad_minutes = {(symbol, second // 60 * 60) for symbol, second in bad_seconds}
    assert {
        (r["record"]["sym"], r["record"]["sec"])
        for r in records
        if r["kind"] == "minute"
    } == bad_minutes
    assert reference.stored_minute_bars() == {
        k: v
        for k, v in reference.minute_bars(sent, start).items()
        if k not in bad_minutes
    }
    assert all("does not fit numeric(24,10)" in r["reason"] for r in records)
    assert app.writer.quarantine.counts == {
        "second": len(bad_seconds),
        "minute": len(bad_minutes),
        "tick100": len(bad_candles),
    }


def old_bar(second: int) -> TimeBar:
    price = Decimal("101.25")
    return TimeBar(
        "AAPL", second, price, price, price, price, Decimal(7), 1, price,
        second * 1000, second * 1000, None, None, False, 1,
    )  # fmt: skip


def test_it_writes_a_damaged_spool_keeping_what_is_good_and_quarantining_the_rest(
    tmp_path,
):
    then = int(time.time()) - 3600
    good = [
        SECOND.encode((old_bar(then), None)),
        SECOND.encode((old_bar(then + 1), None)),
    ]
    candle = TickCandle(
        "AAPL", 7, Decimal(1), Decimal(2), Decimal("0.5"), Decimal("1.5"),
        Decimal(300), 100, then * 1000, then * 1000 + 900, Decimal("0.9"),
        then * 1000 + 900, 100,
    )  # fmt: skip
    unstorable = SECOND.encode((old_bar(10**13), None))  # a second far out of range
    spool = Spool(tmp_path)
    spool.append([good[0], unstorable])
    text = spool.path.read_text()
    spool.path.write_text(
        text
        + "{not json at all\n"
        + json.dumps(good[1])
        + "\n"
        + json.dumps(TICK100.encode(candle))
        + "\n"
        + json.dumps(good[1])[:40]  # a record torn by a crash, no newline
    )
    with feed(rate=200, seed=89, jitter_ms=0, max_trades=600) as server:
        with collector(server, symbols=["AAPL"], spool_dir=tmp_path) as app:
            assert wait_until(lambda: received(app) == 600, 20)
            assert wait_until(lambda: app.writer.stats.replayed == 3, 10)
            assert app.shutdown() == 0
    stored = reference.stored_second_bars()
    assert stored[("AAPL", then)] == (Decimal("101.25"),) * 4 + (Decimal(7), 1)
    assert ("AAPL", then + 1) in stored
    assert reference.stored_tick_candles()[("AAPL", 7)][0] == Decimal(1)
    # Live numbering went on after the spooled candle.
    assert ("AAPL", 8) in reference.stored_tick_candles()
    records = [
        json.loads(line)
        for line in (tmp_path / "quarantine.jsonl").read_text().splitlines()
    ]
    assert sorted(r["kind"] for r in records) == ["damaged", "damaged", "second"]
    assert [r["record"]["sec"] for r in records if r["kind"] == "second"] == [10**13]
    assert "out of range" in [r for r in records if r["kind"] == "second"][0]["reason"]
    assert Spool(tmp_path).size == 0  # all written or quarantined
