"""The read endpoints on a full day of data: 23,400 one-second bars (a 6.5-hour
session) for each of several symbols, and a 100-trade bar every 5 seconds; then
pushed updates (Server-Sent Events) through a real web server.

- Each endpoint's median and worst time over a few repetitions (`--repeat`), for
  a one-hour window (the default) and for the whole day with the largest limit.
- p50/p99/worst over `--samples` requests of the newest 300 bars (`last=300`)
  and of the whole day resampled to 1 minute (`interval=1m`): first from the
  1-second bars, then again once the day's 390 one-minute bars are seeded too
  (the response's `metadata.source` says which path answered); over
  `--csv-samples` requests, the whole day as streamed CSV, read to the end.
- SSE fan-out: gunicorn (gthread) in a child process, `--clients` streams on
  /api/stream/ over loopback, and `--rounds` writes of a new 1-second bar per
  symbol through the collector's own Store (the upsert commits, then NOTIFY
  collector_bars); for every client and event, the time from the commit to the
  client reading the event's bytes.

    .venv/bin/python bench/api_bench.py [--symbols 5] [--repeat 5] [--samples 200]
        [--csv-samples 30] [--clients 200] [--rounds 20] [--gap 0.3]
"""

import argparse
import http.client
import json
import os
import secrets
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import harness

SESSION = 23_400  # seconds in a regular session
OPEN = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)
LAST = 300  # bars asked for by last=
LOOKBACK = timedelta(days=7)  # how far back last= reaches without start_time


def seed(symbols: int) -> dict:
    """Seed the 1-second bars and 100-trade bars; return each symbol's 1-minute
    bars (built from the same 1-second bars, not saved yet)."""
    from api.models import SecondSnapshot, TickCandle100, Ticker

    minutes = {}
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
        minutes[ticker] = minute_bars(ticker, bars)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE api_second_snapshot")
        cursor.execute("ANALYZE api_tick_candle_100")
    return minutes


def minute_bars(ticker, bars: list) -> list:
    """One MinuteSnapshot per 60 one-second bars (the session opens on a minute),
    as the collector's 1-minute builder would have made them."""
    from api.models import MinuteSnapshot

    out = []
    for first in range(0, len(bars), 60):
        chunk = bars[first : first + 60]
        out.append(
            MinuteSnapshot(
                ticker=ticker,
                timestamp=chunk[0].timestamp,
                open=chunk[0].ohlc_1sec_open,
                high=max(b.ohlc_1sec_high for b in chunk),
                low=min(b.ohlc_1sec_low for b in chunk),
                close=chunk[-1].ohlc_1sec_close,
                volume=sum(b.ohlc_1sec_volume for b in chunk),
                tick_count=sum(b.ohlc_1sec_tick_count for b in chunk),
                eligible_count=sum(b.ohlc_1sec_eligible_count for b in chunk),
                composite_score=chunk[-1].composite_score,
            )
        )
    return out


def seed_minutes(minutes: dict) -> int:
    from django.db import connection

    from api.models import MinuteSnapshot

    rows = [bar for bars in minutes.values() for bar in bars]
    MinuteSnapshot.objects.bulk_create(rows, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE api_minute_snapshot")
    return len(rows)


def timed(client, url: str, params: dict, n: int, streamed: bool = False):
    """n GETs; (seconds each, the last response, the last body when streamed).
    A streamed body is read to its end inside the timing."""
    times, response, body = [], None, b""
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url, params)
        if streamed:
            body = b"".join(response.streaming_content)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    return times, response, body


def line(label: str, rows: int, times: list[float], note: str) -> str:
    p50 = harness.percentile(times, 0.50) * 1000
    p99 = harness.percentile(times, 0.99) * 1000
    return (
        f"{label:30s} rows {rows:>6}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
        f"  worst {max(times) * 1000:7.1f} ms  (n={len(times)}{note})"
    )


