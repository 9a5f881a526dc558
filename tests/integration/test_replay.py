"""replay_frames: a journal rebuilds exactly the bars of its stream, idempotently."""

import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest

from django.core.management import call_command
from django.core.management.base import CommandError

from api.collector.journal import Journal
from api.market.bars import Partial
from api.models import Coverage, SecondSnapshot, TickCandle100, Ticker
from api.pipeline.kinds import MINUTE
from tests.integration.reference import (
    allows,
    second_bars,
    stored_minute_bars,
    stored_second_bars,
    stored_tick_candles,
    tick_candles,
)

pytestmark = pytest.mark.django_db

S0 = 1_795_960_800  # 2026-11-29T10:00:00Z, start of the first run
RESTART_AT = 310  # trades before it belong to run 1, the rest to run 2
LATE_AFTER = 250  # a print for second S0+3 arrives after this trade (S0+6.8)
FIRST_AAPL, FIRST_MSFT = 57, 1  # run 1 resumed numbering here


def iso(second: float) -> str:
    return datetime.fromtimestamp(second, tz=UTC).isoformat()


def build_stream() -> tuple[list[tuple], list[dict]]:
    """Journal events in order, ("frame", received_at, data) or ("mark", received_at,
    next numbers, carried), and the subscribed trades in arrival order: two runs,
    jittered exchange times, one late print, noise."""
    rng = random.Random(7)
    events: list[tuple] = [("mark", S0, {"AAPL": FIRST_AAPL, "MSFT": FIRST_MSFT}, {})]
    trades: list[dict] = []
    for i in range(600):
        if i == RESTART_AT:
            aapl = sum(1 for t in trades if t["s"] == "AAPL")
            msft = len(trades) - aapl
            events.append(
                (
                    "mark",
                    S0 + 10.0,  # the second run started at 10:00:10
                    {
                        "AAPL": FIRST_AAPL + aapl // 100,
                        "MSFT": FIRST_MSFT + msft // 100,
                    },
                    # Its partial 100-trade bars were saved at stop and continued.
                    {"AAPL": aapl % 100, "MSFT": msft % 100},
                    # So was the minute both runs share: it goes on from there.
                    {
                        MINUTE: {
                            ("AAPL", S0): open_minute(trades, "AAPL"),
                            ("MSFT", S0): open_minute(trades, "MSFT"),
                        }
                    },
                )  # fmt: skip
            )
            # Stamped before the run started: the live aggregator leaves that
            # second to the run before, but counts the trade for 100-trade bars.
            stale = {"s": "AAPL", "p": 151.0, "v": 3, "t": (S0 + 8) * 1000 + 900}
            events.append(("frame", S0 + 11.0, json.dumps(stale).encode()))
            trades.append(stale)
        gap = 3000 if i >= RESTART_AT else 0  # the collector was down 3 s
        received = S0 + 0.56 + i * 0.025 + gap / 1000
        trade = {
            "s": "MSFT" if i % 3 == 0 else "AAPL",
            "p": round(150 + rng.random() * 2, 2),
            "v": rng.randint(1, 500),
            # Up to 40 ms either way: trades arrive out of exchange-time order.
            "t": S0 * 1000 + 500 + i * 25 + gap + rng.randint(-40, 40),
            # A mix of prints the condition rules treat differently (S0 is a
            # Sunday: the extended-hours column, Form T is a regular print).
            "c": rng.choice([[], [], [12], [37], [14, 37, 41], [2], [16], [41]]),
            "dp": False,
            "ms": "open",
        }
        events.append(("frame", received, json.dumps(trade).encode()))
        trades.append(trade)
        if i == LATE_AFTER:
            late = {"s": "AAPL", "p": 999.5, "v": 7, "t": (S0 + 3) * 1000 + 250}
            events.append(("frame", received + 0.001, json.dumps(late).encode()))
            trades.append(late)
        if i == 100:
            at = received + 0.0005
            events.append(("frame", at, b"\xff\xfe not json, not even UTF-8"))
            events.append(
                ("frame", at, b'{"s":"TSLA","p":200.5,"v":1,"t":%d}' % 10**12)
            )
            quote = {"s": "AAPL", "bp": 150.1, "ap": 150.2, "t": S0 * 1000}
            events.append(("frame", at, json.dumps(quote).encode()))
    return events, trades


