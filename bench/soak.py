"""A 6.5-hour session compressed: memory must stay flat.

The real Collector (socket, receiver, aggregator, writer to PostgreSQL) runs on
a clock that follows event time: `--speed` event seconds per real second. The
blast server, in its own process, stamps --per-symbol trades/s for each of 10
symbols and sends each one when the compressed clock reaches its stamp. RSS is
printed every simulated hour.

Run from the repository root:  .venv/bin/python bench/soak.py [--hours H]
"""

import argparse
import threading
import time

from blast import SYMBOLS, Job, start_server
from harness import PgStats, peak_rss_mb, rss_mb, setup_django, truncate_bars

SESSION_OPEN = 1_795_786_200.0  # an arbitrary 14:30 UTC, on a whole second


class EventClock:
    """Event time: `event_start` at real `wall_start`, `speed` times faster."""

    def __init__(self, event_start: float, wall_start: float, speed: float) -> None:
        self.event_start = event_start
        self.wall_start = wall_start
        self.speed = speed

    def now(self) -> float:
        return self.event_start + (time.time() - self.wall_start) * self.speed

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds) / self.speed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=6.5)
    parser.add_argument("--per-symbol", type=float, default=20.0, help="trades/s")
    parser.add_argument(
        "--speed", type=float, default=100.0, help="event seconds per real second"
    )
    parser.add_argument(
        "--grace", type=float, default=300.0, help="event seconds (see README)"
    )
    args = parser.parse_args()

    dbname = setup_django()
    from api.collector.runtime import Collector, CollectorConfig
    from api.workers.memory import tune_gc

    truncate_bars()
    pg = PgStats(dbname)
    rate = args.per_symbol * len(SYMBOLS)
    per_hour = int(rate * 3600)
    total = int(rate * 3600 * args.hours)
    wall_start = time.time() + 5.0  # room to connect before the session opens
    clock = EventClock(SESSION_OPEN, wall_start, args.speed)
    proc, port = start_server(
        [
            Job(
                n=total,
                event_rate=rate,
                paced=True,
                speed=args.speed,
                event_start=SESSION_OPEN,
                wall_start=wall_start,
                lazy=True,
                chunk_frames=100,
            )
        ]
    )
    config = CollectorConfig(
        symbols=list(SYMBOLS),
        ws_url=f"ws://127.0.0.1:{port}/ws/us",
        api_key="x",
        skip_market_hours=True,
        grace=args.grace,
        revision_window=4 * args.grace,
        news_enabled=False,
    )
    app = Collector(config, clock=clock)
    print(
        f"soak: {args.hours} h x {rate:.0f} trades/s = {total:,} trades at "
        f"{args.speed:.0f}x ({rate * args.speed:,.0f} trades/s real), "
        f"grace {args.grace:.0f} s event time; rss before start {rss_mb():.0f} MB"
    )
    samples: list[float] = []
    started = time.perf_counter()
    try:
        app.start()
        tune_gc()  # as the command does once the collector runs
        hour = 1
        max_lag = 0.0
        while True:
            taken = app.aggregator.trades
            # How far the pipeline trails the clock; beyond grace, trades are late.
            lag = clock.now() - (SESSION_OPEN + taken / rate)
            if taken and lag > max_lag:
                max_lag = lag
            target = min(total, hour * per_hour)
            if taken >= target:
                # The collector's memory: this process and its receiver process.
                pid = app.pump.pid if app.pump is not None else None
                helper = rss_mb(pid) if pid is not None else 0.0
                rss = rss_mb() + helper
                samples.append(rss)
                print(
                    f"hour {min(hour, args.hours):>4}: trades {taken:>9,} rss "
                    f"{rss:6.1f} MB (helper {helper:.1f}) | bars "
                    f"{app.writer.stats.bars_written:,} "
                    f"candles {app.writer.stats.candles_written:,} waiting "
                    f"{app.writer.waiting} | late {app.aggregator.seconds.late_trades}"
                    f" dropped {app.aggregator.seconds.dropped_too_late} | max lag "
                    f"{max_lag:.0f} s event | "
                    f"{time.perf_counter() - started:.0f} s real",
                    flush=True,
                )
                max_lag = 0.0
                if taken >= total:
                    break
                hour += 1
            if app.stop.wait(0.05):
                break  # a worker crashed: the collector stopped itself
    finally:
        code = app.shutdown(timeout=60)
        proc.terminate()
        proc.join(5)
        pg.close()
    seconds = app.aggregator.seconds
    print(
        f"exit {code}; received {app.receiver.stats.trades:,} of {total:,}; "
        f"bars {app.writer.stats.bars_written:,} (+{app.writer.stats.revisions_written}"
        f" revisions), 100-trade bars {app.writer.stats.candles_written:,}, "
        f"statements {app.writer.stats.statements}, dropped "
        f"{seconds.dropped_too_late + seconds.dropped_future}, retained bars "
        f"{seconds.retained()}, open seconds {seconds.open_seconds()}"
    )
    first, last = samples[0], samples[-1]
    print(
        f"rss first hour {first:.1f} MB, last {last:.1f} MB: growth "
        f"{(last - first) / first * 100:+.1f} % (target < 10 %); max/min "
        f"{max(samples) / min(samples):.3f}; peak of this process alone "
        f"{peak_rss_mb():.1f} MB"
    )
    print(
        f"RESULT rss_start_mb={first:.1f} rss_end_mb={last:.1f} "
        f"rss_max_mb={max(samples):.1f} trades={app.aggregator.trades}"
    )


if __name__ == "__main__":
    main()
