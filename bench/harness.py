"""Shared set-up for the benchmark scripts: Django on a scratch PostgreSQL
database, memory readings, PostgreSQL's own counters, and the raw receive loop.

Import this before any `api` module: it puts the repository root on sys.path.
"""

import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/collector_bench"
BAR_TABLES = [
    "api_second_snapshot",
    "api_minute_snapshot",
    "api_tick_candle_100",
    "api_ohlcv_tick",
]


def setup_django() -> str:
    """Create the scratch database if needed, set Django up, migrate; its name."""
    import logging

    import psycopg2

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
    # Long-lived threads reuse their connection, as in production.
    os.environ.setdefault("CONN_MAX_AGE", "600")
    name = os.environ["DATABASE_URL"].rsplit("/", 1)[1].split("?")[0]
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    # The collector logs every start/stop at INFO; the numbers matter here.
    logging.getLogger("api").setLevel(logging.WARNING)
    return name


def truncate_bars() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(BAR_TABLES)} RESTART IDENTITY")
    connection.close()


def rss_mb(pid: int | None = None) -> float:
    """Current resident set size of this process, or of another (0 if gone)."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_of(pid: int | None) -> float:
    """Peak resident set size (VmHWM) of another process (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


POLL = 0.002  # seconds between looks at the counters: cheap next to the work


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


def stored_counts() -> tuple[int, dict[str, int]]:
    """(sum of stored 1-second tick counts, 100-trade bars per symbol)."""
    from django.db import connection
    from django.db.models import Count, Sum

    from api.models import SecondSnapshot, TickCandle100

    ticks = SecondSnapshot.objects.aggregate(n=Sum("ohlc_1sec_tick_count"))["n"] or 0
    candles = dict(
        TickCandle100.objects.values_list("ticker__symbol")
        .annotate(n=Count("id"))
        .values_list("ticker__symbol", "n")
    )
    connection.close()
    return ticks, candles


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (the interpreter, libraries) split
    among the processes sharing them, so helper processes add up fairly."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class PgCounters:
    """pg_stat_database for one database: an independent count of what the
    collector did (every statement it sends runs in its own transaction)."""

    xact_commit: int
    tup_inserted: int
    tup_updated: int

    def __sub__(self, other: "PgCounters") -> "PgCounters":
        return PgCounters(
            self.xact_commit - other.xact_commit,
            self.tup_inserted - other.tup_inserted,
            self.tup_updated - other.tup_updated,
        )


class PgStats:
    """Reads pg_stat_database over its own connection (its reads are subtracted)."""

    def __init__(self, dbname: str) -> None:
        import psycopg2

        self.conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=dbname)
        self.conn.autocommit = True
        self.dbname = dbname
        self.reads = 0

    def read(self, settle: float = 1.2) -> PgCounters:
        # Backends publish their counters at most once a second and when idle:
        # wait that long so the last flush is visible.
        time.sleep(settle)
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT xact_commit, tup_inserted, tup_updated "
                "FROM pg_stat_database WHERE datname = %s",
                [self.dbname],
            )
            row = cur.fetchone()
        self.reads += 1
        return PgCounters(*row)

    def close(self) -> None:
        self.conn.close()


def raw_ceiling(url: str, n: int) -> tuple[float, int]:
    """A bare websocket-client loop that only counts frames; (seconds from the
    first data frame to the n-th, frames counted)."""
    import websocket

    ws = websocket.create_connection(url, skip_utf8_validation=True, timeout=30)
    ws.recv_data()  # Authorized
    ws.send('{"action":"subscribe","symbols":"ALL"}')
    # Same socket timeout as the collector's receiver, so the same recv path.
    ws.settimeout(0.25)
    recv = ws.recv_data
    opcode, _ = recv()
    started = time.perf_counter()
    count = 1
    while count < n:
        try:
            opcode, _ = recv()
        except websocket.WebSocketTimeoutException:
            break  # the stream ended early: report what arrived
        count += 1
    elapsed = time.perf_counter() - started
    ws.close()
    return elapsed, count


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