def open_minute(trades: list[dict], symbol: str) -> Partial:
    """What a run that stopped holding these trades had of minute S0, by the
    trade-condition rules."""
    mine = [(t["t"], n, t) for n, t in enumerate(trades) if t["s"] == symbol]
    lasts = [m for m in mine if allows(m[2], "last")]
    first = min(lasts, key=lambda x: (x[0], x[1]))
    last = max(lasts, key=lambda x: (x[0], x[1]))
    prices = [Decimal(str(t["p"])) for *_, t in mine if allows(t, "high_low")]
    counted = [t for *_, t in mine if allows(t, "volume")]
    return Partial(
        Decimal(str(first[2]["p"])), first[0], Decimal(str(last[2]["p"])), last[0],
        max(prices), min(prices), sum(Decimal(t["v"]) for t in counted),
        sum(Decimal(str(t["p"])) * Decimal(t["v"]) for t in counted), len(mine),
        len(prices), min(m[0] for m in mine), max(m[0] for m in mine),
    )  # fmt: skip


EVENTS, TRADES = build_stream()
STALE = {"s": "AAPL", "p": 151.0, "v": 3, "t": (S0 + 8) * 1000 + 900}
FRAMES = [event for event in EVENTS if event[0] == "frame"]
MARKS = [event[1:] for event in EVENTS if event[0] == "mark"]


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("journal")
    journal = Journal(directory, flush_interval=None, flush_records=200)
    for kind, received, *rest in EVENTS:
        if kind == "mark":
            journal.mark_start(
                rest[0],
                received_at=received,
                carried=rest[1],
                seeds=rest[2] if len(rest) > 2 else None,
            )
        else:
            journal.record(rest[0], received)
    journal.close()
    return directory


def expected_bars(conditions: str = "eodhd") -> dict:
    run2 = TRADES.index(STALE)
    return second_bars(TRADES[:run2] + TRADES[run2 + 1 :], conditions=conditions)


def expected_minutes() -> dict:
    run2 = TRADES.index(STALE)
    return second_bars(TRADES[:run2] + TRADES[run2 + 1 :], width=60)


def expected_candles(conditions: str = "eodhd") -> dict:
    aapl = [t for t in TRADES if t["s"] == "AAPL"]
    msft = [t for t in TRADES if t["s"] == "MSFT"]
    return {
        **tick_candles(aapl, first_number=FIRST_AAPL, conditions=conditions),
        **tick_candles(msft, first_number=FIRST_MSFT, conditions=conditions),
    }


