"""The store against the real database: rows the database refuses are isolated,
the rest written; and database calls that hang are abandoned in time."""

import threading
import time
from decimal import Decimal

import pytest

from django.db import connection

from api.collector.database import DatabaseLane
from api.market.bars import TickCandle, TimeBar
from api.models import SecondSnapshot, TickCandle100, Ticker
from api.pipeline import store as store_module
from api.pipeline.errors import CallTimeout
from api.pipeline.kinds import SECOND, TICK100
from api.pipeline.store import Store

pytestmark = pytest.mark.django_db(transaction=True)


def bar(second: int, price: str = "101.5") -> tuple[TimeBar, None]:
    p = Decimal(price)
    return (
        TimeBar(
            "AAPL", second, p, p, p, p, Decimal(3), 1, None, 0, 0, None, None, False, 1
        ),
        None,
    )


def candle(number: int, price: str = "101.5") -> TickCandle:
    p = Decimal(price)
    return TickCandle(
        "AAPL", number, p, p, p, p, Decimal(300), 100, 1000, 2000, Decimal(1), 2000, 100
    )


@pytest.mark.postgres
def test_it_isolates_the_rows_the_database_refuses_and_writes_the_rest(monkeypatch):
    # Skip the store's own checks, so the database itself refuses the rows:
    # a price of 1e15 overflows numeric(24,10).
    monkeypatch.setattr(store_module, "fits", lambda value, digits, places: True)
    bad_seconds = {1_700_000_007, 1_700_000_031}
    bars = [
        bar(s, "1E15" if s in bad_seconds else "101.5")
        for s in range(1_700_000_000, 1_700_000_040)
    ]
    candles = [candle(n, "1E15" if n == 3 else "101.5") for n in range(1, 6)]
    outcome = Store("eodhd_ws").write({SECOND: bars, TICK100: candles})
    assert {r.item[0].second for r in outcome.rejected if r.kind is SECOND} == (
        bad_seconds
    )
    assert [r.item.number for r in outcome.rejected if r.kind is TICK100] == [3]
    assert all("numeric field overflow" in r.reason for r in outcome.rejected)
    assert outcome.written == {"second": 38, "tick100": 4}
    stored = {int(t.timestamp()) for t in SecondSnapshot.objects.values_list(
        "timestamp", flat=True
    )}  # fmt: skip
    assert stored == {s for s in range(1_700_000_000, 1_700_000_040)} - bad_seconds
    assert sorted(TickCandle100.objects.values_list("candle_number", flat=True)) == [
        1,
        2,
        4,
        5,
    ]
    # Bisection: a handful of statements, not one per row (and the NOTIFY).
    assert outcome.statements <= 2 + 2 * 2 * 6 + 1


def test_it_rejects_what_no_column_can_hold_before_any_statement():
    outcome = Store("eodhd_ws").write(
        {SECOND: [bar(1_700_000_000), bar(1_700_000_001, "1E-12"), bar(10**13)]}
    )
    reasons = sorted(r.reason for r in outcome.rejected)
    assert len(reasons) == 2
    assert "does not fit numeric(24,10)" in reasons[0]
    assert "out of range" in reasons[1]
    notify = connection.vendor == "postgresql"
    assert outcome.written == {"second": 1} and outcome.statements == 1 + notify
    assert SecondSnapshot.objects.count() == 1


def test_it_writes_bars_whose_prints_set_no_price():
    # A second of odd lots and a 100-trade bar of them: NULL prices, no eligible
    # print, volume kept. Zero is a count like any other here.
    odd_lots = TimeBar(
        "AAPL", 1_700_000_000, None, None, None, None, Decimal(37), 4, Decimal("10.5"),
        0, 900, None, None, False, 0,
    )  # fmt: skip
    candle = TickCandle(
        "AAPL", 1, None, None, None, None, Decimal(300), 100, 1000, 2000, Decimal(1),
        2000, 0,
    )  # fmt: skip
    outcome = Store("eodhd_ws").write({SECOND: [(odd_lots, None)], TICK100: [candle]})
    assert outcome.rejected == []
    row = SecondSnapshot.objects.get()
    assert (row.ohlc_1sec_open, row.ohlc_1sec_close, row.ohlc_1sec_eligible_count) == (
        None,
        None,
        0,
    )
    assert (row.ohlc_1sec_volume, row.ohlc_1sec_tick_count) == (Decimal(37), 4)
    assert TickCandle100.objects.get().eligible_count == 0


def test_it_abandons_a_call_that_does_not_return_and_carries_on():
    lane = DatabaseLane(timeout=0.5)
    release = threading.Event()
    began = time.monotonic()
    with pytest.raises(CallTimeout):
        lane.run(release.wait, 30)
    assert time.monotonic() - began < 0.5 + 1.5  # the bound, plus the grace
    assert lane.abandoned == 1
    # The next call runs on a fresh thread and connection at once.
    assert lane.run(lambda: connection.vendor) in ("postgresql", "sqlite")
    release.set()
    lane.close()


