"""`interval=` on the 1-second bars endpoint: resampled in SQL (PostgreSQL) or
in Python, against a brute force written from the documented semantics; from
the minute bars when they exist."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from django.db import connection

from api import resample
from api.models import MinuteSnapshot, SecondSnapshot, Ticker

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
SPAN = 900  # seconds seeded


@pytest.fixture
def seeded(db) -> Ticker:
    """15 minutes of 1-second bars with gaps, seconds without a price, bars
    without volume (no VWAP) and unknown scores."""
    rng = random.Random(11)
    ticker = Ticker.objects.create(symbol="QLD")
    rows = []
    for i in range(SPAN):
        if rng.random() < 0.2:
            continue  # no trade that second
        priced = rng.random() > 0.15
        price = Decimal("100") + Decimal(rng.randint(-300, 300)) / 100
        volume = Decimal(rng.choice([0, 5, 100, 250]))
        rows.append(
            SecondSnapshot(
                ticker=ticker,
                timestamp=T0 + timedelta(seconds=i),
                ohlc_1sec_open=price if priced else None,
                ohlc_1sec_high=price + 1 if priced else None,
                ohlc_1sec_low=price - 1 if priced else None,
                ohlc_1sec_close=price + Decimal("0.5") if priced else None,
                ohlc_1sec_volume=volume,
                ohlc_1sec_tick_count=rng.randint(1, 9),
                ohlc_1sec_eligible_count=rng.randint(0, 1) if priced else 0,
                vwap=price if volume else None,
                composite_score=None if rng.random() < 0.3 else rng.uniform(-50, 50),
            )
        )
    SecondSnapshot.objects.bulk_create(rows)
    return ticker


def brute(step: int) -> list[dict]:
    rows = list(SecondSnapshot.objects.order_by("timestamp"))
    buckets: dict[int, list] = {}
    for row in rows:
        epoch = int(row.timestamp.timestamp())
        buckets.setdefault(epoch // step * step, []).append(row)
    out = []
    for start in sorted(buckets):
        bars = buckets[start]
        priced = [b for b in bars if b.ohlc_1sec_open is not None]
        weighted = [b for b in bars if b.vwap is not None]
        volume = sum((b.ohlc_1sec_volume for b in weighted), Decimal(0))
        vwap = None
        if weighted and volume:
            vwap = sum(b.vwap * b.ohlc_1sec_volume for b in weighted) / volume
        out.append(
            {
                "timestamp": datetime.fromtimestamp(start, tz=UTC)
                .isoformat()
                .replace("+00:00", "Z"),
                "open": float(priced[0].ohlc_1sec_open) if priced else None,
                "high": float(max(b.ohlc_1sec_high for b in priced))
                if priced
                else None,
                "low": float(min(b.ohlc_1sec_low for b in priced)) if priced else None,
                "close": float(priced[-1].ohlc_1sec_close) if priced else None,
                "volume": float(sum(b.ohlc_1sec_volume for b in bars)),
                "tick_count": sum(b.ohlc_1sec_tick_count for b in bars),
                "eligible_count": sum(b.ohlc_1sec_eligible_count for b in bars),
                "vwap": None
                if vwap is None
                else float(vwap.quantize(Decimal("1e-10"))),
                "composite_score": bars[-1].composite_score,
                "bars": len(bars),
            }
        )
    return out


def get(client, **params):
    params.setdefault("symbol", "QLD")
    params.setdefault("start_time", T0.isoformat())
    params.setdefault("end_time", (T0 + timedelta(seconds=SPAN)).isoformat())
    return client.get("/api/second-candles/", params)


@pytest.mark.parametrize(("interval", "step"), [("5s", 5), ("1m", 60), ("15m", 900)])
def test_it_resamples_the_second_bars_as_documented(client, seeded, interval, step):
    response = get(client, interval=interval)
    assert response.status_code == 200
    body = response.json()
    assert body["metadata"]["timeframe"] == interval
    assert body["metadata"]["source"] == "1s"  # no minute bars here
    got = body["data"]
    expected = brute(step)
    assert len(got) == len(expected) > 0
    for g, e in zip(got, expected, strict=True):
        assert g == e


@pytest.mark.postgres
def test_sql_and_python_resampling_agree(seeded):
    start, end = T0, T0 + timedelta(seconds=SPAN)
    for step in (5, 60, 300):
        in_sql = resample._in_sql(resample.SECONDS, seeded.id, start, end, step, 10_000)
        rows = SecondSnapshot.objects.order_by("timestamp").values_list(
            "timestamp", *resample.SECONDS.columns
        )
        assert in_sql == resample.fold(rows, step, 10_000)
    assert connection.vendor == "postgresql"


def test_it_reads_minute_bars_when_they_exist(client, seeded):
    for i in range(15):
        MinuteSnapshot.objects.create(
            ticker=seeded,
            timestamp=T0 + timedelta(minutes=i),
            open=Decimal(200 + i),
            high=Decimal(210 + i),
            low=Decimal(190 + i),
            close=Decimal(205 + i),
            volume=Decimal(1000),
            tick_count=60,
            eligible_count=50,
            vwap=Decimal(201 + i),
            composite_score=float(i),
        )
    body = get(client, interval="5m").json()
    assert body["metadata"]["source"] == "1m"
    first, second, third = body["data"]
    assert first == {
        "timestamp": "2026-11-30T14:30:00Z",
        "open": 200.0,
        "high": 214.0,
        "low": 190.0,
        "close": 209.0,
        "volume": 5000.0,
        "tick_count": 300,
        "eligible_count": 250,
        "vwap": 203.0,
        "composite_score": 4.0,
        "bars": 5,
    }
    assert (second["open"], third["close"]) == (205.0, 219.0)
    # Seconds-sized intervals still read the 1-second bars.
    assert get(client, interval="15s").json()["metadata"]["source"] == "1s"


def test_it_refuses_an_unknown_interval_and_reads_1s_as_it_was(client, seeded):
    response = get(client, interval="7m")
    assert response.status_code == 400
    assert "interval '7m' is not one of" in response.json()["message"]
    plain = get(client, interval="1s").json()
    assert plain["metadata"]["timeframe"] == "1s"
    assert plain == get(client).json()


def test_the_limit_counts_buckets(client, seeded):
    body = get(client, interval="1m", limit=3).json()
    assert len(body["data"]) == 3
    assert body["metadata"]["truncated"] is True
