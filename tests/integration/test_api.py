"""The JSON read endpoints: shapes, bounds, defaults, errors and the limit cap."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from django.db import connection
from django.utils import timezone

from api import views
from api.models import (
    MinuteSnapshot,
    QuoteSnapshot,
    SecondSnapshot,
    TickCandle100,
    Ticker,
)

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def add_seconds(ticker: Ticker, start: datetime, count: int, **extra) -> None:
    SecondSnapshot.objects.bulk_create(
        SecondSnapshot(
            ticker=ticker,
            timestamp=start + timedelta(seconds=i),
            ohlc_1sec_open=Decimal("100") + i,
            ohlc_1sec_high=Decimal("101.5") + i,
            ohlc_1sec_low=Decimal("99.25") + i,
            ohlc_1sec_close=Decimal("100.75") + i,
            ohlc_1sec_volume=Decimal("12.5"),
            ohlc_1sec_tick_count=3,
            ohlc_1sec_eligible_count=2,
            **extra,
        )
        for i in range(count)
    )


def add_candles(ticker: Ticker, start: datetime, count: int) -> None:
    TickCandle100.objects.bulk_create(
        TickCandle100(
            ticker=ticker,
            candle_number=i + 1,
            completed_at=start + timedelta(seconds=10 * i + 9),
            open=Decimal("50"),
            high=Decimal("51"),
            low=Decimal("49"),
            close=Decimal("50.5"),
            total_volume=Decimal("1000.25"),
            eligible_count=60,
            first_tick_time=start + timedelta(seconds=10 * i),
            last_tick_time=start + timedelta(seconds=10 * i + 9),
            duration_seconds=Decimal("9.000"),
        )
        for i in range(count)
    )


@pytest.fixture
def qld(db) -> Ticker:
    return Ticker.objects.create(symbol="QLD")


def test_it_returns_second_candles_in_the_documented_shape(client, qld):
    add_seconds(qld, T0, 3, composite_score=12.5, technical_score_cached=-3.0)
    response = client.get(
        "/api/second-candles/",
        {
            "symbol": "qld",
            "start_time": iso(T0),
            "end_time": iso(T0 + timedelta(minutes=1)),
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["ticker"] == "QLD"
    assert body["data"][0] == {
        "timestamp": "2026-03-02T14:30:00Z",
        "open": 100.0,
        "high": 101.5,
        "low": 99.25,
        "close": 100.75,
        "volume": 12.5,
        "tick_count": 3,
        "eligible_count": 2,
        "composite_score": 12.5,
        "news_component": None,
        "technical_component": -3.0,
    }
    assert [item["timestamp"] for item in body["data"]] == [
        "2026-03-02T14:30:00Z",
        "2026-03-02T14:30:01Z",
        "2026-03-02T14:30:02Z",
    ]
    assert body["metadata"] == {
        "count": 3,
        "start_time": "2026-03-02T14:30:00Z",
        "end_time": "2026-03-02T14:31:00Z",
        "end_inclusive": False,
        "timeframe": "1s",
        "limit": 10_000,
        "max_limit": 50_000,
        "limit_capped": False,
        "truncated": False,
        "next": None,
        # No collector has recorded coverage of QLD: no gaps can be told.
        "gaps": [],
        "coverage_from": {"QLD": None},
    }


def test_it_returns_tick_candles_in_the_documented_shape(client, qld):
    add_candles(qld, T0, 2)
    body = client.get(
        "/api/tick-candles/",
        {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=1))},
    ).json()
    assert body["metadata"]["timeframe"] == "100t"
    assert body["data"][1] == {
        "timestamp": "2026-03-02T14:30:19Z",
        "open": 50.0,
        "high": 51.0,
        "low": 49.0,
        "close": 50.5,
        "volume": 1000.25,
        "candle_number": 2,
        "tick_count": 100,
        "eligible_count": 60,
        "duration_seconds": 9.0,
        "first_tick_time": "2026-03-02T14:30:10Z",
        "last_tick_time": "2026-03-02T14:30:19Z",
    }


def test_it_returns_minute_candles_in_the_documented_shape(client, qld):
    MinuteSnapshot.objects.bulk_create(
        MinuteSnapshot(
            ticker=qld,
            timestamp=T0 + timedelta(minutes=i),
            open=Decimal("100") + i,
            high=Decimal("102"),
            low=Decimal("99.5"),
            close=Decimal("101.25"),
            volume=Decimal("1234.5"),
            tick_count=180,
            eligible_count=120,
            vwap=Decimal("100.9876543210"),
            composite_score=None if i else 7.5,
        )
        for i in range(3)
    )
    body = client.get(
        "/api/minute-candles/",
        {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=2))},
    ).json()
    assert body["metadata"]["timeframe"] == "1m"
    assert body["metadata"]["count"] == 2  # the end is excluded
    assert body["data"] == [
        {
            "timestamp": "2026-03-02T14:30:00Z",
            "open": 100.0,
            "high": 102.0,
            "low": 99.5,
            "close": 101.25,
            "volume": 1234.5,
            "tick_count": 180,
            "eligible_count": 120,
            "vwap": 100.987654321,
            "composite_score": 7.5,
        },
        {
            "timestamp": "2026-03-02T14:31:00Z",
            "open": 101.0,
            "high": 102.0,
            "low": 99.5,
            "close": 101.25,
            "volume": 1234.5,
            "tick_count": 180,
            "eligible_count": 120,
            "vwap": 100.987654321,
            "composite_score": None,
        },
    ]


def test_a_second_without_eligible_prints_has_null_prices_and_its_volume(client, qld):
    # Only odd lots traded in that second: they count in volume and ticks but set
    # no price (docs/conditions.md).
    SecondSnapshot.objects.create(
        ticker=qld,
        timestamp=T0,
        ohlc_1sec_open=None,
        ohlc_1sec_high=None,
        ohlc_1sec_low=None,
        ohlc_1sec_close=None,
        ohlc_1sec_volume=Decimal("37"),
        ohlc_1sec_tick_count=4,
        ohlc_1sec_eligible_count=0,
    )
    [row] = client.get(
        "/api/second-candles/",
        {"start_time": iso(T0), "end_time": iso(T0 + timedelta(seconds=1))},
    ).json()["data"]
    assert (row["open"], row["high"], row["low"], row["close"]) == (None,) * 4
    assert (row["volume"], row["tick_count"], row["eligible_count"]) == (37.0, 4, 0)


def test_it_returns_realtime_sentiment_with_nulls_kept(client, qld):
    add_seconds(qld, T0, 2, composite_score=40.0, news_score_cached=None)
    body = client.get(
        "/api/realtime-sentiment/",
        {"start_time": iso(T0), "end_time": iso(T0 + timedelta(seconds=2))},
    ).json()
    assert body["data"][0] == {
        "timestamp": "2026-03-02T14:30:00Z",
        "close": 100.75,
        "composite_score": 40.0,
        "news_component": None,
        "technical_component": None,
        "flow_component": None,
    }


def test_it_includes_the_start_and_excludes_the_end_for_both_candle_kinds(client, qld):
    add_seconds(qld, T0, 10)
    add_candles(qld, T0, 3)  # completed at +9 s, +19 s, +29 s
    seconds = client.get(
        "/api/second-candles/",
        {
            "start_time": iso(T0 + timedelta(seconds=2)),
            "end_time": iso(T0 + timedelta(seconds=5)),
        },
    ).json()
    assert [d["timestamp"][-3:-1] for d in seconds["data"]] == ["02", "03", "04"]
    ticks = client.get(
        "/api/tick-candles/",
        {
            "start_time": iso(T0 + timedelta(seconds=9)),
            "end_time": iso(T0 + timedelta(seconds=29)),
        },
    ).json()
    assert [d["candle_number"] for d in ticks["data"]] == [1, 2]


def test_it_defaults_to_the_last_hour(client, qld):
    now = timezone.now().replace(microsecond=0)
    add_seconds(qld, now - timedelta(minutes=90), 1)
    add_seconds(qld, now - timedelta(minutes=30), 1)
    body = client.get("/api/second-candles/").json()
    assert body["metadata"]["count"] == 1
    start = datetime.fromisoformat(body["metadata"]["start_time"])
    end = datetime.fromisoformat(body["metadata"]["end_time"])
    assert end - start == timedelta(hours=1)


def test_it_takes_either_bound_alone_as_a_one_hour_window(client, qld):
    add_seconds(qld, T0, 1)
    after = client.get("/api/second-candles/", {"start_time": "2026-03-02T14:00:00Z"})
    assert after.json()["metadata"]["end_time"] == "2026-03-02T15:00:00Z"
    assert after.json()["metadata"]["count"] == 1
    before = client.get(
        "/api/second-candles/", {"end_time": "2026-03-02T15:00:00+00:00"}
    )
    assert before.json()["metadata"]["start_time"] == "2026-03-02T14:00:00Z"
    assert before.json()["metadata"]["count"] == 1


def test_it_caps_the_limit_and_says_so(client, qld):
    add_seconds(qld, T0, 5)
    window = {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=1))}
    small = client.get("/api/second-candles/", {**window, "limit": "2"}).json()
    assert small["metadata"]["count"] == 2
    assert small["metadata"]["truncated"] is True
    huge = client.get("/api/second-candles/", {**window, "limit": "999999"}).json()
    assert huge["metadata"]["limit"] == views.MAX_LIMIT
    assert huge["metadata"]["limit_capped"] is True
    assert huge["metadata"]["count"] == 5


@pytest.mark.parametrize(
    "params",
    [
        {"start_time": "yesterday"},
        {"end_time": "2026-13-01T00:00:00Z"},
        {"start_time": "2026-03-02T15:00:00Z", "end_time": "2026-03-02T14:00:00Z"},
        {"limit": "ten"},
        {"limit": "0"},
    ],
)
@pytest.mark.parametrize(
    "url",
    [
        "/api/second-candles/",
        "/api/minute-candles/",
        "/api/tick-candles/",
        "/api/realtime-sentiment/",
    ],
)
def test_it_answers_400_with_error_and_message_for_a_bad_parameter(
    client, qld, url, params
):
    response = client.get(url, params)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "bad_request"


@pytest.mark.parametrize(
    "url",
    [
        "/api/second-candles/",
        "/api/minute-candles/",
        "/api/tick-candles/",
        "/api/realtime-sentiment/",
    ],
)
def test_it_answers_404_for_an_unknown_symbol(client, qld, url):
    response = client.get(url, {"symbol": "NOPE"})
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "unknown symbol 'NOPE'"}


def test_it_reports_the_last_bar_per_symbol_in_health(client, qld):
    now = timezone.now().replace(microsecond=0)
    add_seconds(qld, now - timedelta(seconds=30), 2)
    Ticker.objects.create(symbol="EMPTY")
    body = client.get("/api/health/").json()
    assert set(body["symbols"]) == {"QLD"}
    assert body["symbols"]["QLD"]["last_bar"] == iso(now - timedelta(seconds=29))
    assert 28 <= body["symbols"]["QLD"]["age_seconds"] <= 60


@pytest.mark.postgres
def test_it_reads_a_window_through_the_unique_index(qld):
    other = Ticker.objects.create(symbol="AAPL")
    add_seconds(qld, T0, 3000)
    add_seconds(other, T0, 3000)
    add_candles(qld, T0, 3000)
    add_candles(other, T0, 3000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE api_second_snapshot")
        cursor.execute("ANALYZE api_tick_candle_100")
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(minutes=11)
    plan = (
        SecondSnapshot.objects.filter(
            ticker=qld, timestamp__gte=start, timestamp__lt=end
        )
        .order_by("timestamp")
        .explain()
    )
    # The unique (ticker, timestamp) index: the parent's on a plain table, the
    # partition's own copy of it on a partitioned one (docs/partitions.md).
    assert "uniq_second_snapshot_ticker_ts" in plan or re.search(
        r"api_second_snapshot_\w+_ticker_id_timestamp_key", plan
    )
    assert "Seq Scan" not in plan
    candle_plan = (
        TickCandle100.objects.filter(
            ticker=qld, completed_at__gte=start, completed_at__lt=end
        )
        .order_by("completed_at", "candle_number")
        .explain()
    )
    assert "Seq Scan" not in candle_plan


def test_it_returns_quote_candles_with_the_mid_as_ohlc(client, qld):
    QuoteSnapshot.objects.create(
        ticker=qld,
        timestamp=T0,
        bid=Decimal("100.10"),
        ask=Decimal("100.14"),
        bid_size=Decimal(300),
        ask_size=Decimal(0),
        best_bid=Decimal("100.12"),
        worst_bid=Decimal("100.05"),
        best_ask=Decimal("100.13"),
        worst_ask=Decimal("100.20"),
        mid_open=Decimal("100.105"),
        mid_high=Decimal("100.13"),
        mid_low=Decimal("100.1"),
        mid_close=Decimal("100.12"),
        spread_mean=Decimal("0.035"),
        quote_count=9,
        crossed_count=1,
        locked_count=2,
        zero_size_count=1,
    )
    # Every quote of this second was crossed: counts, no prices.
    QuoteSnapshot.objects.create(
        ticker=qld,
        timestamp=T0 + timedelta(seconds=1),
        quote_count=2,
        crossed_count=2,
        locked_count=0,
        zero_size_count=0,
    )
    body = client.get(
        "/api/quote-candles/",
        {"start_time": iso(T0), "end_time": iso(T0 + timedelta(seconds=2))},
    ).json()
    assert body["metadata"]["timeframe"] == "1s-quote"
    first, crossed = body["data"]
    assert first == {
        "timestamp": "2026-03-02T14:30:00Z",
        "bid": 100.1,
        "ask": 100.14,
        "bid_size": 300.0,
        "ask_size": 0.0,
        "best_bid": 100.12,
        "worst_bid": 100.05,
        "best_ask": 100.13,
        "worst_ask": 100.2,
        "mid_open": 100.105,
        "mid_high": 100.13,
        "mid_low": 100.1,
        "mid_close": 100.12,
        "spread_mean": 0.035,
        "spread_close": 0.04,
        "quote_count": 9,
        "crossed_count": 1,
        "locked_count": 2,
        "zero_size_count": 1,
        "open": 100.105,
        "high": 100.13,
        "low": 100.1,
        "close": 100.12,
    }
    assert crossed["bid"] is None and crossed["close"] is None
    assert (crossed["quote_count"], crossed["crossed_count"]) == (2, 2)
