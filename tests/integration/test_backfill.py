"""backfill_gaps against the simulator's tick history: a real feed outage (the
collector's coverage records the gap), then the bars of every second not
observed in full rebuilt from the tape - equal to bars built from the whole
tape, `source` marking exactly the filled seconds; a day not published yet
(404), rate limits (429), a 5xx and a page cut short, each handled and resumed;
the shared API budget; and a second run that changes nothing."""

import math
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest

from django.core.management import call_command

from api import budget
from api.backfill import IN_FLIGHT
from api.market.coverage import gaps, merge
from api.market.ticks import letters_to_codes
from api.models import (
    Backfill,
    BackfillStatus,
    Coverage,
    EndReason,
    SecondSnapshot,
    Source,
    TickCandle100,
    Ticker,
)
from tests.integration import reference
from tests.integration.test_collector import collector, feed, received
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "test-key-for-ticks"


def iso(second: float) -> str:
    return datetime.fromtimestamp(second, tz=UTC).isoformat()


def tape_frames(server) -> list[dict]:
    """The tape as the tick history serves it, in the frames' shape: codes read
    back from the sale-condition letters, dark pool from the venue."""
    return [
        {
            "s": row.symbol,
            "p": row.price,
            "v": row.shares,
            "t": row.ts,
            "c": list(letters_to_codes(row.sl)),
            "dp": row.mkt == "D",
        }
        for row in server.tape()
    ]


def backfill(*args: str) -> str:
    out = StringIO()
    call_command("backfill_gaps", *args, stdout=out, stderr=out)
    return out.getvalue()


def trusted_seconds(symbol: str) -> set[int]:
    """Whole seconds inside the coverage, IN_FLIGHT in from each edge: the ones
    the collector surely saw in full (worked out here, not by the backfill)."""
    spans = merge(
        (r.start.timestamp(), r.until.timestamp())
        for r in Coverage.objects.filter(ticker__symbol=symbol)
    )
    out = set()
    for a, b in spans:
        first, last = math.ceil(a + IN_FLIGHT), math.floor(b - IN_FLIGHT)
        out.update(range(first, last))
    return out


def sources() -> dict[tuple[str, int], str]:
    return {
        (row.ticker.symbol, int(row.timestamp.timestamp())): row.source
        for row in SecondSnapshot.objects.select_related("ticker")
    }


def test_a_feed_outage_is_rebuilt_from_the_tick_history_exactly(settings):
    symbols = ("AAPL", "MSFT")
    with feed(rate=300, seed=41, jitter_ms=300, fractional_prob=0.1) as server:
        settings.EODHD_API_BASE = server.api_url
        settings.EODHD_API_KEY = KEY
        with collector(server, symbols=symbols) as app:
            assert wait_until(lambda: received(app) >= 1500, 20)
            server.set_outage(True)
            time.sleep(2.5)
            server.set_outage(False)
            assert wait_until(lambda: server.connections >= 2, 20)
            before = received(app)
            assert wait_until(lambda: received(app) >= before + 1500, 20)
            start = app.aggregator.start_second
            assert app.shutdown() == 0
        assert server.trades_held > 0
        frames = tape_frames(server)
        rows = list(Coverage.objects.filter(ticker__symbol="AAPL").order_by("start"))
        assert [r.end_reason for r in rows] == [EndReason.RECONNECT, EndReason.SHUTDOWN]
        assert (rows[1].start - rows[0].end).total_seconds() >= 2.0  # a real gap
        end = math.ceil(rows[-1].end.timestamp()) + 1

        expected = {
            k: v for k, v in reference.second_bars(frames, start).items() if k[1] < end
        }
        live = reference.stored_second_bars()
        assert live != expected  # the outage cost bars
        observed = {s: trusted_seconds(s) for s in symbols}
        # Every second seen in full was right already: only the others differ.
        assert all(
            v == live.get(k) for k, v in expected.items() if k[1] in observed[k[0]]
        )

        output = backfill(
            "--from", iso(start), "--to", iso(end), "--symbols", "AAPL,MSFT"
        )
        assert "stopped" not in output, output

        assert reference.stored_second_bars() == expected
        # The minutes holding a filled second are rebuilt whole from the tape.
        assert reference.stored_minute_bars() == reference.minute_bars(frames, 0)
        filled = {k for k in expected if k[1] not in observed[k[0]]}
        assert filled
        assert {k for k, v in sources().items() if v == Source.BACKFILL} == filled
        assert {v for k, v in sources().items() if k not in filled} == {Source.EODHD_WS}

        # 100-trade bars with trades on both sides of the outage are marked.
        # 100-trade bars whose trades span unobserved time (the outage, or the
        # moment before a subscription began) are marked; no other.
        unobserved = gaps(
            start, end, [(r.start.timestamp(), r.until.timestamp()) for r in rows]
        )
        assert len(unobserved) == 3  # before the first connection, the outage, after
        for candle in TickCandle100.objects.filter(ticker__symbol="AAPL"):
            first, last = (
                candle.first_tick_time.timestamp(),
                candle.last_tick_time.timestamp(),
            )
            spans = any(first < b and last >= a for a, b in unobserved)
            assert candle.spans_gap == spans, candle.candle_number
        outage = unobserved[1]
        assert any(
            c.spans_gap
            and c.first_tick_time.timestamp() < outage[0]
            and c.last_tick_time.timestamp() > outage[1]
            for c in TickCandle100.objects.filter(ticker__symbol="AAPL")
        )

        # The record of each range: what it cost, what it filled, the comparison.
        done = Backfill.objects.filter(status=BackfillStatus.DONE)
        assert done.exists()
        assert sum(b.seconds_filled for b in done) == len(filled)
        assert sum(b.requests for b in done) == server.ticks_requests
        assert all(b.close_mismatches == 0 for b in done)
        calls = server.ticks_requests * settings.EODHD_TICKS_CALL_COST
        assert budget.used(KEY) == calls

        # A second run fetches nothing and changes nothing.
        again = backfill(
            "--from", iso(start), "--to", iso(end), "--symbols", "AAPL,MSFT"
        )
        assert server.ticks_requests * settings.EODHD_TICKS_CALL_COST == calls
        assert "requests 0" in again
        assert reference.stored_second_bars() == expected


