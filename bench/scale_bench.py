"""500 symbols over 10 connections in one collector process, against 10 symbols
over one: what the symbol count costs.

One run, all on 127.0.0.1 against a blast server in a child process (each group
of connections is served the trades of exactly the symbols it subscribed):
  (a) raw: bare websocket-client loops that only count N frames, over one
      connection (the ceiling throughput.py uses) and over 10 connections in
      10 processes (what the machine's two cores can read at all);
  (c) paced: the Collector at --rate trades/s in total for --seconds, first with
      10 symbols on one connection (the baseline), then with 500 symbols on 10
      connections: statements/s, PostgreSQL commits/s, second end -> commit,
      RSS of the process and of its receiver processes;
  (b) blast: the Collector with 500 symbols on 10 connections on N trades
      (N/10 per connection), as fast as the sockets deliver them.

Run from the repository root:  .venv/bin/python bench/scale_bench.py
"""

import argparse
import multiprocessing
import os
import threading
import time
from collections import Counter

from blast import SYMBOLS, Job, start_server
from harness import (
    PgStats,
    cpu_seconds,
    peak_rss_of,
    percentile,
    pss_mb,
    raw_ceiling,
    rss_mb,
    setup_django,
    stored_counts,
    truncate_bars,
    wait_for,
)

PER_CONNECTION = 50  # symbols per connection: EODHD's default limit


def many_symbols(count: int) -> list[str]:
    return [f"S{i:03d}" for i in range(count)]


def slices(symbols: list[str]) -> list[list[str]]:
    """The pool's split: in the given order, PER_CONNECTION per connection."""
    return [
        symbols[i : i + PER_CONNECTION] for i in range(0, len(symbols), PER_CONNECTION)
    ]


# Raw ceiling over several connections ------------------------------------------------


def _raw_child(url: str, n: int, out) -> None:
    """harness.raw_ceiling's loop, reporting when its first and last frames came
    (time.monotonic is one clock for every process)."""
    import websocket

    ws = websocket.create_connection(url, skip_utf8_validation=True, timeout=60)
    ws.recv_data()  # Authorized
    ws.send('{"action":"subscribe","symbols":"ALL"}')
    recv = ws.recv_data
    recv()  # a group starts once every connection subscribed and was built
    ws.settimeout(0.25)
    first = time.monotonic()
    count = 1
    while count < n:
        try:
            recv()
        except websocket.WebSocketTimeoutException:
            break
        count += 1
    last = time.monotonic()
    ws.close()
    out.send((first, last, count))