def replay(*args) -> str:
    out, err = StringIO(), StringIO()
    call_command("replay_frames", *map(str, args), stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def table(model, order: str, skip: tuple[str, ...] = ("updated_at",)) -> list:
    """Every row's stored values, in key order."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname not in skip]
    return list(model.objects.order_by("ticker__symbol", order).values_list(*names))


def everything(skip: tuple[str, ...] = ("updated_at",)) -> tuple[list, list]:
    return (
        table(SecondSnapshot, "timestamp", skip),
        table(TickCandle100, "candle_number", skip),
    )


def test_it_writes_the_start_marks_where_the_runs_began(journal_dir):
    from api.collector.journal import StartMark, read_entries

    marks = [e for e in read_entries(journal_dir) if type(e) is StartMark]

    assert [(m.received_at, m.next_candle, m.carried) for m in marks] == [
        mark[:3] for mark in MARKS
    ]
    assert marks[1].seeds == {
        "minute": [
            [symbol, S0, *partial.to_list()]
            for (symbol, _), partial in MARKS[1][3][MINUTE].items()
        ]
    }
    assert MARKS[1][1:3] == ({"AAPL": 59, "MSFT": 2}, {"AAPL": 7, "MSFT": 4})


def test_it_rebuilds_exactly_the_bars_of_the_stream(journal_dir):
    output = replay(journal_dir)

    assert stored_second_bars() == expected_bars()
    assert stored_tick_candles() == expected_candles()
    assert sorted(expected_candles()) == [
        ("AAPL", 57),
        ("AAPL", 58),
        ("AAPL", 59),
        ("AAPL", 60),
        ("MSFT", 1),
        ("MSFT", 2),
    ]
    late = SecondSnapshot.objects.get(ticker__symbol="AAPL", timestamp=iso(S0 + 3))
    assert late.ohlc_1sec_high == 999.5
    assert set(SecondSnapshot.objects.values_list("source", flat=True)) == {"replay"}
    assert set(TickCandle100.objects.values_list("source", flat=True)) == {"replay"}
    assert sorted(Ticker.objects.values_list("symbol", flat=True)) == ["AAPL", "MSFT"]
    assert output == (
        f"frames {len(FRAMES)}, trades 602, malformed 1, ignored 2, runs 2, "
        f"bars {len(expected_bars())}, revisions 1, candles 6, before start 1, "
        "dropped late 0, 1-minute bars 4, quote bars 0, rejected 0, coverage "
        "intervals 0\n"
    )
    # The minute both runs share holds the trades of both (the second run went
    # on from what the first had), as live.
    assert stored_minute_bars() == expected_minutes()


def test_it_changes_nothing_when_replayed_again(journal_dir):
    replay(journal_dir)
    before = everything()

    replay(journal_dir)

    assert everything() == before
    assert len(before[0]) == len(expected_bars())


def test_it_keeps_the_scores_and_source_of_stored_rows(journal_dir):
    replay(journal_dir)
    row = SecondSnapshot.objects.get(ticker__symbol="MSFT", timestamp=iso(S0 + 2))
    row.composite_score, row.flow_score_cached, row.source = 12.5, -3.0, "eodhd_ws"
    row.ohlc_1sec_close = 1  # a wrong value a replay must fix
    row.save()
    TickCandle100.objects.filter(candle_number=58).update(source="eodhd_ws")

    replay(journal_dir)

    row.refresh_from_db()
    assert (row.composite_score, row.flow_score_cached, row.source) == (
        12.5,
        -3.0,
        "eodhd_ws",
    )
    assert row.ohlc_1sec_close == expected_bars()[("MSFT", S0 + 2)][3]
    assert TickCandle100.objects.get(candle_number=58).source == "eodhd_ws"


def test_it_restores_deleted_rows(journal_dir):
    replay(journal_dir)
    skip = ("id", "created_at", "updated_at")
    complete = everything(skip)
    SecondSnapshot.objects.filter(
        timestamp__gte=iso(S0 + 4), timestamp__lt=iso(S0 + 9)
    ).delete()
    TickCandle100.objects.filter(ticker__symbol="AAPL", candle_number=59).delete()
    assert everything(skip) != complete

    replay(journal_dir)

    assert everything(skip) == complete


def test_it_writes_only_the_bars_of_the_window(journal_dir):
    start, end = S0 + 5, S0 + 12

    output = replay(journal_dir, "--from", iso(start), "--to", iso(end))

    bars = {k: v for k, v in expected_bars().items() if start <= k[1] < end}
    candles = {
        k: v for k, v in expected_candles().items() if start * 1000 <= v[6] < end * 1000
    }
    assert stored_second_bars() == bars
    assert stored_tick_candles() == candles
    assert len(bars) == 10 and len(candles) == 2
    assert f"bars {len(bars)}, revisions 0, candles 2," in output


def test_it_replays_only_the_symbols_asked_for(journal_dir):
    replay(journal_dir, "--symbols", "MSFT")

    assert stored_second_bars() == {
        k: v for k, v in expected_bars().items() if k[0] == "MSFT"
    }
    assert sorted(stored_tick_candles()) == [("MSFT", 1), ("MSFT", 2)]


def test_it_writes_nothing_on_a_dry_run(journal_dir):
    output = replay(journal_dir, "--dry-run")

    assert (Ticker.objects.count(), SecondSnapshot.objects.count()) == (0, 0)
    assert TickCandle100.objects.count() == 0
    assert f"bars {len(expected_bars())}, revisions 1, candles 6," in output
    assert "dry run: nothing written" in output


def test_it_applies_the_rules_the_runs_recorded_unless_told_otherwise(
    journal_dir, tmp_path
):
    # The stream's condition mix makes the two rule sets give other bars.
    assert expected_bars("all") != expected_bars("eodhd")
    assert expected_candles("all") != expected_candles("eodhd")

    replay(journal_dir, "--conditions", "all")
    assert stored_second_bars() == expected_bars("all")
    assert stored_tick_candles() == expected_candles("all")

    # A journal whose runs recorded "all" (or predate the rules) replays so.
    SecondSnapshot.objects.all().delete()
    TickCandle100.objects.all().delete()
    journal = Journal(tmp_path, flush_interval=None)
    aapl = [t for t in TRADES if t["s"] == "AAPL"][:250]
    journal.mark_start({"AAPL": 1}, received_at=S0, conditions="all")
    for n, trade in enumerate(aapl):
        journal.record(json.dumps(trade).encode(), S0 + 1 + n * 0.01)
    journal.close()
    replay(tmp_path)
    assert stored_tick_candles() == tick_candles(aapl, conditions="all")
    assert stored_second_bars() == second_bars(aapl, S0, conditions="all")


def test_it_numbers_candles_from_1_without_a_start_mark(tmp_path):
    journal = Journal(tmp_path, flush_interval=None)
    aapl = [t for t in TRADES if t["s"] == "AAPL"][:250]
    for n, trade in enumerate(aapl):
        journal.record(json.dumps(trade).encode(), S0 + 1 + n * 0.01)
    journal.close()

    output = replay(tmp_path)

    assert stored_tick_candles() == tick_candles(aapl, first_number=1)
    assert "without a start mark" in output


def test_it_refuses_a_bad_window(tmp_path):
    with pytest.raises(CommandError, match="not an ISO 8601"):
        replay(tmp_path, "--from", "yesterday")
    with pytest.raises(CommandError, match="before --to"):
        replay(tmp_path, "--from", iso(S0 + 5), "--to", iso(S0))


@pytest.mark.django_db(transaction=True)
def test_it_rebuilds_the_bars_of_a_live_run_from_its_journal(tmp_path):
    from tests.integration.test_collector import collector, feed, received, wait_until

    with feed(
        rate=1500,
        seed=59,
        jitter_ms=300,
        late_prob=0.02,
        max_trades=3000,
        drop_after=[1200],
    ) as server:
        with collector(server, record_dir=tmp_path) as app:
            assert wait_until(lambda: received(app) == 3000, 30)
            assert app.shutdown() == 0
    live_bars = stored_second_bars()
    live_candles = stored_tick_candles()
    live_coverage = coverage()
    assert live_bars and live_candles
    # A reconnect and the shutdown: two intervals per symbol.
    assert [row[4] for row in live_coverage] == ["reconnect", "shutdown"] * 3
    SecondSnapshot.objects.all().delete()
    TickCandle100.objects.all().delete()
    Coverage.objects.all().delete()

    call_command("replay_frames", str(tmp_path), stdout=StringIO())
    assert stored_second_bars() == live_bars
    assert stored_tick_candles() == live_candles
    # The same coverage: the journal recorded each subscription.
    assert coverage() == live_coverage
    assert set(Coverage.objects.values_list("source", flat=True)) == {"replay"}


def coverage() -> list[tuple]:
    return list(
        Coverage.objects.order_by("ticker__symbol", "start").values_list(
            "ticker__symbol", "stream", "start", "end", "end_reason", "collector"
        )
    )
