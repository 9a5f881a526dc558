"""Throughput of the real collector against the raw websocket-client ceiling.

One run, three phases, all on 127.0.0.1 with a blast server in a child process:
  (a) raw: a bare websocket-client loop that only counts N frames;
  (b) blast: the real Collector (receiver, parser, aggregator, writer to
      PostgreSQL) on the same N frames, as fast as the socket delivers them;
  (c) paced: the Collector at --rate trades/s for --seconds with the default
      grace, for the delay from a second's end to its bar's commit.

Run from the repository root:  .venv/bin/python bench/throughput.py [--n N]
"""

import argparse
import os
import time

from blast import SYMBOLS, Job, start_server
from harness import (
    PgStats,
    cpu_seconds,
    peak_rss_mb,
    peak_rss_of,
    percentile,
    raw_ceiling,
    rss_mb,
    setup_django,
    stored_counts,
    truncate_bars,
    wait_for,
)

CONDITIONS = "eodhd"  # --conditions of the collectors measured (set by main)


def collector_config(port: int, grace: float, receiver_process: bool = True):
    from api.collector.feed import FeedPolicy
    from api.collector.runtime import CollectorConfig

    return CollectorConfig(
        symbols=list(SYMBOLS),
        ws_url=f"ws://127.0.0.1:{port}/ws/us",
        api_key="x",
        skip_market_hours=True,
        grace=grace,
        conditions=CONDITIONS,
        news_enabled=False,
        receiver_process=receiver_process,
        # The blast server builds all frames before it says Authorized.
        policy=FeedPolicy(authorize_timeout=120.0, connect_timeout=30.0),
    )


def cpu_now(app, server_pid: int) -> list[float]:
    """CPU seconds so far of: this process, the receiver process, the server."""
    pump = app.pump.pid if app.pump is not None else None
    return [cpu_seconds(pid) for pid in (os.getpid(), pump, server_pid)]


def run_blast(
    port: int, n: int, pg: PgStats, server_pid: int, receiver_process: bool = True
) -> dict:
    from api.collector.runtime import Collector
    from api.workers.memory import tune_gc

    truncate_bars()
    before = pg.read()
    app = Collector(collector_config(port, 30.0, receiver_process))
    wall_started = time.perf_counter()
    app.start()
    tune_gc()  # as the command does once the collector runs
    if not wait_for(lambda: app.receiver.stats.frames > 0, 180):
        raise SystemExit("the collector received nothing")
    t0 = time.perf_counter()
    cpu_t0 = cpu_now(app, server_pid)
    statements_t0 = app.writer.stats.statements
    progress = [0, time.monotonic()]

    def done() -> bool:
        taken = app.aggregator.trades
        if taken != progress[0]:
            progress[:] = [taken, time.monotonic()]
        elif time.monotonic() - progress[1] > 10:
            return True  # stalled: report what arrived rather than hang
        return taken >= n

    wait_for(done, 600)
    t1 = time.perf_counter()
    cpu = [b - a for a, b in zip(cpu_t0, cpu_now(app, server_pid), strict=True)]
    statements_t1 = app.writer.stats.statements
    pump_rss = peak_rss_of(app.pump.pid if app.pump is not None else None)
    code = app.shutdown(timeout=60)
    wall = time.perf_counter() - wall_started
    after = pg.read()
    delta = after - before
    pg_commits = delta.xact_commit - 1  # our own read of the counters (±1)
    ticks, candles = stored_counts()
    seconds = app.aggregator.seconds
    accounted = (
        ticks
        + app.aggregator.before_start
        + seconds.dropped_too_late
        + seconds.dropped_future
    )
    return {
        "exit": code,
        "elapsed": t1 - t0,
        "taken": app.aggregator.trades,
        "received": app.receiver.stats.trades,
        "malformed": app.receiver.stats.malformed,
        "queue_full": app.receiver.stats.queue_full,
        "stored_ticks": ticks,
        "accounted": accounted,
        "before_start": app.aggregator.before_start,
        "dropped": seconds.dropped_too_late + seconds.dropped_future,
        "late": seconds.late_trades,
        "revisions": seconds.revisions,
        "bars": app.writer.stats.bars_written,
        "candles": candles,
        "flushes": app.writer.stats.flushes,
        "statements": app.writer.stats.statements,
        "statements_window": statements_t1 - statements_t0,
        "wall": wall,
        "pg_commits": pg_commits,
        "pg_inserted": delta.tup_inserted,
        "pg_updated": delta.tup_updated,
        "sentiment_dropped": app.fanout.get("sentiment").dropped,
        "cpu": cpu,
        "pump_rss": pump_rss,
    }


