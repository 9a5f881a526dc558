"""The chart page: staff only, linked from the admin, drawn in a real browser."""

import os
import shutil
import threading
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from django.utils import timezone

from api import stream as push
from api.models import Coverage, QuoteSnapshot, SecondSnapshot, Ticker

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def seed(symbol: str, count: int, unpriced_every: int = 0) -> Ticker:
    """`count` bars; with unpriced_every=k every k-th bar has only odd lots (no
    prices at all) and every (k+5)-th only high/low-eligible prints (no open or
    close)."""
    ticker = Ticker.objects.create(symbol=symbol)
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=count + 5)
    price = Decimal("100")
    rows = []
    for i in range(count):
        step = Decimal((i * 37) % 11 - 5) / 20
        close = price + step
        rows.append(
            SecondSnapshot(
                ticker=ticker,
                timestamp=start + timedelta(seconds=i),
                ohlc_1sec_open=price,
                ohlc_1sec_high=max(price, close) + Decimal("0.1"),
                ohlc_1sec_low=min(price, close) - Decimal("0.1"),
                ohlc_1sec_close=close,
                ohlc_1sec_volume=Decimal(100 + (i * 13) % 400),
                ohlc_1sec_tick_count=5,
                ohlc_1sec_eligible_count=5,
                composite_score=None if i < 5 else float((i * 7) % 120 - 60),
            )
        )
        if unpriced_every and i % unpriced_every == unpriced_every - 1:
            row = rows[-1]
            row.ohlc_1sec_open = row.ohlc_1sec_close = None
            row.ohlc_1sec_high = row.ohlc_1sec_low = None
            row.ohlc_1sec_eligible_count = 0
        elif unpriced_every and i % (unpriced_every + 5) == 0:
            rows[-1].ohlc_1sec_open = rows[-1].ohlc_1sec_close = None
        price = close
    SecondSnapshot.objects.bulk_create(rows)
    return ticker


def add_bar(symbol: str, at) -> None:
    SecondSnapshot.objects.create(
        ticker=Ticker.objects.get(symbol=symbol),
        timestamp=at,
        ohlc_1sec_open=Decimal("100"),
        ohlc_1sec_high=Decimal("101"),
        ohlc_1sec_low=Decimal("99"),
        ohlc_1sec_close=Decimal("100.5"),
        ohlc_1sec_volume=Decimal(300),
        ohlc_1sec_tick_count=4,
        ohlc_1sec_eligible_count=4,
    )


def seed_quotes(symbol: str, count: int) -> None:
    """`count` quote bars; every 10th had only crossed quotes (no prices)."""
    ticker = Ticker.objects.create(symbol=symbol)
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=count + 5)
    rows = []
    for i in range(count):
        mid = Decimal("1.08") + Decimal(i % 7) / 10_000
        priced = i % 10 != 9
        rows.append(
            QuoteSnapshot(
                ticker=ticker,
                timestamp=start + timedelta(seconds=i),
                bid=mid - Decimal("0.00005") if priced else None,
                ask=mid + Decimal("0.00005") if priced else None,
                mid_open=mid if priced else None,
                mid_high=mid + Decimal("0.0001") if priced else None,
                mid_low=mid - Decimal("0.0001") if priced else None,
                mid_close=mid + Decimal("0.00002") if priced else None,
                spread_mean=Decimal("0.0001") if priced else None,
                quote_count=5 + i % 4,
                crossed_count=0 if priced else 5 + i % 4,
                locked_count=0,
                zero_size_count=0,
            )
        )
    QuoteSnapshot.objects.bulk_create(rows)


def test_it_links_the_chart_from_the_admin(admin_client):
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    assert b'href="/chart/"' in response.content


