"""Partitioned against unpartitioned 1-second bars, side by side in one run.

Loads `--days` trading days of 1-second bars (the 6.5-hour session, 23,400 a
day) for `--symbols` symbols with COPY into the partitioned `api_second_snapshot`
(one partition a day, as migrated) and copies them into a plain table with the
same columns and indexes (`plain_second_snapshot`). A third plain table holds the
read day only (`oneday_second_snapshot`): the "small table" reads are compared
with. Then, on each:

- write: the collector's statement (one INSERT ... ON CONFLICT DO UPDATE of one
  bar per symbol, committed) for new seconds after the loaded data, before
  loading (empty tables) and after; p50/p99 of the commit time;
- read: `last=300` (newest 300 bars of a symbol within its day, and without any
  time bound) and a 6.5-hour session resampled to 1-minute bars in SQL
  (first/max/min/last/sum); p50/p99 over random symbols and days;
- retention: dropping the oldest day (partition: detach + drop, and the way
  cleanup_old_data does it, counting the rows first; plain: one DELETE of the
  day's rows);
- size on disk per million rows (table + indexes + TOAST).

    .venv/bin/python bench/partitions_bench.py [--days 21] [--symbols 50]

A month of 50 symbols (21 days) is 24.6 million rows per copy; --days 5 scales
it down where disk or time is short (say what you ran).
"""

import argparse
import io
import random
import time
from datetime import UTC, datetime, timedelta

import harness

OPEN_UTC = (14, 30)  # 09:30 New York in winter
SESSION = 23_400
TABLE = "api_second_snapshot"
PLAIN = "plain_second_snapshot"
ONEDAY = "oneday_second_snapshot"
COLUMNS = (
    "id, timestamp, ohlc_1sec_open, ohlc_1sec_high, ohlc_1sec_low, "
    "ohlc_1sec_close, ohlc_1sec_volume, ohlc_1sec_tick_count, vwap, "
    "price_momentum_5sec, price_change_1sec, composite_score, news_score_cached, "
    "technical_score_cached, flow_score_cached, source, created_at, updated_at, "
    "ticker_id, ohlc_1sec_eligible_count"
)


def trading_days(n: int, last: datetime) -> list[datetime]:
    days, day = [], last
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day.replace(hour=OPEN_UTC[0], minute=OPEN_UTC[1]))
        day -= timedelta(days=1)
    return sorted(days)


def rows_of_day(open_: datetime, tickers: list[int], first_id: int):
    """CSV text of a day's bars, in chunks (COPY reads a file-like object)."""
    base = int(open_.timestamp())
    stamp = "2026-12-01 00:00:00+00"
    next_id = first_id
    for ticker in tickers:
        out = io.StringIO()
        price = 100 + ticker % 50
        for i in range(SESSION):
            step = ((i * 7919 + ticker * 31) % 21 - 10) / 100
            close = round(price + step, 2)
            ts = datetime.fromtimestamp(base + i, tz=UTC).isoformat()
            hi, lo = max(price, close) + 0.02, min(price, close) - 0.02
            out.write(
                f"{next_id},{ts},{price},{hi:.2f},{lo:.2f},{close},{100 + i % 900},"
                f"{1 + i % 40},{close},,,,,,,eodhd_ws,{stamp},{stamp},{ticker},"
                f"{1 + i % 30}\n"
            )
            next_id += 1
            price = close
        yield out.getvalue()


class Chunks(io.RawIOBase):
    """A generator of text chunks as a file for copy_expert."""

    def __init__(self, chunks) -> None:
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks).encode()
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


def connect(dbname: str):
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=dbname)
    conn.autocommit = True
    return conn


def like(cur, name: str) -> None:
    """A plain copy of the table's shape: columns, keys and indexes."""
    cur.execute(f"DROP TABLE IF EXISTS {name}")
    cur.execute(
        f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING IDENTITY)"
    )
    cur.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
    cur.execute(f"ALTER TABLE {name} ADD UNIQUE (ticker_id, timestamp)")
    cur.execute(f"CREATE INDEX ON {name} (timestamp)")
    cur.execute(f"CREATE INDEX ON {name} (ticker_id)")


UPSERT = (
    "INSERT INTO {t} (timestamp, ohlc_1sec_open, ohlc_1sec_high, ohlc_1sec_low, "
    "ohlc_1sec_close, ohlc_1sec_volume, ohlc_1sec_tick_count, vwap, source, "
    "created_at, updated_at, ticker_id, ohlc_1sec_eligible_count) VALUES {values} "
    "ON CONFLICT (ticker_id, timestamp) DO UPDATE SET "
    "ohlc_1sec_close = EXCLUDED.ohlc_1sec_close, "
    "ohlc_1sec_volume = EXCLUDED.ohlc_1sec_volume, updated_at = EXCLUDED.updated_at"
)