def raw_many(url: str, n_each: int, connections: int) -> tuple[float, int]:
    """(seconds from the first frame on any connection to the last on all,
    frames counted), one process per connection."""
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for _ in range(connections):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_raw_child, args=(url, n_each, child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results = [pipe.recv() for pipe in pipes]
    for proc in procs:
        proc.join(10)
    first = min(r[0] for r in results)
    last = max(r[1] for r in results)
    return last - first, sum(r[2] for r in results)


# The collector -----------------------------------------------------------------------


def collector_config(
    port: int, symbols: list[str], grace: float, per_connection: int = PER_CONNECTION
):
    from api.collector.feed import FeedPolicy
    from api.collector.runtime import CollectorConfig

    return CollectorConfig(
        symbols=list(symbols),
        ws_url=f"ws://127.0.0.1:{port}/ws/us",
        api_key="x",
        skip_market_hours=True,
        grace=grace,
        news_enabled=False,
        symbols_per_connection=per_connection,
        # As the command runs it: one advisory lock per symbol (all free here).
        writer_lock="scale-bench",
        policy=FeedPolicy(authorize_timeout=120.0, connect_timeout=30.0),
    )


def accounted(app, ticks: int) -> int:
    seconds = app.aggregator.seconds
    return (
        ticks
        + app.aggregator.before_start
        + seconds.dropped_too_late
        + seconds.dropped_future
    )


def pump_pids(app) -> list[int]:
    return [p.pid for p in app.pumps.values() if p is not None and p.pid]


def ignored(app) -> int:
    """Trades a connection got for symbols it did not subscribe (0 when the
    server answered each connection with its own symbols)."""
    return sum(r.stats.ignored for r in app.receivers.values())


class SqlCounter:
    """Every SQL statement any Django connection of this process sends (the
    collector's threads open theirs after it is installed), by first word.
    Transaction control (BEGIN, COMMIT) does not pass through here: PostgreSQL's
    commit count tells the transactions."""

    def __init__(self) -> None:
        from django.db.backends.signals import connection_created

        self.counts: Counter = Counter()
        self.lock = threading.Lock()
        connection_created.connect(self._install, weak=False)

    def _install(self, sender, connection, **kwargs) -> None:
        if self._wrap not in connection.execute_wrappers:
            connection.execute_wrappers.append(self._wrap)

    def _wrap(self, execute, sql, params, many, context):
        verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
        with self.lock:
            self.counts[verb] += 1
        return execute(sql, params, many, context)

    def snapshot(self) -> Counter:
        with self.lock:
            return Counter(self.counts)


SQL = None  # the SqlCounter, once Django is set up


def run_paced(port: int, symbols: list[str], n: int, pg: PgStats) -> dict:
    from api.collector.runtime import Collector
    from api.workers.memory import tune_gc

    truncate_bars()
    before = pg.read()
    app = Collector(collector_config(port, symbols, grace=2.0))
    wall_started = time.perf_counter()
    app.start()
    tune_gc()
    wait_for(lambda: app.receiver.stats.frames > 0, 180)
    # The steady part: once every symbol has a stored bar (the writer looks each
    # ticker's id up once, one statement per symbol, on its first write) and a
    # little more, as throughput.py does after the first bars.
    wait_for(lambda: len(app.writer.stats.bars_by_symbol) >= len(symbols), 60)
    time.sleep(1.5)
    steady_from, steady_before = time.perf_counter(), pg.read(settle=0)
    statements_from = app.writer.stats.statements
    sql_from = SQL.snapshot()
    flushes_from = app.writer.stats.flushes
    delays_from = len(app.writer.stats.commit_delays)
    wait_for(lambda: app.aggregator.trades >= n, 600)
    t1 = time.perf_counter()
    steady = pg.read(settle=0) - steady_before
    sql = SQL.snapshot() - sql_from
    window = t1 - steady_from
    statements = app.writer.stats.statements - statements_from
    flushes = app.writer.stats.flushes - flushes_from
    # Memory while running: this process now, each receiver process now and
    # at its peak.
    pumps = pump_pids(app)
    process_rss = rss_mb()
    pump_rss = [rss_mb(pid) for pid in pumps]
    pump_peak = [peak_rss_of(pid) for pid in pumps]
    pump_pss = [pss_mb(pid) for pid in pumps]
    wait_for(
        lambda: app.aggregator.seconds.open_seconds() == 0 and not app.writer.waiting,
        10,
    )
    code = app.shutdown(timeout=60)
    wall = time.perf_counter() - wall_started
    delta = pg.read() - before
    ticks, candles = stored_counts()
    delays = [d * 1000 for d in app.writer.stats.commit_delays]
    steady_delays = delays[delays_from:]
    return {
        "exit": code,
        "connections": len(app.receivers),
        "taken": app.aggregator.trades,
        "received": app.receiver.stats.trades,
        "ignored": ignored(app),
        "lost": n - accounted(app, ticks),
        "bars": app.writer.stats.bars_written,
        "revisions": app.writer.stats.revisions_written,
        "window": window,
        "statements_per_s": statements / window,
        "sql_per_s": sum(sql.values()) / window,
        "sql_by_verb": {verb: count / window for verb, count in sql.most_common()},
        "flushes_per_s": flushes / window,
        "commits_per_s": (steady.xact_commit - 1) / window,
        "statements_run": app.writer.stats.statements / wall,
        "commits_run": (delta.xact_commit - 3) / wall,  # our three reads (±1)
        "p50": percentile(steady_delays, 0.50),
        "p99": percentile(steady_delays, 0.99),
        "delays": len(steady_delays),
        "p99_run": percentile(delays, 0.99),
        "max_run": max(delays) if delays else float("nan"),
        "delays_run": len(delays),
        "rss": process_rss,
        "pump_rss": pump_rss,
        "pump_pss": pump_pss,
        "pump_peak": pump_peak,
    }


def run_blast(
    port: int,
    symbols: list[str],
    n: int,
    server_pid: int,
    per_connection: int = PER_CONNECTION,
) -> dict:
    from api.collector.runtime import Collector
    from api.workers.memory import tune_gc

    truncate_bars()
    app = Collector(collector_config(port, symbols, 30.0, per_connection))
    app.start()
    tune_gc()
    if not wait_for(lambda: app.receiver.stats.frames > 0, 180):
        raise SystemExit("the collector received nothing")
    t0 = time.perf_counter()
    pumps = pump_pids(app)
    cpu_t0 = [
        cpu_seconds(os.getpid()),
        sum(cpu_seconds(p) for p in pumps),
        cpu_seconds(server_pid),
    ]
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
    cpu_t1 = [
        cpu_seconds(os.getpid()),
        sum(cpu_seconds(p) for p in pumps),
        cpu_seconds(server_pid),
    ]
    pump_peak = [peak_rss_of(pid) for pid in pumps]
    process_rss = rss_mb()
    code = app.shutdown(timeout=60)
    ticks, candles = stored_counts()
    seconds = app.aggregator.seconds
    return {
        "exit": code,
        "connections": len(app.receivers),
        "elapsed": t1 - t0,
        "taken": app.aggregator.trades,
        "received": app.receiver.stats.trades,
        "per_connection": sorted(r.stats.trades for r in app.receivers.values()),
        "ignored": ignored(app),
        "malformed": app.receiver.stats.malformed,
        "stored_ticks": ticks,
        "before_start": app.aggregator.before_start,
        "dropped": seconds.dropped_too_late + seconds.dropped_future,
        "lost": n - accounted(app, ticks),
        "candles": candles,
        "cpu": [b - a for a, b in zip(cpu_t0, cpu_t1, strict=True)],
        "rss": process_rss,
        "pump_peak": pump_peak,
        "sentiment_dropped": app.fanout.get("sentiment").dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=500, help="symbols (x50/conn)")
    parser.add_argument("--n", type=int, default=500_000, help="blast trades")
    parser.add_argument(
        "--event-rate",
        type=float,
        default=50_000,
        help="blast: how fast the trades' stamps advance, in total (per second)",
    )
    parser.add_argument("--rate", type=int, default=5_000, help="paced trades/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="paced length")
    parser.add_argument(
        "--no-split",
        action="store_true",
        help="skip the two extra blasts (10 symbols and all symbols on one "
        "connection) that tell the cost of symbols from that of connections",
    )
    args = parser.parse_args()
    symbols = many_symbols(args.symbols)
    groups = slices(symbols)
    k = len(groups)
    if args.symbols % PER_CONNECTION or args.n % args.symbols:
        raise SystemExit("--symbols must be a multiple of 50 that divides --n")
    paced_n = int(args.rate * args.seconds)
    dbname = setup_django()
    global SQL
    SQL = SqlCounter()
    pg = PgStats(dbname)
    # Chunks of 20 ms of trades when paced, as throughput.py (100 at 10,000/s).
    jobs = [
        Job(n=args.n, event_rate=args.event_rate),  # (a) one connection
        [
            Job(n=args.n // k, event_rate=args.event_rate / k, seed=i) for i in range(k)
        ],  # (a) k connections
        Job(
            n=paced_n,
            event_rate=args.rate,
            paced=True,
            chunk_frames=max(1, args.rate // 50),
            symbols=list(SYMBOLS),
        ),  # (c) baseline: 10 symbols, one connection
        [
            Job(
                n=paced_n // k,
                event_rate=args.rate / k,
                paced=True,
                chunk_frames=max(1, args.rate // k // 50),
                symbols=group,
                seed=i,
            )
            for i, group in enumerate(groups)
        ],  # (c) all symbols
        [
            Job(n=args.n // k, event_rate=args.event_rate / k, symbols=group, seed=i)
            for i, group in enumerate(groups)
        ],  # (b)
    ]
    if not args.no_split:
        jobs += [
            Job(n=args.n, event_rate=args.event_rate, symbols=list(SYMBOLS)),
            Job(n=args.n, event_rate=args.event_rate, symbols=symbols),
        ]
    proc, port = start_server(jobs)
    url = f"ws://127.0.0.1:{port}/ws/us"
    started = time.monotonic()
    split = []
    try:
        raw1_s, raw1_count = raw_ceiling(url, args.n)
        rawk_s, rawk_count = raw_many(url, args.n // k, k)
        rss_before = rss_mb()
        base = run_paced(port, list(SYMBOLS), paced_n, pg)
        wide = run_paced(port, symbols, paced_n, pg)
        blast = run_blast(port, symbols, args.n, proc.pid)
        if not args.no_split:
            split.append(run_blast(port, list(SYMBOLS), args.n, proc.pid))
            split.append(run_blast(port, symbols, args.n, proc.pid, len(symbols)))
    finally:
        proc.terminate()
        proc.join(5)
        pg.close()
    total = time.monotonic() - started

    raw1 = (raw1_count - 1) / raw1_s
    rawk = (rawk_count - 1) / rawk_s
    print(
        f"(a) raw websocket-client, 1 connection: {raw1_count} frames in "
        f"{raw1_s:.2f} s = {raw1:,.0f}/s"
    )
    print(
        f"    raw, {k} connections in {k} processes: {rawk_count} frames in "
        f"{rawk_s:.2f} s = {rawk:,.0f}/s ({rawk / raw1:.2f}x one connection, "
        f"{os.cpu_count()} cores)"
    )
    rate = (blast["taken"] - 1) / blast["elapsed"]
    for run, count in (
        (blast, len(symbols)),
        # No split runs with --no-split.
        *zip(split, (len(SYMBOLS), len(symbols)), strict=False),
    ):
        run_rate = (run["taken"] - 1) / run["elapsed"]
        label = "(b)" if run is blast else "   "
        print(
            f"{label} collector, {count} symbols on {run['connections']} "
            f"connection(s): {run['taken']} trades in {run['elapsed']:.2f} s = "
            f"{run_rate:,.0f}/s; ratio {run_rate / raw1:.2f} to one raw "
            f"connection, {run_rate / rawk:.2f} to {k}; lost {run['lost']} "
            f"(exit {run['exit']})"
        )
        main_cpu, pump_cpu, server_cpu = run["cpu"]
        print(
            f"    CPU: collector {main_cpu:.2f} s, its {len(run['pump_peak'])} "
            f"receiver process(es) {pump_cpu:.2f} s, blast server {server_cpu:.2f} s;"
            f" per trade {main_cpu / args.n * 1e6:.1f} + "
            f"{pump_cpu / args.n * 1e6:.1f} us"
        )
    want = args.n // len(symbols) // 100
    candles = blast["candles"]
    ok = len(candles) == len(symbols) and set(candles.values()) == {want}
    print(
        f"(b) received {blast['received']} (per connection "
        f"{blast['per_connection'][0]}..{blast['per_connection'][-1]}, for other "
        f"symbols {blast['ignored']}, malformed {blast['malformed']}); stored "
        f"tick_count sum {blast['stored_ticks']} + before start "
        f"{blast['before_start']} + dropped {blast['dropped']}: lost "
        f"{blast['lost']} of {args.n}"
    )
    print(
        f"    100-trade bars: {len(candles)} symbols with "
        f"{sorted(set(candles.values()))} each (want {want}: "
        f"{'ok' if ok else 'MISMATCH'})"
    )
    if blast["sentiment_dropped"]:
        print(f"    sentiment batches dropped: {blast['sentiment_dropped']}")
    for name, run, count in (
        ("baseline", base, len(SYMBOLS)),
        ("wide", wide, len(symbols)),
    ):
        print(
            f"(c) paced {args.rate}/s x {args.seconds:.0f} s, {count} symbols on "
            f"{run['connections']} connection(s) [{name}]: {run['taken']} trades "
            f"(for other symbols {run['ignored']}), lost {run['lost']}, bars "
            f"{run['bars']} (+{run['revisions']} revisions), exit {run['exit']}"
        )
        print(
            f"    steady {run['window']:.1f} s: writer {run['statements_per_s']:.2f} "
            f"statements/s in {run['flushes_per_s']:.2f} flushes/s; PostgreSQL "
            f"{run['commits_per_s']:.2f} commits/s (whole run: "
            f"{run['statements_run']:.2f} statements/s, {run['commits_run']:.2f} "
            f"commits/s incl. start-up)"
        )
        verbs = ", ".join(f"{v} {r:.2f}" for v, r in run["sql_by_verb"].items())
        print(
            f"    every SQL statement of the collector's process, steady: "
            f"{run['sql_per_s']:.2f}/s ({verbs})"
        )
        print(
            f"    second end -> commit, steady ({run['delays']} bars): p50 "
            f"{run['p50']:.0f} ms, p99 {run['p99']:.0f} ms; whole run "
            f"({run['delays_run']} bars): p99 {run['p99_run']:.0f} ms, max "
            f"{run['max_run']:.0f} ms"
        )
        pumps = run["pump_rss"]
        print(
            f"    RSS: this process {run['rss']:.0f} MB ({run['rss'] - rss_before:+.0f}"
            f" MB over {rss_before:.0f} MB before the first collector); receiver "
            f"processes {sum(pumps):.0f} MB in all ({len(pumps)} x "
            f"{min(pumps):.1f}-{max(pumps):.1f} MB, peak "
            f"{max(run['pump_peak']):.1f} MB; PSS {sum(run['pump_pss']):.0f} MB "
            f"in all)"
        )
    print(
        f"    after the blast: this process {blast['rss']:.0f} MB, receiver "
        f"processes peak {sum(blast['pump_peak']):.0f} MB in all"
    )

    def ratio(a: float, b: float, digits: int = 2) -> str:
        both = f"{a:.{digits}f} vs {b:.{digits}f}"
        return f"{both} ({a / b:.2f}x)" if b else both

    base_rss = base["rss"] + sum(base["pump_rss"])
    wide_rss = wide["rss"] + sum(wide["pump_rss"])
    base_pss = base["rss"] + sum(base["pump_pss"])
    wide_pss = wide["rss"] + sum(wide["pump_pss"])
    print(
        f"{len(symbols)} vs {len(SYMBOLS)} symbols at {args.rate}/s: writer "
        f"statements/s {ratio(wide['statements_per_s'], base['statements_per_s'])}"
        f", all SQL statements/s {ratio(wide['sql_per_s'], base['sql_per_s'])}"
        f", PostgreSQL commits/s {ratio(wide['commits_per_s'], base['commits_per_s'])}"
        f", p99 commit ms {ratio(wide['p99'], base['p99'], 0)}, MB process + "
        f"receivers (RSS) {ratio(wide_rss, base_rss, 0)}, with the receivers' PSS "
        f"{ratio(wide_pss, base_pss, 0)}"
    )
    print(f"whole run {total:.0f} s")
    print(
        f"RESULT trades_per_s={rate:.0f} raw1_per_s={raw1:.0f} "
        f"raw{k}_per_s={rawk:.0f} ratio={rate / raw1:.2f} "
        f"statements_per_s={wide['statements_per_s']:.2f} "
        f"sql_per_s={wide['sql_per_s']:.2f} "
        f"commits_per_s={wide['commits_per_s']:.2f} p99_commit_ms={wide['p99']:.0f} "
        f"p99_ratio={wide['p99'] / base['p99']:.2f} rss_mb={wide_rss:.0f} "
        f"lost={blast['lost'] + base['lost'] + wide['lost']}"
    )


if __name__ == "__main__":
    main()
