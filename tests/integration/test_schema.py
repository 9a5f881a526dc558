"""The schema's promises, checked against the real database."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from django.db import IntegrityError, transaction

from api.models import OHLCVTick, SecondSnapshot, TickCandle100, Ticker

T0 = datetime(2026, 3, 2, 14, 30, 0, tzinfo=UTC)


def snapshot(ticker: Ticker, **overrides) -> SecondSnapshot:
    values = {
        "ticker": ticker,
        "timestamp": T0,
        "ohlc_1sec_open": Decimal("100.10"),
        "ohlc_1sec_high": Decimal("100.25"),
        "ohlc_1sec_low": Decimal("100.00"),
        "ohlc_1sec_close": Decimal("100.20"),
        "ohlc_1sec_volume": Decimal("300"),
        "ohlc_1sec_tick_count": 3,
        "ohlc_1sec_eligible_count": 3,
    }
    values.update(overrides)
    return SecondSnapshot.objects.create(**values)


def candle(ticker: Ticker, number: int, **overrides) -> TickCandle100:
    values = {
        "ticker": ticker,
        "candle_number": number,
        "completed_at": T0 + timedelta(seconds=9),
        "open": Decimal("10"),
        "high": Decimal("11"),
        "low": Decimal("9"),
        "close": Decimal("10.5"),
        "total_volume": Decimal("1000"),
        "eligible_count": 100,
        "first_tick_time": T0,
        "last_tick_time": T0 + timedelta(seconds=9),
        "duration_seconds": Decimal("9.000"),
    }
    values.update(overrides)
    return TickCandle100.objects.create(**values)


@pytest.mark.django_db
def test_it_refuses_a_second_snapshot_for_the_same_ticker_and_second():
    qld = Ticker.objects.create(symbol="QLD")
    snapshot(qld)
    with pytest.raises(IntegrityError), transaction.atomic():
        snapshot(qld, ohlc_1sec_close=Decimal("101"))
    assert SecondSnapshot.objects.filter(ticker=qld).count() == 1


@pytest.mark.django_db
def test_it_allows_the_same_second_for_another_ticker():
    snapshot(Ticker.objects.create(symbol="QLD"))
    snapshot(Ticker.objects.create(symbol="AAPL"))
    assert SecondSnapshot.objects.filter(timestamp=T0).count() == 2


@pytest.mark.django_db
def test_it_refuses_a_second_tick_candle_with_the_same_number():
    qld = Ticker.objects.create(symbol="QLD")
    candle(qld, 1)
    candle(qld, 2)
    with pytest.raises(IntegrityError), transaction.atomic():
        candle(qld, 2)
    assert list(
        TickCandle100.objects.filter(ticker=qld).values_list("candle_number", flat=True)
    ) == [1, 2]


@pytest.mark.django_db
def test_it_round_trips_fractional_volumes_and_prices_exactly():
    btc = Ticker.objects.create(symbol="BTC-USD")
    snapshot(
        btc,
        ohlc_1sec_open=Decimal("84588.12345678"),
        ohlc_1sec_volume=Decimal("0.0000012345"),
    )
    candle(btc, 1, total_volume=Decimal("1234.56789"))
    OHLCVTick.objects.create(
        ticker=btc, timestamp=T0, price=Decimal("0.0000000123"), volume=Decimal("0.3")
    )

    row = SecondSnapshot.objects.get(ticker=btc)
    assert row.ohlc_1sec_volume == Decimal("0.0000012345")
    assert row.ohlc_1sec_open == Decimal("84588.12345678")
    assert TickCandle100.objects.get(ticker=btc).total_volume == Decimal("1234.56789")
    tick = OHLCVTick.objects.get(ticker=btc)
    assert (tick.price, tick.volume) == (Decimal("0.0000000123"), Decimal("0.3"))


@pytest.mark.postgres
@pytest.mark.django_db
def test_it_keeps_every_digit_of_a_huge_fractional_volume_on_postgres():
    # SQLite keeps about 15 significant digits of a decimal; PostgreSQL's numeric
    # keeps all 30 the column allows.
    btc = Ticker.objects.create(symbol="BTC-USD")
    volume = Decimal("12345678901234567.0000000001")
    candle(btc, 1, total_volume=volume)
    assert TickCandle100.objects.get(ticker=btc).total_volume == volume


@pytest.mark.django_db
def test_it_keeps_unknown_scores_null():
    row = snapshot(Ticker.objects.create(symbol="QLD"))
    row.refresh_from_db()
    assert row.composite_score is None
    assert row.news_score_cached is None
    assert row.technical_score_cached is None
    assert row.source == "eodhd_ws"


@pytest.mark.django_db
def test_it_uses_the_table_names_users_rely_on():
    assert SecondSnapshot._meta.db_table == "api_second_snapshot"
    assert TickCandle100._meta.db_table == "api_tick_candle_100"
    assert OHLCVTick._meta.db_table == "api_ohlcv_tick"
    from django.db import connection

    tables = set(connection.introspection.table_names())
    assert {"api_second_snapshot", "api_tick_candle_100", "api_ohlcv_tick"} <= tables
