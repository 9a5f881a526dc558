"""The data-quality report of a session (data_quality and the admin page):
observed share, gaps, backfilled seconds and live-vs-tape figures per symbol."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest

from django.core.management import call_command
from django.core.management.base import CommandError

from api.models import (
    Backfill,
    BackfillStatus,
    Coverage,
    EndReason,
    SecondSnapshot,
    Source,
    Ticker,
)

pytestmark = pytest.mark.django_db

DAY = "2026-03-02"  # a Monday; the regular session is 14:30-21:00 UTC (EST)
OPEN = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
CLOSE = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
SESSION = (CLOSE - OPEN).total_seconds()  # 23,400


def cover(ticker, start, end, reason=EndReason.SHUTDOWN):
    Coverage.objects.create(
        ticker=ticker,
        stream="us",
        collector="host:1:1",
        start=start,
        seen_through=end,
        end=end,
        end_reason=reason,
    )


@pytest.fixture
def day():
    """AAPL: observed from before the open to 15:30, then 15:32 to 16:00:30,
    then 16:01 to after the close (gaps of 120 s and 30 s); 150 seconds
    backfilled; one range fetched (live 990 vs tape 1000 shares, two closes
    differing), one waiting. MSFT: nothing recorded."""
    aapl = Ticker.objects.create(symbol="AAPL")
    Ticker.objects.create(symbol="MSFT")
    at = OPEN.replace(hour=15)
    cover(aapl, OPEN - timedelta(minutes=5), at, EndReason.RECONNECT)
    cover(aapl, at + timedelta(minutes=2), at + timedelta(minutes=30, seconds=30))
    cover(aapl, at + timedelta(minutes=31), CLOSE + timedelta(minutes=1))
    SecondSnapshot.objects.bulk_create(
        SecondSnapshot(
            ticker=aapl,
            timestamp=at + timedelta(seconds=s),
            ohlc_1sec_volume=1,
            ohlc_1sec_tick_count=1,
            ohlc_1sec_eligible_count=1,
            source=Source.BACKFILL,
        )
        for s in list(range(120)) + list(range(1830, 1860))
    )
    Backfill.objects.create(
        ticker=aapl,
        start=at - timedelta(minutes=1),
        end=at + timedelta(minutes=3),
        status=BackfillStatus.DONE,
        compared_seconds=120,
        live_volume=Decimal(990),
        tape_volume=Decimal(1000),
        close_mismatches=2,
        max_close_diff=Decimal("0.05"),
        seconds_filled=120,
    )
    Backfill.objects.create(
        ticker=aapl,
        start=at + timedelta(minutes=30),
        end=at + timedelta(minutes=32),
        status=BackfillStatus.UNPUBLISHED,
    )
    return aapl


def run(*args) -> str:
    out = StringIO()
    call_command("data_quality", *args, stdout=out)
    return out.getvalue()


def test_the_report_counts_what_was_observed_missed_and_repaired(day):
    document = json.loads(run("--date", DAY, "--symbols", "AAPL,MSFT", "--json"))
    assert (document["start"], document["end"]) == (OPEN.isoformat(), CLOSE.isoformat())
    aapl, msft = document["symbols"]
    assert aapl["symbol"] == "AAPL" and aapl["known"] is True
    assert aapl["observed_seconds"] == SESSION - 150
    assert aapl["observed_share"] == pytest.approx((SESSION - 150) / SESSION)
    assert (aapl["gaps"], aapl["gap_seconds"]) == (2, 150)
    assert aapl["longest_gap_seconds"] == 120
    assert aapl["longest_gap_start"] == "2026-03-02T15:30:00+00:00"
    assert aapl["backfilled_seconds"] == 150
    assert (aapl["backfill_ranges"], aapl["backfill_waiting"]) == (1, 1)
    assert aapl["compared_seconds"] == 120
    assert aapl["volume_ratio"] == pytest.approx(0.99)
    assert (aapl["close_mismatches"], aapl["max_close_diff"]) == (2, "0.0500000000")
    # Nothing recorded is unknown, not one long gap.
    assert msft["known"] is False and msft["observed_share"] is None
    assert msft["gaps"] == 0


def test_the_text_report_reads_as_one_line_per_symbol(day):
    lines = run("--date", DAY).splitlines()
    assert lines[0] == "📋 2026-03-02 regular session (14:30-21:00 UTC): 1 symbols"
    assert lines[1] == (
        "AAPL: observed 99.36%, gaps 2 (150 s, longest 120 s at 15:30:00), "
        "backfilled 150 s (1 ranges still to fetch); live vs tape over 120 s: "
        "volume 0.990, closes differing 2 (at most 0.05)"
    )


def test_a_closed_day_or_a_bad_date_is_one_readable_error():
    with pytest.raises(CommandError, match="2026-03-01 is not a trading day"):
        run("--date", "2026-03-01")
    with pytest.raises(CommandError, match="is not YYYY-MM-DD"):
        run("--date", "March 2")


def test_the_admin_shows_the_report_and_links_to_it(admin_client, day):
    listing = admin_client.get("/admin/api/coverage/")
    assert b'id="quality-link"' in listing.content
    page = admin_client.get("/admin/api/coverage/quality/", {"date": DAY})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-symbol="AAPL"' in html
    assert '<td class="gaps">2</td>' in html
    assert '<td class="backfilled">150</td>' in html
    assert "15:30:00 UTC" in html
    bad = admin_client.get("/admin/api/coverage/quality/", {"date": "2026-03-01"})
    assert "is not a trading day" in bad.content.decode()


def test_the_report_page_is_for_staff_only(client):
    response = client.get("/admin/api/coverage/quality/", {"date": DAY})
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_admin_lists_the_backfilled_ranges(admin_client, day):
    page = admin_client.get("/admin/api/backfill/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "not published yet" in html and "AAPL" in html
