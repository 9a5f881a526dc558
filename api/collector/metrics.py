"""Prometheus metrics and /healthz, served by the collector on --metrics-port.

The numbers are read from the workers' own counters when Prometheus scrapes, so
the hot path pays nothing for them."""

import bisect
import json
import logging
import platform
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import metadata
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from api.collector.feed import RECONNECT_REASONS
from api.collector.leader import Role
from api.pipeline.errors import ErrorKind
from api.pipeline.kinds import KINDS

logger = logging.getLogger(__name__)

# Delay from a second's end to its bar's commit; the grace period is included.
DELAY_BUCKETS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class DelayHistogram:
    """Bucket counts kept by the writer thread (one update per bar, not per trade)."""

    def __init__(self, bounds: tuple[float, ...] = DELAY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def buckets(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(float(bound)), running))
        out.append(("+Inf", self.n))
        return out


def build_info() -> dict[str, str]:
    """The project's version (pyproject.toml) and its main dependencies'."""
    versions = {"version": _project_version(), "python": platform.python_version()}
    for label, dist in (
        ("django", "Django"),
        ("websocket_client", "websocket-client"),
        ("psycopg2", "psycopg2-binary"),
    ):
        try:
            versions[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[label] = "missing"
    return versions


def _project_version() -> str:
    try:
        with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as fh:
            return tomllib.load(fh)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _streams(app, counter):
    """Per-stream series (a stream's connections added up), then each
    connection's own."""
    receivers = list(app.receivers.items())
    by_stream: dict[str, list] = {}
    for _, r in receivers:
        by_stream.setdefault(r.stream, []).append(r)
    connected = GaugeMetricFamily(
        "collector_stream_connected",
        "1 when every socket of this stream with symbols is up",
        labels=["stream"],
    )
    for stream, rs in by_stream.items():
        active = [r for r in rs if r.symbols]
        connected.add_metric(
            [stream], int(bool(active) and all(r.connected for r in active))
        )
    yield connected
    yield counter(
        "collector_stream_frames_received",
        "WebSocket data frames, per stream",
        None,
        ["stream"],
        [([s], sum(r.stats.frames for r in rs)) for s, rs in by_stream.items()],
    )
    known = dict.fromkeys(RECONNECT_REASONS, 0)
    totals: dict[tuple[str, str], int] = {}
    for stream, rs in by_stream.items():
        for r in rs:
            for reason, n in (known | r.stats.reconnects).items():
                totals[(stream, reason)] = totals.get((stream, reason), 0) + n
    yield counter(
        "collector_stream_reconnects",
        "Reconnects by stream and reason",
        None,
        ["stream", "reason"],
        [([s, reason], n) for (s, reason), n in sorted(totals.items())],
    )
    per = GaugeMetricFamily(
        "collector_connection_connected",
        "1 when this connection's socket is up",
        labels=["connection", "stream"],
    )
    symbols = GaugeMetricFamily(
        "collector_connection_symbols",
        "Symbols subscribed on this connection",
        labels=["connection", "stream"],
    )
    for name, r in receivers:
        per.add_metric([name, r.stream], int(r.connected))
        symbols.add_metric([name, r.stream], len(r.symbols))
    yield per
    yield symbols


class CollectorExporter:
    """A prometheus_client custom collector reading a running Collector."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self):
        app = self.app
        r, a, w = app.receiver, app.aggregator, app.writer
        if r is None or a is None or w is None:
            return

        def counter(name, doc, value, labels=None, label_values=None):
            family = CounterMetricFamily(name, doc, labels=labels)
            if labels:
                for values, v in label_values:
                    family.add_metric(values, v)
            else:
                family.add_metric([], value)
            return family

        def gauge(name, doc, value):
            return GaugeMetricFamily(name, doc, value=value)

        yield counter(
            "collector_frames_received", "WebSocket data frames", r.stats.frames
        )
        yield counter(
            "collector_trades_accepted", "Trades for subscribed symbols", r.stats.trades
        )
        yield counter(
            "collector_malformed_frames",
            "Frames skipped as malformed",
            r.stats.malformed,
        )
        yield counter(
            "collector_ignored_frames",
            "Frames for other symbols or quotes",
            r.stats.ignored,
        )
        yield counter(
            "collector_late_trades",
            "Trades merged into a closed second",
            a.seconds.late_trades,
        )
        yield counter(
            "collector_revisions", "Revised 1-second bars emitted", a.seconds.revisions
        )
        rules = a.ingest.rules
        yield counter(
            "collector_restricted_prints",
            "Trades whose condition codes keep them from updating some part of a "
            "bar (odd lots, Form T in regular hours, ...), under --conditions",
            rules.ineligible,
        )
        yield counter(
            "collector_market_status_disagreements",
            "Trades whose `ms` market status names another session than the NYSE "
            "calendar at their timestamp (a few near session boundaries are normal)",
            rules.disagreements,
        )
        yield counter(
            "collector_dropped_too_late",
            "Trades older than the revision window",
            a.seconds.dropped_too_late,
        )
        yield counter(
            "collector_bars_written",
            "Bars committed to the database, by kind (revisions apart)",
            None,
            ["kind"],
            [([kind.name], w.stats.written[kind.name]) for kind in KINDS]
            + [(["second_revision"], w.stats.revisions_written)],
        )
        by_symbol = sorted(w.stats.bars_by_symbol.items())
        yield counter(
            "collector_symbol_bars_written",
            "1-second bars committed, per symbol",
            None,
            ["symbol"],
            [([symbol], n) for symbol, n in by_symbol],
        )
        yield counter(
            "collector_write_retries",
            "Failed database write attempts",
            w.stats.failed_attempts,
        )
        yield counter(
            "collector_db_statements",
            "Statements the writer sent (upserts, and the NOTIFY committed with them)",
            w.stats.statements,
        )
        yield counter(
            "collector_receiver_process_starts",
            "Helper processes started to read the socket (more than 1: one died)",
            sum(p.starts for p in app.pumps.values() if p is not None),
        )
        reasons = {reason: 0 for reason in RECONNECT_REASONS} | r.stats.reconnects
        yield counter(
            "collector_reconnects",
            "Reconnects by reason",
            None,
            ["reason"],
            [([reason], n) for reason, n in sorted(reasons.items())],
        )
        yield counter(
            "collector_trade_queue_full",
            "Times the receiver waited because the aggregator's queue was full",
            r.stats.queue_full,
        )
        yield counter(
            "collector_future_trades_dropped",
            "Trades stamped more than a minute ahead of the clock, dropped",
            a.seconds.dropped_future,
        )
        news = app.news
        yield counter(
            "collector_news_requests",
            "News API polls made",
            news.polls if news is not None else 0,
        )
        yield counter(
            "collector_news_failures",
            "News API polls that failed (the known articles are kept)",
            news.failures if news is not None else 0,
        )
        # Wall-clock times of the last trades: the convention for "how long ago".
        wall, mono = time.time(), time.monotonic()
        last = r.last_trade_at
        family = GaugeMetricFamily(
            "collector_symbol_last_trade_timestamp_seconds",
            "When the last trade of each subscribed symbol arrived (Unix time)",
            labels=["symbol"],
        )
        for symbol in r.symbols:
            if symbol in last:
                family.add_metric([symbol], wall - (mono - last[symbol]))
        yield family
        resubscribed = r.stats.resubscribes
        yield counter(
            "collector_symbol_resubscribes",
            "Times a symbol that went silent while the others streamed was "
            "subscribed again",
            None,
            ["symbol"],
            [([symbol], resubscribed.get(symbol, 0)) for symbol in r.symbols],
        )
        if last:
            yield gauge(
                "collector_last_trade_timestamp_seconds",
                "When the last trade of any symbol arrived (Unix time)",
                wall - (mono - max(last.values())),
            )
        connected_at = r.connected_at
        if r.connected and connected_at is not None:
            yield gauge(
                "collector_connected_since_timestamp_seconds",
                "When the current feed connection was made (Unix time)",
                wall - (mono - connected_at),
            )
        if news is not None and news.last_success_at is not None:
            yield gauge(
                "collector_news_last_success_timestamp_seconds",
                "When a news poll last succeeded (Unix time)",
                news.last_success_at,
            )
        verdict = app.verdict()
        family = GaugeMetricFamily(
            "collector_health",
            "1 for the state /healthz reports now (severity: ok, degraded, failing)",
            labels=["state", "severity"],
        )
        family.add_metric([verdict.state, verdict.severity], 1)
        yield family
        yield gauge(
            "collector_connected",
            "1 when the feed socket is up (every stream's, with several)",
            int(r.connected),
        )
        yield from _streams(app, counter)
        default_rows = GaugeMetricFamily(
            "collector_default_partition_rows",
            "Rows in a partitioned table's default partition when last measured "
            "(hourly; 0 when every row has its dated partition)",
            labels=["table"],
        )
        for table, rows in sorted(app.default_partition_rows.items()):
            default_rows.add_metric([table], rows)
        yield default_rows

        yield gauge(
            "collector_trade_queue_batches",
            "Receiver to aggregator queue",
            app.trades_queue.qsize(),
        )
        yield gauge(
            "collector_bar_queue_batches",
            "Aggregator to writer queue",
            app.fanout.get("writer").queue.qsize(),
        )
        yield gauge("collector_bars_waiting", "Bars not yet committed", w.waiting)
        family = GaugeMetricFamily(
            "collector_kind_bars_waiting",
            "Bars not yet committed, per kind",
            labels=["kind"],
        )
        for kind in KINDS:
            family.add_metric([kind.name], w.backlog.count(kind))
        yield family
        yield counter(
            "collector_output_dropped",
            "Messages an output with a drop policy could not take",
            None,
            ["output"],
            [([o.name], o.dropped) for o in app.fanout.outputs],
        )
        since = w.waiting_since
        standby = w.role is Role.STANDBY  # its bars wait on purpose
        yield gauge(
            "collector_oldest_waiting_seconds",
            "How long the oldest unwritten bar has waited (0: nothing waits, or "
            "a standby)",
            0.0 if since is None or standby else w.clock.monotonic() - since,
        )
        spool = app.spool
        yield gauge(
            "collector_spool_bytes",
            "Size of the spool file",
            spool.size if spool else 0,
        )
        yield counter(
            "collector_spooled_records",
            "Records appended to the spool",
            w.backlog.spooled,
        )
        yield counter(
            "collector_spool_dropped_records",
            "Spooled records dropped past the spool's size cap",
            spool.dropped if spool else 0,
        )
        role = w.role.value if w.role is not None else "electing"
        lock = w.leadership.name if w.leadership is not None else ""
        family = GaugeMetricFamily(
            "collector_writer_role",
            "1 for this collector's current role (writer, standby, unknown) for "
            "its symbol set (lock)",
            labels=["lock", "role"],
        )
        for name in ("writer", "standby", "unknown", "electing"):
            family.add_metric([lock, name], int(name == role))
        yield family
        if w.leadership is not None:
            held = w.leadership.held
            owned = GaugeMetricFamily(
                "collector_symbol_writer",
                "1 when this collector writes the symbol's bars (per trades or "
                "quotes); sum by symbol across collectors: exactly 1",
                labels=["symbol", "built_from"],
            )
            for name in sorted(held | w.leadership.lock.wanted):
                source, symbol = name.split(":", 1)
                owned.add_metric([symbol, source], int(name in held))
            yield owned
        universe = app.universe
        if universe is not None:
            claim = w.leadership.lock.claim
            yield gauge(
                "collector_universe_symbols",
                "Symbols enabled in the universe, as last read",
                len(universe.enabled),
            )
            yield gauge(
                "collector_universe_unclaimed",
                "Enabled units no collector held at this collector's last "
                "election (more than a few seconds: add capacity)",
                claim.free if claim is not None else 0,
            )
        yield counter(
            "collector_db_errors",
            "Failed database calls by kind (transient, permanent, timeout)",
            None,
            ["kind"],
            [([str(kind)], w.stats.db_errors[kind]) for kind in ErrorKind],
        )
        yield counter(
            "collector_db_calls_abandoned",
            "Database calls abandoned after their time bound",
            w.lane.abandoned,
        )
        yield counter(
            "collector_db_sessions_opened",
            "Database sessions the writer opened (more than a few: reconnects)",
            w.lane.sessions,
        )
        yield counter(
            "collector_bars_dropped",
            "Bars dropped past the memory limit with no spool to keep them",
            w.backlog.overflow_dropped,
        )
        yield counter(
            "collector_quarantined_rows",
            "Rows (and damaged spool lines) put in the quarantine file",
            None,
            ["kind"],
            [
                ([kind], w.quarantine.counts[kind])
                for kind in [k.name for k in KINDS] + ["damaged"]
            ],
        )
        yield counter(
            "collector_derived_nulled",
            "Derived figures stored as NULL because they cannot fit their column",
            None,
            ["field"],
            [([name], n) for name, n in sorted(w.stats.nulled.items())],
        )
        lock = w.leadership.lock if w.leadership is not None else None
        yield counter(
            "collector_orphaned_sessions_ended",
            "Own orphaned database sessions terminated to take the writer lock back",
            lock.orphans_ended if lock is not None else 0,
        )
        yield gauge(
            "collector_open_seconds",
            "Seconds still open for trades",
            a.seconds.open_seconds(),
        )
        yield gauge(
            "collector_pending_ticks",
            "Trades in partial 100-trade bars",
            a.ticks.pending_count(),
        )
        yield gauge(
            "collector_market_open",
            "1 while the session is open",
            int(app.gate.is_open()),
        )
        hist = w.stats.delay_histogram
        family = HistogramMetricFamily(
            "collector_commit_delay_seconds",
            "Delay from a second's end to its bar's commit (grace included)",
        )
        family.add_metric([], hist.buckets(), sum_value=hist.total)
        yield family


class _Handler(BaseHTTPRequestHandler):
    server: "MetricsServer"
    # A real client sends its request at once: an idle or half-sent connection
    # gives its slot back after this many seconds.
    timeout = 2.0

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = generate_latest(self.server.registry)
            self._send(200, CONTENT_TYPE_LATEST, body)
        elif path == "/healthz":
            status, payload = self.server.health()
            self._send(status, "application/json", json.dumps(payload).encode())
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # scrapes are not news
        return


class MetricsServer(HTTPServer):
    """Bounded: a few worker threads, at most MAX_CONNECTIONS connections in hand
    (the rest are closed at once), and a timeout on each. A flood of idle
    connections can make a scrape wait, never exhaust the process's descriptors
    (which the database and the spool need)."""

    MAX_CONNECTIONS = 8
    WORKERS = 4
    request_queue_size = 128  # the listen backlog: a burst is refused, not dropped

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self._slots = threading.BoundedSemaphore(self.MAX_CONNECTIONS)
        self._pool = ThreadPoolExecutor(self.WORKERS, thread_name_prefix="metrics")
        self.rejected = 0  # connections closed because all slots were taken
        self.app = app
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CollectorExporter(app))
        # The standard process_*, python_* series, and what is running.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        Info("collector_build", "Versions of what runs", registry=self.registry).info(
            build_info()
        )
        self._thread = threading.Thread(
            target=self.serve_forever, name="metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return self.server_address[1]

    def health(self) -> tuple[int, dict]:
        verdict = self.app.verdict()
        payload = {
            "status": "ok" if verdict.healthy else "unhealthy",
            "severity": verdict.severity,  # ok, degraded or failing
            "state": verdict.state,
            "reason": verdict.reason,
        }
        return (200 if verdict.healthy else 503), payload

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.rejected += 1
            self.shutdown_request(request)
            return
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        logger.debug("metrics request from %s failed", client_address)

    def start(self) -> "MetricsServer":
        self._thread.start()
        logger.info(
            "📈 metrics on http://%s:%d/metrics and /healthz", *self.server_address[:2]
        )
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
