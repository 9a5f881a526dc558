"""What backfill_gaps spends: EODHD API calls per symbol-hour of gap, at several
tick rates, against the built-in simulator's tick history over loopback.

For each rate (trades a second for one symbol) the simulator records an hour
and a half of tape; coverage says the symbol was observed for the first and
last quarter hour, so the hour between is a gap. backfill_gaps' own code (the
planner, the paging client, the builder and the store) fills it; the simulator
counts the requests. A second run over the same window shows what a repeat
costs (ranges already stored are skipped).

    .venv/bin/python bench/backfill_bench.py [--rates 2,10,40,100] [--page 10000]

Scratch PostgreSQL database from DATABASE_URL (default: harness.DEFAULT_DB).
"""

import argparse
import time
from datetime import UTC, datetime

import harness

HOUR = 3600
T0 = 1_780_000_000 // 900 * 900  # on the 15-minute grid, like a session's open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="2,10,40,100")
    parser.add_argument("--page", type=int, default=10_000, help="rows per response")
    parser.add_argument("--cost", type=int, default=10, help="API calls per request")
    args = parser.parse_args()
    harness.setup_django()

    from api import backfill
    from api.models import (
        ApiUsage,
        Backfill,
        Coverage,
        SecondSnapshot,
        Source,
        Ticker,
    )
    from api.simulator import FeedServer, SimOptions

    Backfill.objects.all().delete()
    ApiUsage.objects.all().delete()
    harness.truncate_bars()

    def at(second: float) -> datetime:
        return datetime.fromtimestamp(second, tz=UTC)

    print(f"gap 1 h per symbol, page {args.page} rows, {args.cost} API calls a request")
    print(
        f"{'trades/s':>9} {'ticks':>9} {'requests':>9} {'calls/h':>8} "
        f"{'seconds':>8} {'repeat req':>10} {'time s':>7}"
    )
    for rate in (float(r) for r in args.rates.split(",")):
        symbol = f"R{int(rate)}"
        Ticker.objects.filter(symbol=symbol).delete()
        ticker = Ticker.objects.create(symbol=symbol)
        for start, end in ((T0, T0 + 900), (T0 + 900 + HOUR, T0 + 1800 + HOUR)):
            Coverage.objects.create(
                ticker=ticker,
                stream="us",
                collector="bench:1:1",
                start=at(start),
                seen_through=at(end),
                end=at(end),
                end_reason="reconnect",
            )
        options = SimOptions(seed=1, ticks_page_limit=args.page, keep_sent=False)
        with FeedServer(options=options) as server:
            server.record_tape([symbol], T0, T0 + 1800 + HOUR, rate)
            client = backfill.TickClient(
                server.api_url,
                "bench-key",
                cost=args.cost,
                daily_calls=10**9,
                page_rows=args.page,
            )
            report = backfill.Report()
            began = time.perf_counter()
            backfill.backfill(
                ticker, "us", T0 + 300, T0 + 1500 + HOUR, client, "eodhd", report
            )
            took = time.perf_counter() - began
            first = server.ticks_requests
            backfill.backfill(
                ticker,
                "us",
                T0 + 300,
                T0 + 1500 + HOUR,
                client,
                "eodhd",
                backfill.Report(),
            )
            repeat = server.ticks_requests - first
        filled = SecondSnapshot.objects.filter(
            ticker=ticker, source=Source.BACKFILL
        ).count()
        print(
            f"{rate:>9g} {report.ticks:>9} {first:>9} {first * args.cost:>8} "
            f"{filled:>8} {repeat:>10} {took:>7.1f}"
        )


if __name__ == "__main__":
    main()