def run_paced(port: int, n: int, pg: PgStats, steady_after: float = 1.5) -> dict:
    from api.collector.runtime import Collector

    truncate_bars()
    before = pg.read()
    app = Collector(collector_config(port, grace=2.0))
    wall_started = time.perf_counter()
    app.start()
    wait_for(lambda: app.receiver.stats.frames > 0, 180)
    t0 = time.perf_counter()
    # PostgreSQL's view of the steady part: counters sampled mid-run lag by at
    # most one backend report (about a second), so start after the writer's
    # first bars (its ticker look-ups) and a little more.
    wait_for(lambda: app.writer.stats.bars_written > 0, 30)
    time.sleep(steady_after)
    steady_from, steady_before = time.perf_counter(), pg.read(settle=0)
    wait_for(lambda: app.aggregator.trades >= n, 600)
    t1 = time.perf_counter()
    steady = pg.read(settle=0) - steady_before
    steady_commits = (steady.xact_commit - 1) / (t1 - steady_from)
    # Let the last seconds close and commit on their own, as in production.
    wait_for(
        lambda: app.aggregator.seconds.open_seconds() == 0 and not app.writer.waiting,
        10,
    )
    code = app.shutdown(timeout=60)
    wall = time.perf_counter() - wall_started
    delta = pg.read() - before
    delays = [d * 1000 for d in app.writer.stats.commit_delays]
    return {
        "exit": code,
        "elapsed": t1 - t0,
        "taken": app.aggregator.trades,
        "bars": app.writer.stats.bars_written,
        "revisions": app.writer.stats.revisions_written,
        "statements": app.writer.stats.statements,
        "wall": wall,
        "pg_commits": delta.xact_commit - 3,  # our three reads (±1)
        "pg_steady": steady_commits,
        "p50": percentile(delays, 0.50),
        "p99": percentile(delays, 0.99),
        "max": max(delays) if delays else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="blast trades")
    parser.add_argument("--rate", type=int, default=10_000, help="paced trades/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="paced length")
    parser.add_argument(
        "--no-thread-run",
        action="store_true",
        help="skip the extra blast with the receiver in a thread (--receiver-thread)",
    )
    parser.add_argument(
        "--conditions",
        choices=("eodhd", "all"),
        default="eodhd",
        help="the collectors' trade-condition rules (compare the two in one "
        "session of runs)",
    )
    parser.add_argument(
        "--event-rate",
        type=float,
        default=50_000,
        help="blast: how fast the trades' own timestamps advance (per second)",
    )
    args = parser.parse_args()
    global CONDITIONS
    CONDITIONS = args.conditions
    print(f"--conditions {CONDITIONS}")
    dbname = setup_django()
    pg = PgStats(dbname)
    paced_n = int(args.rate * args.seconds)
    proc, port = start_server(
        [
            Job(n=args.n, event_rate=args.event_rate),
            Job(n=args.n, event_rate=args.event_rate),
            Job(n=paced_n, event_rate=args.rate, paced=True, chunk_frames=100),
            *(
                []
                if args.no_thread_run
                else [Job(n=args.n, event_rate=args.event_rate)]
            ),
        ]
    )
    try:
        print(f"rss at start: {rss_mb():.0f} MB")
        raw_s, raw_count = raw_ceiling(f"ws://127.0.0.1:{port}/ws/us", args.n)
        raw_rate = (raw_count - 1) / raw_s
        print(f"(a) raw websocket-client: {raw_count} frames in {raw_s:.2f} s")
        blast = run_blast(port, args.n, pg, proc.pid)
        paced = run_paced(port, paced_n, pg)
        threaded = (
            None
            if args.no_thread_run
            else run_blast(port, args.n, pg, proc.pid, receiver_process=False)
        )
    finally:
        proc.terminate()
        proc.join(5)
        pg.close()

    rate = (blast["taken"] - 1) / blast["elapsed"]
    lost = args.n - blast["accounted"]
    print(
        f"(b) collector: {blast['taken']} trades in {blast['elapsed']:.2f} s "
        f"(received {blast['received']}, malformed {blast['malformed']}, "
        f"receiver waited on a full queue {blast['queue_full']}x, exit {blast['exit']})"
    )
    print(
        f"    stored tick_count sum {blast['stored_ticks']} + before start "
        f"{blast['before_start']} + dropped {blast['dropped']} = "
        f"{blast['accounted']} of {args.n}: lost {lost}; late merged "
        f"{blast['late']}, revisions {blast['revisions']}, bars {blast['bars']}"
    )
    per_symbol = args.n // len(SYMBOLS)
    want = per_symbol // 100
    candles = blast["candles"]
    ok = all(candles.get(s) == want for s in SYMBOLS)
    print(
        f"    100-trade bars per symbol: {sorted(set(candles.values()))} "
        f"(want {want}: {'ok' if ok else 'MISMATCH'})"
    )
    window_rate = blast["statements_window"] / blast["elapsed"]
    print(
        f"    statements (writer): {blast['statements']} in {blast['flushes']} "
        f"flushes over {blast['wall']:.1f} s = "
        f"{blast['statements'] / blast['wall']:.2f}/s; during the blast window "
        f"{window_rate:.2f}/s"
    )
    print(
        f"    pg_stat_database: {blast['pg_commits']} commits = "
        f"{blast['pg_commits'] / blast['wall']:.2f}/s over the run (incl. start-up "
        f"queries), rows inserted {blast['pg_inserted']}, updated "
        f"{blast['pg_updated']}"
    )
    main_cpu, pump_cpu, server_cpu = blast["cpu"]
    print(
        f"    CPU during the blast ({blast['elapsed']:.2f} s wall, "
        f"{os.cpu_count()} cores): collector {main_cpu:.2f} s, its receiver "
        f"process {pump_cpu:.2f} s, blast server {server_cpu:.2f} s"
    )
    if blast["sentiment_dropped"]:
        print(f"    sentiment batches dropped: {blast['sentiment_dropped']}")
    print(
        f"(c) paced {args.rate}/s x {args.seconds:.0f} s, grace 2.0: "
        f"{paced['taken']} trades in {paced['elapsed']:.2f} s, bars "
        f"{paced['bars']} (+{paced['revisions']} revisions), statements "
        f"{paced['statements']} = {paced['statements'] / paced['wall']:.2f}/s, "
        f"exit {paced['exit']}"
    )
    print(
        f"    pg_stat_database: {paced['pg_commits']} commits over the run = "
        f"{paced['pg_commits'] / paced['wall']:.2f}/s; steady state (after "
        f"start-up) {paced['pg_steady']:.2f} commits/s"
    )
    print(
        f"    second end -> commit: p50 {paced['p50']:.0f} ms, p99 "
        f"{paced['p99']:.0f} ms, max {paced['max']:.0f} ms"
    )
    if threaded is not None:
        t_rate = (threaded["taken"] - 1) / threaded["elapsed"]
        t_main, _, _ = threaded["cpu"]
        print(
            f"(d) the same blast with --receiver-thread: {threaded['taken']} trades "
            f"in {threaded['elapsed']:.2f} s = {t_rate:,.0f}/s, ratio "
            f"{t_rate / raw_rate:.2f}, lost {args.n - threaded['accounted']}; "
            f"CPU {t_main:.2f} s in one process"
        )
    ratio = rate / raw_rate
    print(
        f"raw {raw_rate:,.0f}/s, collector {rate:,.0f}/s, ratio {ratio:.2f} "
        f"(target >= 0.6), lost {lost}"
    )
    # Memory of the collector: this process (which also ran the raw loop and
    # the counting) plus its receiver process.
    rss = peak_rss_mb() + blast["pump_rss"]
    print(
        f"peak RSS: this process {peak_rss_mb():.0f} MB + receiver process "
        f"{blast['pump_rss']:.0f} MB"
    )
    print(
        f"RESULT trades_per_s={rate:.0f} raw_per_s={raw_rate:.0f} ratio={ratio:.2f} "
        f"p99_commit_ms={paced['p99']:.0f} rss_mb={rss:.0f}"
    )


if __name__ == "__main__":
    main()