def write_latency(conn, table: str, tickers: list[int], start: int, n: int) -> list:
    """n seconds of one upsert of a bar per symbol, each committed: ms each."""
    times = []
    with conn.cursor() as cur:
        for k in range(n):
            ts = datetime.fromtimestamp(start + k, tz=UTC).isoformat()
            values = ",".join(
                f"('{ts}',1,1,1,1,1,1,1,'eodhd_ws',now(),now(),{t},1)" for t in tickers
            )
            began = time.perf_counter()
            cur.execute(UPSERT.format(t=table, values=values))
            times.append((time.perf_counter() - began) * 1000)
    return times


LAST_IN_DAY = (
    "SELECT timestamp, ohlc_1sec_close FROM {t} WHERE ticker_id = %s "
    "AND timestamp >= %s AND timestamp < %s ORDER BY timestamp DESC LIMIT 300"
)
LAST_ANY = (
    "SELECT timestamp, ohlc_1sec_close FROM {t} WHERE ticker_id = %s "
    "ORDER BY timestamp DESC LIMIT 300"
)
MINUTES = (
    "SELECT date_trunc('minute', timestamp) AS m, "
    "(array_agg(ohlc_1sec_open ORDER BY timestamp))[1], max(ohlc_1sec_high), "
    "min(ohlc_1sec_low), (array_agg(ohlc_1sec_close ORDER BY timestamp DESC))[1], "
    "sum(ohlc_1sec_volume) FROM {t} WHERE ticker_id = %s AND timestamp >= %s "
    "AND timestamp < %s GROUP BY 1 ORDER BY 1"
)


