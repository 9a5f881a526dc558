"""The read endpoints on a full day of data: 23,400 one-second bars (a 6.5-hour
session) for each of several symbols, and a 100-trade bar every 5 seconds.

Prints the median and worst time of each request over a few repetitions, for a
one-hour window (the default) and for the whole day with the largest limit.

    .venv/bin/python bench/api_bench.py [--symbols 5] [--repeat 5]
"""

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import harness

SESSION = 23_400  # seconds in a regular session
OPEN = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)


def seed(symbols: int) -> None:
    from api.models import SecondSnapshot, TickCandle100, Ticker

    for s in range(symbols):
        ticker = Ticker.objects.create(symbol=f"SYM{s}")
        price = Decimal("100")
        bars, candles = [], []
        for i in range(SESSION):
            at = OPEN + timedelta(seconds=i)
            close = price + Decimal((i * 7919 + s) % 21 - 10) / 100
            bars.append(
                SecondSnapshot(
                    ticker=ticker,
                    timestamp=at,
                    ohlc_1sec_open=price,
                    ohlc_1sec_high=max(price, close) + Decimal("0.02"),
                    ohlc_1sec_low=min(price, close) - Decimal("0.02"),
                    ohlc_1sec_close=close,
                    ohlc_1sec_volume=Decimal(100 + i % 900),
                    ohlc_1sec_tick_count=1 + i % 40,
                    ohlc_1sec_eligible_count=1 + i % 30,
                    composite_score=float(i % 200 - 100),
                )
            )
            if i % 5 == 4:
                candles.append(
                    TickCandle100(
                        ticker=ticker,
                        candle_number=i // 5 + 1,
                        completed_at=at,
                        open=price,
                        high=price + 1,
                        low=price - 1,
                        close=close,
                        total_volume=Decimal(10_000),
                        eligible_count=70,
                        first_tick_time=at - timedelta(seconds=4),
                        last_tick_time=at,
                        duration_seconds=Decimal(4),
                    )
                )
            price = close
        SecondSnapshot.objects.bulk_create(bars, batch_size=5000)
        TickCandle100.objects.bulk_create(candles, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE api_second_snapshot")
        cursor.execute("ANALYZE api_tick_candle_100")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    harness.setup_django()
    harness.truncate_bars()
    from django.test import Client

    from api.models import Ticker

    Ticker.objects.all().delete()
    began = time.monotonic()
    seed(args.symbols)
    print(
        f"seeded {args.symbols} symbols x {SESSION} one-second bars "
        f"in {time.monotonic() - began:.1f} s"
    )
    client = Client(HTTP_HOST="localhost")
    hour = {
        "start_time": (OPEN + timedelta(hours=3)).isoformat(),
        "end_time": (OPEN + timedelta(hours=4)).isoformat(),
    }
    day = {
        "start_time": OPEN.isoformat(),
        "end_time": (OPEN + timedelta(seconds=SESSION)).isoformat(),
        "limit": "50000",
    }
    cases = [
        ("second-candles, 1 hour", "/api/second-candles/", hour),
        ("second-candles, whole day", "/api/second-candles/", day),
        ("tick-candles, whole day", "/api/tick-candles/", day),
        ("realtime-sentiment, 1 hour", "/api/realtime-sentiment/", hour),
        ("health", "/api/health/", {}),
    ]
    worst_overall = 0.0
    for label, url, params in cases:
        times, count = [], None
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = client.get(url, {"symbol": "SYM0", **params})
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content[:200]
            body = response.json()
            count = body.get("metadata", {}).get("count", len(body.get("symbols", {})))
        worst_overall = max(worst_overall, max(times))
        median = statistics.median(times) * 1000
        print(
            f"{label:30s} rows {count:>6}  median {median:7.1f} ms"
            f"  worst {max(times) * 1000:7.1f} ms"
        )
    print(f"RESULT worst_ms={worst_overall * 1000:.1f}")


if __name__ == "__main__":
    main()
