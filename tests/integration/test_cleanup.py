"""cleanup_old_data: retention per model, dry runs, batches, numbering kept."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest

from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from api.management.commands.cleanup_old_data import parse_duration
from api.models import (
    MinuteSnapshot,
    OHLCVTick,
    QuoteSnapshot,
    SecondSnapshot,
    TickCandle100,
    Ticker,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged():
    """Rows of known ages: ticks at 30 min and 2 h, seconds at 1 d and 8 d,
    minutes at 8 d and 4000 d, candles 1..4 at 40, 35, 20 and 1 days, quote bars
    at 1 d and 8 d."""
    now = timezone.now()
    qld = Ticker.objects.create(symbol="QLD")
    price = {"price": Decimal("1"), "volume": Decimal("1")}
    OHLCVTick.objects.create(ticker=qld, timestamp=now - timedelta(minutes=30), **price)
    OHLCVTick.objects.create(ticker=qld, timestamp=now - timedelta(hours=2), **price)
    for days in (1, 8):
        SecondSnapshot.objects.create(
            ticker=qld,
            timestamp=now - timedelta(days=days),
            ohlc_1sec_open=1,
            ohlc_1sec_high=1,
            ohlc_1sec_low=1,
            ohlc_1sec_close=1,
            ohlc_1sec_volume=1,
            ohlc_1sec_tick_count=1,
            ohlc_1sec_eligible_count=1,
        )
    for days in (8, 4000):
        MinuteSnapshot.objects.create(
            ticker=qld,
            timestamp=now - timedelta(days=days),
            **dict.fromkeys(("open", "high", "low", "close", "volume"), 1),
            tick_count=1,
            eligible_count=1,
        )
    for days in (1, 8):
        QuoteSnapshot.objects.create(
            ticker=qld,
            timestamp=now - timedelta(days=days),
            quote_count=1,
            crossed_count=1,
            locked_count=0,
            zero_size_count=0,
        )
    for number, days in enumerate((40, 35, 20, 1), start=1):
        at = now - timedelta(days=days)
        TickCandle100.objects.create(
            ticker=qld,
            candle_number=number,
            completed_at=at,
            open=1,
            high=1,
            low=1,
            close=1,
            total_volume=100,
            eligible_count=100,
            first_tick_time=at,
            last_tick_time=at,
            duration_seconds=0,
        )
    return qld


def run(*args) -> str:
    out = StringIO()
    call_command("cleanup_old_data", *args, stdout=out)
    return out.getvalue()


def test_it_deletes_nothing_on_a_dry_run_and_reports_the_counts(aged):
    output = run("--dry-run")
    assert output.splitlines() == [
        "OHLCVTick: would delete 1 rows",
        "SecondSnapshot: would delete 1 rows",
        "MinuteSnapshot: would delete 1 rows",  # kept for years by default
        "TickCandle100: would delete 2 rows",
        "QuoteSnapshot: would delete 1 rows",
    ]
    assert (OHLCVTick.objects.count(), SecondSnapshot.objects.count()) == (2, 2)
    assert TickCandle100.objects.count() == 4


def test_it_deletes_exactly_the_rows_past_retention_in_batches(aged):
    output = run("--batch-size", "1", "--verbose")
    assert "TickCandle100: deleted 2 rows" in output
    assert OHLCVTick.objects.count() == 1
    assert SecondSnapshot.objects.count() == 1
    assert sorted(TickCandle100.objects.values_list("candle_number", flat=True)) == [
        3,
        4,
    ]


def test_it_keeps_the_newest_candle_so_numbering_resumes(aged):
    run("--candles", "1h")
    assert list(TickCandle100.objects.values_list("candle_number", flat=True)) == [4]


def test_it_takes_retention_per_model_from_options(aged):
    run(
        "--ticks", "3h", "--seconds", "12h", "--minutes", "7d", "--candles", "50d",
        "--quotes", "2d",
    )  # fmt: skip
    assert OHLCVTick.objects.count() == 2
    assert QuoteSnapshot.objects.count() == 1
    assert SecondSnapshot.objects.count() == 0
    assert MinuteSnapshot.objects.count() == 0
    assert TickCandle100.objects.count() == 4


def test_it_refuses_a_bad_duration():
    with pytest.raises(CommandError, match="'7 days' is not a duration"):
        run("--seconds", "7 days")


def test_it_parses_durations():
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("2w") == timedelta(days=14)
    assert parse_duration("0.5h") == timedelta(minutes=30)