def test_it_shows_the_chart_page_to_staff_only(client, admin_client, db):
    seed("QLD", 3)
    anonymous = client.get("/chart/")
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]
    page = admin_client.get("/chart/", {"symbol": "qld"})
    assert page.status_code == 200
    assert b'<option value="QLD" selected>' in page.content
    assert b"api/chart.js" in page.content


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_draws_candles_volume_and_sentiment_in_headless_chromium(
    live_server, admin_user, client
):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    qld = seed("QLD", 120, unpriced_every=10)  # 12 bars without prices
    # Observed, except 20 seconds in the middle (a reconnect): shaded.
    first = SecondSnapshot.objects.filter(ticker=qld).earliest("timestamp").timestamp

    def at(seconds: int):
        return first + timedelta(seconds=seconds)

    Coverage.objects.create(
        ticker=qld, stream="us", collector="here:1:0", start=at(-10), end=at(50),
        seen_through=at(50), end_reason="reconnect",
    )  # fmt: skip
    Coverage.objects.create(
        ticker=qld, stream="us", collector="here:1:0", start=at(70),
        seen_through=timezone.now(),
    )  # fmt: skip
    seed("AAPL", 10)
    seed_quotes("EURUSD", 30)  # 3 seconds of crossed quotes only
    client.force_login(admin_user)
    session = client.cookies["sessionid"].value
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            context.add_cookies(
                [{"name": "sessionid", "value": session, "url": live_server.url}]
            )
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live_server.url}/chart/?symbol=QLD&range=15m")
            page.wait_for_function(
                "window.chartState && window.chartState.volumes === 120"
            )
            state = page.evaluate("window.chartState")
            # A bar without prices (12) or without an open and close (8) keeps
            # its volume and is a gap in the candles: nothing is drawn that the
            # prints did not set.
            assert (state["candles"], state["volumes"]) == (100, 120)
            assert state["sentiment"] == 115  # unknown scores are gaps, not zeros
            assert state["unobserved"] == 20  # the reconnect's seconds, shaded
            assert "QLD: 120 bars" in page.inner_text("#status")
            assert page.locator("#chart canvas").count() >= 2  # the panes
            page.screenshot(path=str(ARTIFACTS / "chart.png"))

            # Live: a bar stored now reaches the open page by itself, pushed
            # over the event stream (no polling).
            assert page.evaluate("window.chartState.transport") == "sse"
            newest = timezone.now().replace(microsecond=0)
            # (The ORM from another thread: Playwright's loop runs in this one.)
            writer = threading.Thread(target=add_bar, args=("QLD", newest))
            writer.start()
            writer.join()
            page.wait_for_function(
                f"window.chartState.last === {int(newest.timestamp())}", timeout=15_000
            )
            assert page.evaluate("window.chartState.volumes") == 121
            assert page.evaluate("window.chartState.events") >= 1

            page.select_option("#symbol", "AAPL")
            page.wait_for_function("window.chartState.volumes === 10")

            # 1-minute bars resampled by the API from the 1-second bars.
            page.goto(f"{live_server.url}/chart/?symbol=QLD&kind=second-1m&range=15m")
            page.wait_for_function("window.chartState.updates >= 1")
            minutes = page.evaluate("window.chartState.volumes")
            assert 2 <= minutes <= 4

            # Quote bars: the mid-price as candles, the quote count beneath.
            page.goto(f"{live_server.url}/chart/?symbol=EURUSD&kind=quote&range=15m")
            page.wait_for_function("window.chartState.volumes === 30")
            assert page.evaluate("window.chartState.candles") == 27
            assert errors == []
        finally:
            browser.close()
            hub = push.hub()
            for sub in list(hub._subscribers):
                hub.unsubscribe(sub)
    assert (ARTIFACTS / "chart.png").stat().st_size > 10_000


def test_static_files_are_served_with_debug_off(client, settings):
    # What runserver or gunicorn from a checkout answer without collectstatic:
    # the chart's script, the admin's styles, the API docs' bundle.
    assert settings.DEBUG is False
    for path in (
        "/static/api/chart.js",
        "/static/admin/css/base.css",
        "/static/api/vendor/swagger-ui/swagger-ui-bundle.js",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        body = (
            b"".join(response.streaming_content)
            if response.streaming
            else (response.content)
        )
        assert len(body) > 100, path


def test_the_operator_may_open_the_chart_to_everyone(client, db, settings):
    seed("QLD", 3)
    settings.CHART_PUBLIC = True
    page = client.get("/chart/", {"symbol": "QLD"})
    assert page.status_code == 200
    assert b"api/chart.js" in page.content