def test_it_cuts_a_call_short_when_the_caller_must_stop():
    lane = DatabaseLane(timeout=30)
    release = threading.Event()
    stop_at = time.monotonic() + 0.3
    began = time.monotonic()
    with pytest.raises(CallTimeout):
        lane.run(release.wait, 30, idle=lambda: None, cutoff=lambda: stop_at)
    assert time.monotonic() - began < 2.0
    release.set()
    lane.close()


@pytest.mark.postgres  # SQLite caps parameters per statement: it splits inserts
def test_it_sends_one_upsert_per_kind_and_write_whatever_the_number_of_bars():
    from django.test.utils import CaptureQueriesContext

    from api.pipeline.kinds import MINUTE

    store = Store("eodhd_ws")
    store.ticker_id("AAPL")  # looked up once, then cached
    minutes = [bar(s) for s in range(1_700_000_040, 1_700_000_040 + 300, 60)]
    batch = {
        SECOND: [bar(s) for s in range(1_700_000_000, 1_700_000_500)],
        MINUTE: minutes,
        TICK100: [candle(n) for n in range(1, 21)],
    }
    with CaptureQueriesContext(connection) as queries:
        outcome = store.write(batch)
    # One transaction: the upserts and the NOTIFY for the pushed updates
    # (api/stream.py) commit together.
    sql = [q["sql"] for q in queries.captured_queries]
    assert sql[0] == "BEGIN" and sql[-2:] == ["NOTIFY collector_bars", "COMMIT"]
    upserts = sql[1:-2]
    assert all("ON CONFLICT" in q for q in upserts)
    statements = [q.split(" (", 1)[0] for q in upserts]
    assert statements == [
        'INSERT INTO "api_second_snapshot"',
        'INSERT INTO "api_minute_snapshot"',
        'INSERT INTO "api_tick_candle_100"',
    ]
    assert outcome.statements == 3 + 1
    assert outcome.written == {"second": 500, "minute": 5, "tick100": 20}


@pytest.mark.postgres
def test_a_write_that_fails_midway_stores_none_of_it(monkeypatch):
    from django.db import OperationalError

    store = Store("eodhd_ws")
    real = Store._statement

    def second_kind_fails(self, kind, rows, out):
        if kind is TICK100:
            raise OperationalError("server closed the connection unexpectedly")
        real(self, kind, rows, out)

    monkeypatch.setattr(Store, "_statement", second_kind_fails)
    with pytest.raises(OperationalError):
        store.write({SECOND: [bar(1_700_000_000)], TICK100: [candle(1)]})
    # The seconds' upsert went out but never committed; the ticker the write
    # created went with it, and the store does not remember its id.
    assert SecondSnapshot.objects.count() == 0 and not Ticker.objects.exists()
    assert store._ticker_ids == {}
    monkeypatch.setattr(Store, "_statement", real)
    outcome = store.write({SECOND: [bar(1_700_000_000)], TICK100: [candle(1)]})
    assert outcome.written == {"second": 1, "tick100": 1}
    assert (SecondSnapshot.objects.count(), TickCandle100.objects.count()) == (1, 1)


def test_stored_tails_reads_every_symbols_last_bars_in_one_statement():
    from django.test.utils import CaptureQueriesContext

    from api.pipeline.kinds import KINDS
    from api.pipeline.store import stored_tails

    store = Store("eodhd_ws")
    store.write(
        {
            SECOND: [bar(s) for s in (1_700_000_005, 1_700_000_002, 1_700_000_009)],
            TICK100: [candle(n) for n in (3, 1, 2)],
        }
    )
    Ticker.objects.create(symbol="MSFT")  # a ticker without bars
    with CaptureQueriesContext(connection) as queries:
        tails = stored_tails(["AAPL", "MSFT", "NVDA"])
    assert len(queries.captured_queries) == 1
    assert set(tails) == {"AAPL", "MSFT"}  # no ticker, no entry
    assert tails["AAPL"][SECOND] == 1_700_000_009
    assert tails["AAPL"][TICK100] == 3
    others = [kind for kind in KINDS if kind not in (SECOND, TICK100)]
    assert all(tails["AAPL"][kind] is None for kind in others)
    assert all(value is None for value in tails["MSFT"].values())


def test_a_first_write_of_many_symbols_looks_their_tickers_up_at_once():
    from dataclasses import replace

    from django.test.utils import CaptureQueriesContext

    symbols = [f"S{i:03d}" for i in range(50)]
    Ticker.objects.bulk_create([Ticker(symbol=s) for s in symbols])
    bars = [(replace(bar(1_700_000_000)[0], symbol=s), None) for s in symbols]
    store = Store("eodhd_ws")
    with CaptureQueriesContext(connection) as queries:
        outcome = store.write({SECOND: bars})
    ticker_reads = [q for q in queries.captured_queries if '"api_ticker"' in q["sql"]]
    assert len(ticker_reads) == 1
    assert outcome.written == {"second": 50}
    assert SecondSnapshot.objects.count() == 50
