"""The admin shows every model to staff; bar rows cannot be edited there."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from django.contrib.auth.models import User
from django.urls import reverse

from api.models import (
    MinuteSnapshot,
    OHLCVTick,
    QuoteSnapshot,
    SecondSnapshot,
    TickCandle100,
    Ticker,
)

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
def seeded(db):
    qld = Ticker.objects.create(symbol="QLD", company_name="ProShares Ultra QQQ")
    snap = SecondSnapshot.objects.create(
        ticker=qld,
        timestamp=T0,
        ohlc_1sec_open=Decimal("1"),
        ohlc_1sec_high=Decimal("2"),
        ohlc_1sec_low=Decimal("0.5"),
        ohlc_1sec_close=Decimal("1.5"),
        ohlc_1sec_volume=Decimal("10"),
        ohlc_1sec_tick_count=2,
        ohlc_1sec_eligible_count=2,
    )
    candle = TickCandle100.objects.create(
        ticker=qld,
        candle_number=7,
        completed_at=T0,
        open=Decimal("1"),
        high=Decimal("2"),
        low=Decimal("0.5"),
        close=Decimal("1.5"),
        total_volume=Decimal("100"),
        eligible_count=100,
        first_tick_time=T0,
        last_tick_time=T0,
        duration_seconds=Decimal("0"),
    )
    tick = OHLCVTick.objects.create(
        ticker=qld, timestamp=T0, price=Decimal("1.5"), volume=Decimal("10")
    )
    # A minute of odd lots only: no prices.
    minute = MinuteSnapshot.objects.create(
        ticker=qld, timestamp=T0, volume=Decimal("40"), tick_count=3, eligible_count=0
    )
    quote = QuoteSnapshot.objects.create(
        ticker=qld,
        timestamp=T0,
        bid=Decimal("1.49"),
        ask=Decimal("1.51"),
        bid_size=Decimal(300),
        ask_size=Decimal(0),
        mid_close=Decimal("1.5"),
        spread_mean=Decimal("0.02"),
        quote_count=12,
        crossed_count=1,
        locked_count=0,
        zero_size_count=1,
    )
    return {
        "ticker": qld,
        "minutesnapshot": minute,
        "quotesnapshot": quote,
        "secondsnapshot": snap,
        "tickcandle100": candle,
        "ohlcvtick": tick,
    }


@pytest.fixture
def staff_client(client, db):
    user = User.objects.create_superuser("admin", "admin@example.com", "pw-123456")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model",
    [
        "ticker",
        "secondsnapshot",
        "minutesnapshot",
        "tickcandle100",
        "quotesnapshot",
        "ohlcvtick",
    ],
)
def test_it_renders_list_and_detail_pages_for_staff(staff_client, seeded, model):
    listing = staff_client.get(reverse(f"admin:api_{model}_changelist"))
    assert listing.status_code == 200
    assert b"QLD" in listing.content
    detail = staff_client.get(
        reverse(f"admin:api_{model}_change", args=[seeded[model].pk])
    )
    assert detail.status_code == 200


@pytest.mark.parametrize(
    "model",
    ["secondsnapshot", "minutesnapshot", "tickcandle100", "quotesnapshot", "ohlcvtick"],
)
def test_it_refuses_to_add_or_edit_bars(staff_client, seeded, model):
    assert staff_client.get(reverse(f"admin:api_{model}_add")).status_code == 403
    url = reverse(f"admin:api_{model}_change", args=[seeded[model].pk])
    response = staff_client.post(url, {})
    assert response.status_code == 403


def test_it_searches_bars_by_symbol(staff_client, seeded):
    url = reverse("admin:api_secondsnapshot_changelist")
    assert b"QLD" in staff_client.get(url, {"q": "QLD"}).content
    found = staff_client.get(url, {"q": "NOPE"})
    assert found.status_code == 200
    assert b"0 second snapshots" in found.content


def test_it_sends_anonymous_users_to_the_login(client, db):
    response = client.get(reverse("admin:api_secondsnapshot_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.postgres
def test_it_lists_the_universe_with_each_symbols_writer(staff_client, db):
    import psycopg2

    from django.db import connection

    from api.collector.leader import lock_key
    from api.models import UniverseSymbol

    UniverseSymbol.objects.create(symbol="aapl")  # stored upper-case
    UniverseSymbol.objects.create(symbol="MSFT", enabled=False)
    s = connection.settings_dict
    # Another session holds AAPL's writer lock, as a running collector would.
    other = psycopg2.connect(
        host=s["HOST"] or "127.0.0.1",
        port=s["PORT"] or 5432,
        user=s["USER"],
        password=s["PASSWORD"] or None,
        dbname=s["NAME"],
        application_name="eodhd-collector/feedc0de",
    )
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [lock_key("trades:AAPL")])
        page = staff_client.get(reverse("admin:api_universesymbol_changelist"))
    finally:
        other.close()
    text = page.content.decode()
    assert page.status_code == 200
    assert "AAPL" in text and "MSFT" in text
    assert "eodhd-collector/feedc0de (pid" in text