# A past window, no collector: coverage rows with a gap, the tape recorded at once.
T0 = 1_780_000_000 // 60 * 60  # a whole minute


@pytest.fixture
def past_gap():
    """AAPL observed [T0, T0+100) and [T0+160, T0+300): the minute between is a
    gap the tape (20 trades a second) can fill. The windows asked for below
    stay clear of the intervals' outer edges, so one range is fetched."""
    ticker = Ticker.objects.create(symbol="AAPL")
    for start, end, reason in ((0, 100, EndReason.RECONNECT), (160, 300, "shutdown")):
        Coverage.objects.create(
            ticker=ticker,
            stream="us",
            collector="test:1:1",
            start=datetime.fromtimestamp(T0 + start, tz=UTC),
            seen_through=datetime.fromtimestamp(T0 + end, tz=UTC),
            end=datetime.fromtimestamp(T0 + end, tz=UTC),
            end_reason=reason,
        )
    return ticker


def gap_seconds_stored() -> set[int]:
    return {
        int(s.timestamp()) - T0
        for s in SecondSnapshot.objects.filter(source=Source.BACKFILL).values_list(
            "timestamp", flat=True
        )
    }


def test_not_published_yet_stops_and_the_next_run_fills_it(settings, past_gap):
    with feed(seed=5, ticks_unpublished=True) as server:
        server.record_tape(["AAPL"], T0, T0 + 300, rate=20)
        settings.EODHD_API_BASE = server.api_url
        settings.EODHD_API_KEY = KEY
        window = ("--from", iso(T0 + 30), "--to", iso(T0 + 270), "--symbols", "AAPL")
        output = backfill(*window)
        assert "not published yet" in output
        assert not SecondSnapshot.objects.exists()
        assert Backfill.objects.get().status == BackfillStatus.UNPUBLISHED
        server.options.ticks_unpublished = False
        output = backfill(*window)
        assert "stopped" not in output
        assert Backfill.objects.get().status == BackfillStatus.DONE
        # The gap [100, 160) and the in-flight second at each edge around it.
        assert gap_seconds_stored() == set(range(99, 161))
        assert (
            list(
                SecondSnapshot.objects.filter(source=Source.BACKFILL).values_list(
                    "ohlc_1sec_tick_count", flat=True
                )
            )
            == [20] * 62
        )