# SSE fan-out -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, clients: int, log) -> subprocess.Popen:
    """gunicorn, one gthread worker, in a session of its own (so it and its worker
    can be killed as one group)."""
    env = dict(
        os.environ,
        DJANGO_SECRET_KEY=secrets.token_hex(32),
        DJANGO_DEBUG="false",
        SSE_MAX_CLIENTS=str(clients),
    )
    threads = max(256, clients + 16)  # every open stream holds a thread
    command = [
        sys.executable, "-m", "gunicorn", "backend.wsgi",
        "--worker-class", "gthread", "--threads", str(threads), "-w", "1",
        "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "2",
        "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        cwd=harness.ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/health/")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (gunicorn's graceful stop), SIGKILL to its group if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker, if it outlived the master
    except ProcessLookupError:
        pass
    proc.wait(5)


class Streams:
    """`n` SSE clients on raw sockets (HTTP/1.0: the body is the event stream
    itself, not chunked), all read by one thread through a selector: each event
    is stamped with perf_counter() when the recv() holding its end returned."""

    def __init__(self, port: int, n: int, symbols: list[str]) -> None:
        request = (
            f"GET /api/stream/?symbols={','.join(symbols)} HTTP/1.0\r\n"
            f"Host: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self.selector = selectors.DefaultSelector()
        self.chunks: list[list[tuple[float, bytes]]] = [[] for _ in range(n)]
        self.ready = [False] * n
        self.seen = 0  # events so far, roughly (to know when to stop waiting)
        self.bytes = 0
        self.closed = 0
        self.status: list[int | None] = [None] * n
        self.events: list[list[tuple[str, int, float]]] = [[] for _ in range(n)]
        self._stop = threading.Event()
        self.sockets = []
        for i in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(request)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, i)
            self.sockets.append(sock)
        self._thread = threading.Thread(target=self._read, name="sse-clients")
        self._thread.start()

    def _read(self) -> None:
        # Only recv() and a stamp here: parsing waits until the run is over, so
        # one client's events never delay the next socket's read.
        while not self._stop.is_set():
            for key, _ in self.selector.select(0.1):
                try:
                    data = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                at = time.perf_counter()
                if not data:
                    self.selector.unregister(key.fileobj)
                    self.closed += 1
                    continue
                i = key.data
                self.chunks[i].append((at, data))
                self.bytes += len(data)
                self.seen += data.count(b"\nevent: ")
                if not self.ready[i] and b"retry:" in data:
                    self.ready[i] = True  # the stream's first line: subscribed

    def parse(self) -> None:
        """Each client's status and events: (symbol, bar second, when the recv()
        that completed the event returned)."""
        for i, chunks in enumerate(self.chunks):
            buffer = b""
            for at, data in chunks:
                buffer += data
                if self.status[i] is None:
                    head, found, rest = buffer.partition(b"\r\n\r\n")
                    if not found:
                        continue
                    self.status[i] = int(head.split(b" ", 2)[1])
                    buffer = rest
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    if not block.startswith(b"id:"):
                        continue  # retry:, or a heartbeat
                    for text in block.split(b"\n"):
                        if text.startswith(b"data: "):
                            item = json.loads(text[6:])
                            stamp = datetime.fromisoformat(item["timestamp"])
                            self.events[i].append(
                                (item["symbol"], int(stamp.timestamp()), at)
                            )

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()
        self.selector.close()


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def sse_fanout(clients: int, rounds: int, gap: float, symbols: list[str]) -> dict:
    from api.market.bars import TimeBar
    from api.models import Source
    from api.pipeline.kinds import SECOND
    from api.pipeline.store import Store

    class TimedStore(Store):
        """The collector's Store, noting when each upsert returned: the
        connection autocommits, so the rows are committed then; write() then
        sends NOTIFY collector_bars, as it does in the collector."""

        committed = 0.0

        def _statement(self, kind, rows, out) -> None:
            super()._statement(kind, rows, out)
            self.committed = time.perf_counter()

    def bars(second: int) -> dict:
        price = Decimal("100") + Decimal(second % 100) / 100
        return {
            SECOND: [
                (
                    TimeBar(
                        symbol=symbol,
                        second=second,
                        open=price,
                        high=price + Decimal("0.05"),
                        low=price - Decimal("0.05"),
                        close=price,
                        volume=Decimal(100),
                        tick_count=10,
                        vwap=price,
                        first_ts_ms=second * 1000,
                        last_ts_ms=second * 1000 + 900,
                        price_change_1sec=None,
                        price_momentum_5sec=None,
                        revision=False,
                        eligible_count=10,
                    ),
                    None,
                )
                for symbol in symbols
            ]
        }

    store = TimedStore(Source.SIMULATOR)

    def write(second: int) -> float:
        store.committed = 0.0
        outcome = store.write(bars(second))
        assert outcome.written["second"] == len(symbols), outcome
        assert store.committed, "Store._statement was not called"
        return store.committed

    port = free_port()
    log = tempfile.TemporaryFile()
    proc = start_server(port, clients, log)
    streams = None
    commits: dict[int, float] = {}  # bar second -> when its upsert returned
    failed = True
    try:
        started = time.monotonic()
        wait_ready(proc, port)
        up = time.monotonic() - started
        started = time.monotonic()
        streams = Streams(port, clients, symbols)
        if not wait_for(lambda: all(streams.ready), 30):
            streams.close()
            streams.parse()
            refused = sum(1 for s in streams.status if s not in (None, 200))
            raise RuntimeError(
                f"{sum(streams.ready)} of {clients} streams open ({refused} refused)"
            )
        opened = time.monotonic() - started
        # Bars stamped in the last minute (the hub reads the last ten), one new
        # second per round so that each event names its round.
        base = int(time.time()) - rounds - 10
        # A warm-up round, not counted: every stream carries one event first.
        write(base)
        wait_for(lambda: streams.seen >= clients * len(symbols), 10)
        warm = streams.seen
        began = time.perf_counter()
        for r in range(rounds):
            pause = began + r * gap - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            commits[base + 1 + r] = write(base + 1 + r)
        expected = clients * rounds * len(symbols)
        wait_for(lambda: streams.seen - warm >= expected, 10)
        failed = False
    finally:
        if streams is not None:
            streams.close()
        stop_server(proc)
        log.seek(0)
        server_log = log.read().decode(errors="replace")
        log.close()
        if failed:
            sys.stderr.write(f"server log (last lines):\n{server_log[-3000:]}\n")
    streams.parse()
    delays, duplicates = [], 0
    by_round: dict[int, list[float]] = {second: [] for second in commits}
    for events in streams.events:
        seen = set()
        for symbol, second, at in events:
            commit = commits.get(second)
            if commit is None:
                continue  # the warm-up round
            if (symbol, second) in seen:
                duplicates += 1
                continue
            seen.add((symbol, second))
            delays.append(at - commit)
            by_round[second].append(at - commit)
    return {
        "up": up,
        "opened": opened,
        "refused": sum(1 for status in streams.status if status != 200),
        "delays": delays,
        "first": [min(d) for d in by_round.values() if d],
        "last": [max(d) for d in by_round.values() if d],
        "expected": expected,
        "duplicates": duplicates,
        "bytes": streams.bytes,
        "warnings": [text for text in server_log.splitlines() if "WARNING" in text],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--csv-samples", type=int, default=30)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.3)
    args = parser.parse_args()

    harness.setup_django()
    harness.truncate_bars()
    from django.test import Client

    from api.models import Ticker

    Ticker.objects.all().delete()
    began = time.monotonic()
    minutes = seed(args.symbols)
    print(
        f"seeded {args.symbols} symbols x {SESSION} one-second bars "
        f"in {time.monotonic() - began:.1f} s"
    )
    client = Client(HTTP_HOST="localhost")
    hour = {
        "start_time": (OPEN + timedelta(hours=3)).isoformat(),
        "end_time": (OPEN + timedelta(hours=4)).isoformat(),
    }
    whole = {
        "start_time": OPEN.isoformat(),
        "end_time": (OPEN + timedelta(seconds=SESSION)).isoformat(),
    }
    day = {**whole, "limit": "50000"}
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
    result = {"worst_ms": worst_overall * 1000}
    url = "/api/second-candles/"

    # The newest 300 bars, as the chart's live polling asks (no time bounds: the
    # window reaches back 7 days from now, which must still hold the session).
    newest = {"symbol": "SYM0", "last": str(LAST)}
    note = ""
    if datetime.now(tz=UTC) - LOOKBACK > OPEN:
        newest["end_time"] = whole["end_time"]
        note = ", end_time set: the session is older than last='s 7 days"
    times, response, _ = timed(client, url, newest, args.samples)
    rows = response.json()["metadata"]["count"]
    assert rows == LAST, rows
    print(line(f"second-candles, last={LAST}", rows, times, note))
    result["last300_p99_ms"] = harness.percentile(times, 0.99) * 1000

    csv = {"symbol": "SYM0", **whole, "format": "csv"}
    times, response, body = timed(client, url, csv, args.csv_samples, streamed=True)
    rows = body.count(b"\n") - 1  # less the header
    assert rows == SESSION, rows
    print(line("second-candles csv, whole day", rows, times, f", {len(body):,} bytes"))
    result["csv_p99_ms"] = harness.percentile(times, 0.99) * 1000

    resampled = {"symbol": "SYM0", **whole, "interval": "1m"}
    for source in ("1s", "1m"):
        if source == "1m":
            began = time.monotonic()
            count = seed_minutes(minutes)
            print(
                f"seeded {count} one-minute bars ({count // args.symbols} per "
                f"symbol) in {time.monotonic() - began:.1f} s"
            )
        times, response, _ = timed(client, url, resampled, args.samples)
        metadata = response.json()["metadata"]
        assert metadata["source"] == source, metadata
        assert metadata["count"] == SESSION // 60, metadata["count"]
        label = f"interval=1m, day, {source} bars"
        print(line(label, metadata["count"], times, f", source {source}"))
        result[f"day_1m_from_{source}_p99_ms"] = harness.percentile(times, 0.99) * 1000

    symbols = [f"SYM{s}" for s in range(args.symbols)]
    sse = sse_fanout(args.clients, args.rounds, args.gap, symbols)
    delays = sse["delays"]

    def ms(values: list[float], q: float) -> float:
        return harness.percentile(values, q) * 1000

    print(
        f"sse: gunicorn gthread up in {sse['up']:.1f} s, {args.clients} streams "
        f"open in {sse['opened']:.1f} s ({sse['refused']} refused); "
        f"{args.rounds} rounds {args.gap:.2f} s apart, each one Store.write of "
        f"{len(symbols)} new bars; {sse['bytes']:,} bytes read"
    )
    print(
        f"{'sse commit -> client':30s} events {len(delays):>5}/{sse['expected']}"
        f"  p50 {ms(delays, 0.5):7.1f} ms  p99 {ms(delays, 0.99):7.1f} ms"
        f"  max {max(delays, default=float('nan')) * 1000:7.1f} ms"
        f"  (duplicates {sse['duplicates']})"
    )
    print(
        f"{'sse per round':30s} first event p50 {ms(sse['first'], 0.5):6.1f} ms"
        f"  last event p50 {ms(sse['last'], 0.5):6.1f} ms"
        f"  max {max(sse['last'], default=float('nan')) * 1000:6.1f} ms"
        f"  (server warnings {len(sse['warnings'])})"
    )
    for text in sse["warnings"][:3]:
        print(f"  server: {text}")
    result["sse_delivered"] = f"{len(delays)}/{sse['expected']}"
    result["sse_p50_ms"] = ms(delays, 0.5)
    result["sse_p99_ms"] = ms(delays, 0.99)
    print(
        "RESULT "
        + " ".join(
            f"{key}={value:.1f}" if isinstance(value, float) else f"{key}={value}"
            for key, value in result.items()
        )
    )


if __name__ == "__main__":
    main()