def read_times(conn, sql: str, params: list[tuple], repeat: int) -> list[float]:
    times = []
    with conn.cursor() as cur:
        for _ in range(repeat):
            for p in params:
                began = time.perf_counter()
                cur.execute(sql, p)
                cur.fetchall()
                times.append((time.perf_counter() - began) * 1000)
    return times


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def size_per_million(cur, table: str, rows: int) -> float:
    cur.execute(
        "SELECT COALESCE((SELECT sum(pg_total_relation_size(relid)) "
        "FROM pg_partition_tree(%s)), pg_total_relation_size(%s))",
        [table, table],
    )
    return cur.fetchone()[0] / rows * 1_000_000 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=21, help="trading days loaded")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--writes", type=int, default=300, help="seconds written")
    parser.add_argument("--repeat", type=int, default=5, help="read repetitions")
    args = parser.parse_args()

    dbname = harness.setup_django()
    from api import partitions
    from api.models import Ticker

    conn = connect(dbname)
    cur = conn.cursor()
    cur.execute(f"TRUNCATE {TABLE}, api_ticker CASCADE")
    tickers = [
        Ticker.objects.create(symbol=f"B{i:03d}").id for i in range(args.symbols)
    ]
    last_day = datetime(2026, 11, 27, tzinfo=UTC)
    days = trading_days(args.days, last_day)
    for day in days:
        partitions.ensure(now=day, ahead=0)
    like(cur, PLAIN)
    like(cur, ONEDAY)
    future = int((last_day + timedelta(days=3)).timestamp())  # after the data
    partitions.ensure(now=datetime.fromtimestamp(future, tz=UTC), ahead=1)

    print(f"{args.days} days x {args.symbols} symbols x {SESSION} s")
    result: dict = {}
    for name, table in (("partitioned", TABLE), ("plain", PLAIN)):
        w = write_latency(conn, table, tickers, future, args.writes)
        result[f"write empty {name}"] = w
        cur.execute(f"DELETE FROM {table} WHERE timestamp >= to_timestamp({future})")

    began = time.perf_counter()
    next_id = 1
    for day in days:
        cur.copy_expert(
            f"COPY {TABLE} ({COLUMNS}) FROM STDIN WITH (FORMAT csv)",
            Chunks(rows_of_day(day, tickers, next_id)),
        )
        next_id += SESSION * len(tickers)
    rows = next_id - 1
    load_partitioned = time.perf_counter() - began
    began = time.perf_counter()
    cur.execute(f"INSERT INTO {PLAIN} SELECT * FROM {TABLE}")
    load_plain = time.perf_counter() - began
    read_day = days[len(days) // 2]
    cur.execute(
        f"INSERT INTO {ONEDAY} SELECT * FROM {TABLE} WHERE timestamp >= %s "
        "AND timestamp < %s",
        [read_day, read_day + timedelta(days=1)],
    )
    for table in (TABLE, PLAIN):  # new writes draw ids after the loaded ones
        cur.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", [rows + 1]
        )
    cur.execute(f"ANALYZE {TABLE}; ANALYZE {PLAIN}; ANALYZE {ONEDAY}")
    print(
        f"loaded {rows:,} rows: COPY into the partitioned table "
        f"{load_partitioned:.0f} s, copy into the plain table {load_plain:.0f} s"
    )

    for name, table in (("partitioned", TABLE), ("plain", PLAIN)):
        w = write_latency(conn, table, tickers, future + 10_000, args.writes)
        result[f"write full {name}"] = w

    rng = random.Random(5)
    sample = [rng.choice(tickers) for _ in range(20)]
    in_day = [(t, read_day, read_day + timedelta(hours=6, minutes=30)) for t in sample]
    for name, table in (("one day", ONEDAY), ("partitioned", TABLE), ("plain", PLAIN)):
        result[f"last300 day {name}"] = read_times(
            conn, LAST_IN_DAY.format(t=table), in_day, args.repeat
        )
        result[f"minutes {name}"] = read_times(
            conn, MINUTES.format(t=table), in_day, args.repeat
        )
        result[f"last300 any {name}"] = read_times(
            conn, LAST_ANY.format(t=table), [(t,) for t in sample], args.repeat
        )

    print("\n(ms)                              p50       p99")
    for key, values in result.items():
        print(f"{key:<30}{pct(values, 0.5):>9.2f} {pct(values, 0.99):>9.2f}")

    def ratio(a: str, b: str, q: float = 0.99) -> float:
        return pct(result[a], q) / pct(result[b], q)

    growth_part = ratio("write full partitioned", "write empty partitioned")
    growth_plain = ratio("write full plain", "write empty plain")
    print(
        f"\nwrite p99 full/empty: partitioned {growth_part:.2f}, "
        f"plain {growth_plain:.2f}"
    )
    for what in ("last300 day", "minutes"):
        print(
            f"{what} p50 vs one-day table: partitioned "
            f"{ratio(f'{what} partitioned', f'{what} one day', 0.5):.2f}x, plain "
            f"{ratio(f'{what} plain', f'{what} one day', 0.5):.2f}x; p99 "
            f"{ratio(f'{what} partitioned', f'{what} one day'):.2f}x / "
            f"{ratio(f'{what} plain', f'{what} one day'):.2f}x"
        )

    size_part = size_per_million(cur, TABLE, rows)
    size_plain = size_per_million(cur, PLAIN, rows)
    print(
        f"size per million rows: partitioned {size_part:.1f} MiB, "
        f"plain {size_plain:.1f} MiB"
    )

    oldest = days[0]
    began = time.perf_counter()
    dropped = partitions.drop_before(TABLE, oldest + timedelta(days=1))
    drop_counted = time.perf_counter() - began
    began = time.perf_counter()
    cur.execute(
        f"DELETE FROM {PLAIN} WHERE timestamp >= %s AND timestamp < %s",
        [oldest.replace(hour=0, minute=0), oldest + timedelta(days=1)],
    )
    delete_plain = time.perf_counter() - began
    deleted = cur.rowcount
    second = days[1]
    name = f"{TABLE}_p{second:%Y%m%d}"
    began = time.perf_counter()
    cur.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}; DROP TABLE {name}")
    drop_bare = time.perf_counter() - began
    print(
        f"retention of a day: partitioned {drop_counted * 1000:.0f} ms "
        "(cleanup_old_data's way: count, detach, drop; "
        f"{sum(d.rows for d in dropped):,} rows), "
        f"{drop_bare * 1000:.0f} ms (detach + drop alone); plain DELETE of "
        f"{deleted:,} rows {delete_plain * 1000:.0f} ms"
    )
    minutes = ratio("minutes partitioned", "minutes one day", 0.5)
    print(
        f"RESULT drop_day_ms={drop_counted * 1000:.0f} "
        f"delete_day_ms={delete_plain * 1000:.0f} "
        f"write_p99_full_over_empty={growth_part:.2f} "
        f"minutes_p50_over_oneday={minutes:.2f}"
    )
    cur.execute(f"DROP TABLE {PLAIN}; DROP TABLE {ONEDAY}")
    conn.close()


if __name__ == "__main__":
    main()