def test_rate_limits_errors_and_a_cut_page_are_retried_until_the_range_is_whole(
    settings, past_gap, monkeypatch
):
    monkeypatch.setattr("api.backfill.BACKOFF", 0.05)
    with feed(
        seed=6, ticks_statuses=[429, 503], ticks_truncate=(2,), retry_after=1
    ) as server:
        server.record_tape(["AAPL"], T0, T0 + 300, rate=20)
        settings.EODHD_API_BASE = server.api_url
        settings.EODHD_API_KEY = KEY
        output = backfill(
            "--from", iso(T0 + 30), "--to", iso(T0 + 270), "--symbols", "AAPL"
        )
        assert "stopped" not in output, output
        log = server.tick_requests()
        assert [r.status for r in log[:4]] == [429, 503, 200, 200]
        assert log[2].truncated and not log[3].truncated
        assert gap_seconds_stored() == set(range(99, 161))
        frames = tape_frames(server)
        expected = reference.second_bars(frames)
        stored = reference.stored_second_bars()
        assert {k: stored[k] for k in expected if k[1] - T0 in range(99, 161)} == {
            k: v for k, v in expected.items() if k[1] - T0 in range(99, 161)
        }
        # Four requests, every one paid for.
        assert budget.used(KEY) == 4 * settings.EODHD_TICKS_CALL_COST


def test_the_daily_budget_stops_a_run_and_the_next_day_goes_on(settings, past_gap):
    with feed(seed=7, ticks_page_limit=500) as server:
        server.record_tape(["AAPL"], T0, T0 + 300, rate=20)
        settings.EODHD_API_BASE = server.api_url
        settings.EODHD_API_KEY = KEY
        settings.EODHD_TICKS_PAGE_ROWS = 500
        settings.EODHD_DAILY_CALLS = 15  # one request of 10 calls fits, not two
        window = ("--from", iso(T0 + 30), "--to", iso(T0 + 270), "--symbols", "AAPL")
        output = backfill(*window)
        assert "budget" in output and "stopped" in output
        assert server.ticks_requests == 1
        assert Backfill.objects.get().status == BackfillStatus.PARTIAL
        assert not SecondSnapshot.objects.exists()  # nothing half-built is stored
        # Another process on the same key sees the same spent budget.
        assert budget.used(KEY) == 10
        assert not budget.spend(KEY, 10, 15)
        settings.EODHD_DAILY_CALLS = 1000
        output = backfill(*window)
        assert "stopped" not in output
        assert Backfill.objects.get().status == BackfillStatus.DONE
        assert gap_seconds_stored() == set(range(99, 161))


def test_a_dry_run_plans_without_fetching(settings, past_gap):
    with feed(seed=8) as server:
        settings.EODHD_API_BASE = server.api_url
        settings.EODHD_API_KEY = KEY
        output = backfill(
            "--from",
            iso(T0 + 30),
            "--to",
            iso(T0 + 270),
            "--symbols",
            "AAPL",
            "--dry-run",
        )
        assert "ranges 1" in output and "dry run" in output
        assert server.ticks_requests == 0
        assert not Backfill.objects.exists()


def test_retries_run_out_into_a_failure_that_never_shows_the_key(
    settings, past_gap, monkeypatch
):
    monkeypatch.setattr("api.backfill.BACKOFF", 0.05)
    with feed(seed=9, ticks_statuses=[500, 500, 500, 500]) as server:
        settings.EODHD_API_BASE = server.api_url
        settings.EODHD_API_KEY = KEY
        with pytest.raises(SystemExit) as exited:
            backfill("--from", iso(T0 + 30), "--to", iso(T0 + 270), "--symbols", "AAPL")
        assert exited.value.code == 1
        row = Backfill.objects.get()
        assert row.status == BackfillStatus.FAILED
        assert "HTTP 500" in row.error and KEY not in row.error


def test_the_previous_trading_day_is_the_default():
    from api.management.commands.backfill_gaps import previous_trading_day

    monday = datetime(2026, 11, 30).date()
    assert previous_trading_day(monday) == monday - timedelta(days=3)  # Friday
    # Thanksgiving (Thu 26 Nov 2026) is not a trading day.
    assert previous_trading_day(datetime(2026, 11, 27).date()).day == 25


def test_days_backfills_the_last_trading_days_oldest_first(settings):
    from api.management.commands.backfill_gaps import previous_trading_day
    from api.market import calendar

    settings.EODHD_API_KEY = KEY
    output = backfill("--days", "3", "--dry-run")
    day, expected = datetime.now(tz=UTC).date(), []
    for _ in range(3):
        day = previous_trading_day(day)
        opens, closes = calendar.session_bounds(day)
        expected.append(
            f"🩹 backfill {opens:%Y-%m-%dT%H:%M:%SZ} → {closes:%Y-%m-%dT%H:%M:%SZ}: "
            "0 symbols"
        )
    assert [line for line in output.splitlines() if "🩹" in line] == expected[::-1]
    with pytest.raises(Exception, match="not several"):
        backfill("--days", "2", "--date", "2026-03-02")
