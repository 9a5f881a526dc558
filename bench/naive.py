"""The seed's "before" design next to the collector, on the same kind of stream.

Before: the receive loop itself inserts one OHLCVTick row per trade through the
ORM (one INSERT and one commit per trade). After: the real Collector (1-second
and 100-trade bars, one batched upsert per table per flush). Both consume N
blasted trades from a loopback server for trades/s; then the collector is paced
at the rate the naive loop reached, so the writes/s compare at the same load.

Run from the repository root:  .venv/bin/python bench/naive.py [--n N]
"""

import argparse
import time

from blast import SYMBOLS, Job, start_server
from harness import PgStats, setup_django, truncate_bars
from throughput import run_blast, run_paced


def run_naive(port: int, n: int, pg: PgStats) -> dict:
    """The before design: parse, then `OHLCVTick.objects.create` per trade."""
    from datetime import UTC, datetime

    import websocket

    from django.db import connection

    from api.market.messages import Trade, parse_frame
    from api.models import OHLCVTick, Ticker

    truncate_bars()
    # Tickers looked up once, which is kinder to the before design than the seed.
    tickers = {s: Ticker.objects.get_or_create(symbol=s)[0] for s in SYMBOLS}
    before = pg.read()
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/ws/us", skip_utf8_validation=True, timeout=120
    )
    ws.recv_data()  # Authorized
    ws.send('{"action":"subscribe","symbols":"' + ",".join(SYMBOLS) + '"}')
    ws.settimeout(5)
    writes = 0
    started = None
    while writes < n:
        try:
            _, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            break
        if started is None:
            started = time.perf_counter()
        trade = parse_frame(data)
        if type(trade) is not Trade:
            continue
        OHLCVTick.objects.create(
            ticker=tickers[trade.symbol],
            timestamp=datetime.fromtimestamp(trade.ts_ms / 1000, tz=UTC),
            price=trade.price,
            volume=trade.size,
        )
        writes += 1
    elapsed = time.perf_counter() - started
    ws.close()
    connection.close()
    delta = pg.read() - before
    return {
        "elapsed": elapsed,
        "writes": writes,
        "pg_commits": delta.xact_commit - 1,  # our own read (±1)
        "pg_inserted": delta.tup_inserted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="trades per design")
    parser.add_argument("--event-rate", type=float, default=50_000)
    parser.add_argument(
        "--paced-seconds", type=float, default=12.0, help="collector at naive rate"
    )
    args = parser.parse_args()
    dbname = setup_django()
    pg = PgStats(dbname)
    proc, port = start_server(
        [
            # The naive loop is slow: stamps that advance at its pace keep its
            # rows realistic; the collector gets its usual blast stamps.
            Job(n=args.n, event_rate=2_000),
            Job(n=args.n, event_rate=args.event_rate),
        ]
    )
    try:
        naive = run_naive(port, args.n, pg)
        after = run_blast(port, args.n, pg, proc.pid)
    finally:
        proc.terminate()
        proc.join(5)
    naive_rate = naive["writes"] / naive["elapsed"]
    same_n = int(naive_rate * args.paced_seconds)
    proc, port = start_server(
        [Job(n=same_n, event_rate=naive_rate, paced=True, chunk_frames=20)]
    )
    try:
        same = run_paced(port, same_n, pg)
    finally:
        proc.terminate()
        proc.join(5)
        pg.close()

    naive_writes = naive["pg_commits"] / naive["elapsed"]
    rate = (after["taken"] - 1) / after["elapsed"]
    statements = same["statements"] / same["wall"]
    print(
        f"before: {naive['writes']} trades in {naive['elapsed']:.1f} s; "
        f"PostgreSQL saw {naive['pg_commits']} commits, "
        f"{naive['pg_inserted']} rows inserted"
    )
    print(
        f"after:  {after['taken']} trades in {after['elapsed']:.2f} s; writer sent "
        f"{after['statements']} statements in {after['wall']:.1f} s of running; "
        f"PostgreSQL saw {after['pg_commits']} commits (incl. start-up reads), "
        f"{after['pg_inserted']} rows inserted, {after['pg_updated']} updated"
    )
    lost = args.n - after["accounted"]
    print(f"        trades lost by the collector: {lost}")
    print(
        f"same load: collector paced at {naive_rate:,.0f} trades/s: "
        f"{same['taken']} trades, {same['statements']} statements in "
        f"{same['wall']:.1f} s of running = {statements:.2f}/s; PostgreSQL "
        f"steady state {same['pg_steady']:.2f} commits/s"
    )
    rows = [
        ("trades/s (consumed)", f"{naive_rate:,.0f}", f"{rate:,.0f}"),
        ("DB writes/s at the naive rate", f"{naive_writes:,.0f}", f"{statements:.2f}"),
        (
            "DB writes per 1,000 trades",
            f"{1000 * naive['pg_commits'] / naive['writes']:,.0f}",
            f"{1000 * same['statements'] / same['taken']:.3f}",
        ),
        (
            "rows stored per 1,000 trades",
            f"{1000 * naive['pg_inserted'] / naive['writes']:,.0f}",
            f"{1000 * after['pg_inserted'] / after['taken']:.1f}",
        ),
    ]
    print()
    print(f"| {'metric':<30} | {'before (naive)':>15} | {'after (collector)':>17} |")
    print(f"|{'-' * 32}|{'-' * 17}|{'-' * 19}|")
    for name, left, right in rows:
        print(f"| {name:<30} | {left:>15} | {right:>17} |")
    print()
    print(
        f"RESULT naive_trades_per_s={naive_rate:.0f} "
        f"naive_writes_per_s={naive_writes:.0f} collector_trades_per_s={rate:.0f} "
        f"collector_statements_per_s={statements:.2f}"
    )


if __name__ == "__main__":
    main()
