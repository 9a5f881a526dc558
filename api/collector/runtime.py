"""Wires the collector's threads together, runs them, and shuts them down."""

import logging
import math
import os
import queue
import secrets
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection

from api import budget, partitions
from api.budget import SharedBudget
from api.collector.aggregator import Aggregator
from api.collector.database import (
    CALL_TIMEOUT,
    DatabaseLane,
    tagged_application_name,
)
from api.collector.feed import FeedPolicy, Receiver, Streams, feed_url
from api.collector.journal import Journal
from api.collector.leader import (
    Claim,
    FileLock,
    Leadership,
    PostgresLock,
    Role,
    units_for,
)
from api.collector.metrics import MetricsServer
from api.collector.monitor import HealthMonitor
from api.collector.outputs import Fanout, Output, Policy
from api.collector.pool import FeedPool
from api.collector.pump import Pump
from api.collector.session import SessionGate
from api.collector.spool import Spool, SpoolUnusable
from api.collector.state import Seeds, load_partial_state, save_partial_state
from api.collector.universe import Universe
from api.collector.writer import FLUSH_INTERVAL, SUSPECT_AFTER, Writer
from api.market.backoff import Backoff
from api.market.health import Verdict
from api.market.messages import Quote, Trade
from api.models import Ticker
from api.pipeline.errors import CallTimeout, first_line
from api.pipeline.ingest import Ingest
from api.pipeline.kinds import KINDS, STREAM_KINDS, TICK100
from api.pipeline.messages import (
    Bars,
    Closes,
    Finished,
    Progress,
    Renumber,
    Trades,
    Watch,
)
from api.pipeline.store import Tails, stored_tails
from api.redact import mask_token
from api.sentiment.engine import NewsPoller, SentimentEngine, SharedArticles
from api.sentiment.holder import LatestScores
from api.sentiment.news import NewsClient
from api.workers.clock import Clock
from api.workers.signals import SIGNALS

logger = logging.getLogger(__name__)

QUEUE_BATCHES = 4096  # receiver -> aggregator, in batches of up to 256 trades
# Health: the oldest unwritten bar may wait this long after the flush interval
# (it is handed to the writer after the grace period already).
WRITE_WAIT_LIMIT = 10.0
WRITER_STUCK_AFTER = 30.0  # the writer thread has not run for this long
SPOOLING_RECENT = 15.0  # "spooling" while the spool grew within this many seconds


def parse_streams(feed: str) -> list[str]:
    """`us`, `us-quote,us`, ...: the EODHD streams asked for, in order; a wrong
    one is a StartupError."""
    streams = [part.strip() for part in feed.split(",") if part.strip()]
    unknown = [s for s in streams if s not in STREAM_KINDS]
    if not streams or unknown:
        raise StartupError(
            f"unknown feed {', '.join(unknown) or repr(feed)} (streams: "
            f"{', '.join(STREAM_KINDS)}, several comma-separated)"
        )
    if len(set(streams)) != len(streams):
        raise StartupError(f"feed {feed!r} names a stream twice")
    return streams


class StartupError(Exception):
    """The collector cannot start; the message is one readable line."""


@dataclass
class CollectorConfig:
    symbols: list[str]
    ws_url: str
    api_key: str
    # The EODHD streams, comma-separated: us / crypto (trades), us-quote / forex
    # (quotes). Several streams: one connection each, `ws_url`'s last path
    # segment replaced by each stream's name.
    feed: str = "us"
    skip_market_hours: bool = False
    extended_hours: bool = False
    stale_after: float = 120.0
    grace: float = 2.0
    revision_window: float = 300.0
    conditions: str = "eodhd"  # the trade-condition rules (api.market.conditions)
    verbose: bool = False
    source: str = "eodhd_ws"
    max_pending: int = 500_000
    policy: FeedPolicy = field(default_factory=FeedPolicy)
    health_check_interval: float = 10.0
    health_log_interval: float = 60.0
    flush_interval: float = FLUSH_INTERVAL
    metrics_port: int | None = None  # None: off; 0: any free port
    metrics_host: str = "127.0.0.1"
    news_enabled: bool = True
    news_api_base: str = "https://eodhd.com/api"
    news_poll_interval: float = 60.0
    sentiment_weights: tuple[float, float, float] = (0.45, 0.30, 0.25)
    spool_dir: Path | None = None  # None: no spool, no state kept across runs
    spool_max_bytes: int = 512 * 1024 * 1024
    # The name of the symbol set for the writer election; None: no election.
    writer_lock: str | None = None
    record_dir: Path | None = None  # journal every raw frame here
    # Read the socket in a helper process (two cores) or in a thread of this one.
    receiver_process: bool = os.name == "posix"  # the helper needs pass_fds
    db_timeout: float = CALL_TIMEOUT  # bound on one database call
    startup_db_wait: float = 60.0  # give up starting after this long without it
    # Symbols per EODHD connection: a stream's symbols take as many as needed.
    symbols_per_connection: int = 50
    # Take the symbols from the database's universe (api.models.UniverseSymbol)
    # instead of `symbols`, at most `capacity` of them (api/collector/universe.py).
    universe: bool = False
    capacity: int = 500


class Collector:
    """`run()` blocks until stopped (signal or `stop.set()`) and returns the exit
    code: 0 for a clean stop, 1 when a worker crashed."""

    def __init__(
        self,
        config: CollectorConfig,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or Clock()
        # The command passes the process's stop flag (api.workers.signals), which
        # a signal may have set before the collector even existed.
        self.stop = stop or threading.Event()
        self.streams = parse_streams(config.feed)
        built = {kind for stream in self.streams for kind in STREAM_KINDS[stream]}
        self.kinds = tuple(kind for kind in KINDS if kind in built)
        # Each stream keeps its own hours: NYSE (us, us-quote), the FX week
        # (forex), always (crypto, or --skip-market-hours).
        self.gates = {
            stream: SessionGate(
                always_open=config.skip_market_hours or stream == "crypto",
                extended=config.extended_hours,
                clock=self.clock,
                fx=stream == "forex",
            )
            for stream in self.streams
        }
        self.gate = self.gates[self.streams[0]]
        self.scores = LatestScores()
        self.started_at = self.clock.monotonic()
        self.trades_queue: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        # The aggregator's subscribers: the database writer never loses a bar
        # (it bounds its own memory and spools); sentiment is best effort.
        self.fanout = Fanout(
            [
                Output("writer", (Bars, Watch, Progress, Finished), Policy.BLOCK),
                Output("sentiment", (Trades, Closes), Policy.DROP, maxsize=10_000),
            ]
        )
        # Every connection, by name: the stream's name for its first, then
        # "<stream>-2", ... (api/collector/pool.py).
        self.receivers: dict[str, Receiver] = {}
        self.pools: dict[str, FeedPool] = {}
        # Rows in each partitioned table's default partition, as last measured.
        self.default_partition_rows: dict[str, int] = {}
        self.receiver: Receiver | Streams | None = None
        self.aggregator: Aggregator | None = None
        self.writer: Writer | None = None
        self.monitor: HealthMonitor | None = None
        self.sentiment: SentimentEngine | None = None
        self.news: NewsPoller | None = None
        self.news_budget: SharedBudget | None = None
        self.universe: Universe | None = None
        self.metrics: MetricsServer | None = None
        self.journal: Journal | None = None
        self.pumps: dict[str, Pump] = {}
        self.pump: Pump | None = None  # the first stream's
        self.spool = (
            Spool(config.spool_dir, config.spool_max_bytes)
            if config.spool_dir is not None
            else None
        )
        self.partial_candles: dict[str, list] = {}
        self.seeds: Seeds = {}  # open wider buckets the last run left
        self.lane = DatabaseLane(timeout=config.db_timeout, clock=self.clock)
        self.identity = secrets.token_hex(8)  # kept in the spool dir when there is one
        self.known_tails: Tails = {}

    # Startup --------------------------------------------------------------------

    def prepare(self) -> dict[str, int] | None:
        """Create the tickers and read where 100-trade numbering resumes. Retries
        (interruptibly) while the database is unreachable, for at most
        `startup_db_wait` seconds; None if stopped meanwhile."""
        symbols = self.config.symbols
        give_up = self.clock.monotonic() + self.config.startup_db_wait
        backoff = Backoff(base=1.0, cap=10.0)
        while not self.stop.is_set():
            try:
                self.known_tails = self.lane.run(_ensure_tickers, symbols)
                break
            except (DatabaseError, CallTimeout) as exc:
                wait = backoff.next()
                if self.clock.monotonic() + wait > give_up:
                    raise StartupError(
                        f"the database is unreachable ({first_line(exc)}); gave up "
                        f"after {self.config.startup_db_wait:.0f} s"
                    ) from None
                logger.error(
                    "❌ database unreachable at startup (%s); retrying in %.0f s",
                    first_line(exc),
                    wait,
                )
                if self.stop.wait(wait):
                    return None
        else:
            return None
        numbers = {
            s: (self.known_tails.get(s, {}).get(TICK100) or 0) + 1 for s in symbols
        }
        self._resume_from_disk(numbers)
        return numbers

    def _resume_from_disk(self, numbers: dict[str, int]) -> None:
        """Candles still in the spool count for numbering; partial candles saved
        by a clean stop continue when their number is still the next one."""
        if self.spool is None:
            return
        contents = self.spool.load()
        if len(contents):
            logger.info(
                "💾 the spool holds %s from an earlier run; they are written first",
                ", ".join(
                    f"{len(items)} {kind.label} bars"
                    for kind, items in contents.items.items()
                    if items
                ),
            )
        for symbol, number in contents.items[TICK100]:
            if symbol in numbers:
                numbers[symbol] = max(numbers[symbol], number + 1)
        carried = load_partial_state(self.spool.directory)
        self.seeds = {
            kind: {key: p for key, p in partials.items() if key[0] in numbers}
            for kind, partials in carried.seeds.items()
        }
        for kind, partials in self.seeds.items():
            if partials:
                logger.info(
                    "▶️ continuing %d open %s bars from the last run",
                    len(partials),
                    kind.label,
                )
        for symbol, (number, trades) in carried.candles.items():
            if numbers.get(symbol) == number:
                self.partial_candles[symbol] = trades
                logger.info(
                    "▶️ %s: continuing 100-trade bar #%d with its %d saved trades",
                    symbol,
                    number,
                    len(trades),
                )
            else:
                logger.warning(
                    "⚠️ %s: saved partial 100-trade bar #%s no longer follows the "
                    "stored bars (next is #%s); its %d trades are not used",
                    symbol,
                    number,
                    numbers.get(symbol),
                    len(trades),
                )

    def _leadership(self) -> Leadership | None:
        """One lock per symbol this collector may write (api/collector/leader.py)."""
        name = self.config.writer_lock
        if name is None:
            return None
        units = units_for(self.kinds, self.config.symbols)
        if connection.vendor == "postgresql":
            lock = PostgresLock(self.identity, units)
        else:
            lock = FileLock(Path(settings.DATA_DIR) / "locks", units)
        if self.config.universe:
            lock.claim = Claim(capacity=self.config.capacity)
        return Leadership(name, lock)

    def _save_partial(self, ticks, seeds: Seeds) -> None:
        writer = self.writer
        if writer is not None and writer.role is Role.STANDBY:
            return  # a standby's partial bars are not the stored sequence
        try:
            # Only the symbols it writes: the others' are not the stored sequence.
            saved = save_partial_state(
                self.spool.directory,
                ticks,
                seeds,
                keep=writer.keeps if writer is not None else None,
            )
            logger.info("💾 saved %s", saved)
        except OSError as exc:
            logger.error("❌ could not save the partial bars: %s", exc)

    def _receiver(self, stream: str, name: str, symbols: list[str]) -> Receiver:
        """A connection of `stream` (its first is named after the stream)."""
        cfg = self.config
        several = len(self.streams) > 1
        pump = Pump() if cfg.receiver_process else None
        self.pumps[name] = pump
        quotes = STREAM_KINDS[stream][0].built_from == "quotes"
        receiver = Receiver(
            url=feed_url(cfg.ws_url, stream) if several else cfg.ws_url,
            token=cfg.api_key,
            symbols=symbols,
            out=self.trades_queue,
            stop=self.stop,
            gate=self.gates[stream],
            clock=self.clock,
            policy=cfg.policy,
            connect=pump.create_connection if pump else None,
            accepts=Quote if quotes else Trade,
            name="receiver"
            if name == self.streams[0] and not several
            else (f"receiver-{name}"),
            stream=stream,
        )
        receiver.journal = self.journal
        self.receivers[name] = receiver
        if self.monitor is not None:
            self.monitor.feeds.append((receiver, self.gates[stream]))
        return receiver

    def subscribe(self, symbols: list[str]) -> None:
        """Collect exactly these symbols from now on: spread over each stream's
        connections, live (new connections are started; removed symbols are
        unsubscribed on their socket). Any thread."""
        for pool in self.pools.values():
            for receiver in pool.assign(symbols):
                if self.aggregator is not None and self.aggregator.is_alive():
                    receiver.start()
        self.receiver = self._feed_view()

    def retarget(self, symbols: list[str]) -> None:
        """Universe mode: collect exactly these symbols from now on (the
        connections, sentiment and news follow)."""
        self.subscribe(symbols)
        if self.sentiment is not None:
            self.sentiment.retarget(symbols)
        if self.news is not None:
            self.news.retarget(symbols)

    def _feed_view(self) -> "Receiver | Streams":
        receivers = list(self.receivers.values())
        return receivers[0] if len(receivers) == 1 else Streams(self.receivers)

    def build(self, next_numbers: dict[str, int]) -> None:
        cfg = self.config
        for stream in self.streams:
            self.pools[stream] = FeedPool(
                stream,
                cfg.symbols_per_connection,
                lambda name, symbols, stream=stream: self._receiver(
                    stream, name, symbols
                ),
                prefix=stream,
            )
            self.pools[stream].assign(cfg.symbols)
        self.pump = self.pumps.get(self.streams[0])
        self.receiver = self._feed_view()
        self.aggregator = Aggregator(
            inbox=self.trades_queue,
            fanout=self.fanout,
            stop=self.stop,
            # Receivers come and go with the symbols: upstream is done only
            # once stopping.
            upstream_done=lambda: (
                self.stop.is_set()
                and not any(r.is_alive() for r in list(self.receivers.values()))
            ),
            scores=self.scores,
            clock=self.clock,
            ingest=Ingest(
                self.kinds,
                grace=cfg.grace,
                revision_window=cfg.revision_window,
                # Seconds before this process started belong to the previous run.
                start_second=math.floor(self.clock.now()),
                next_numbers=next_numbers,
                partial=self.partial_candles,
                seeds=self.seeds,
                conditions=cfg.conditions,
            ),
            verbose=cfg.verbose,
            save_partial=self._save_partial if self.spool is not None else None,
        )
        aggregator = self.aggregator
        self.writer = Writer(
            inbox=self.fanout.get("writer").queue,
            stop=self.stop,
            upstream_done=lambda: not aggregator.is_alive(),
            clock=self.clock,
            flush_interval=cfg.flush_interval,
            max_pending=cfg.max_pending,
            source=cfg.source,
            spool=self.spool,
            leadership=self._leadership(),
            on_promotion=lambda numbers: aggregator.control.put(Renumber(numbers)),
            lane=self.lane,
            known_tails=self.known_tails,
            maintenance=self._maintain_partitions,
        )
        articles = SharedArticles()
        self.sentiment = SentimentEngine(
            inbox=self.fanout.get("sentiment").queue,
            scores=self.scores,
            symbols=cfg.symbols,
            stop=self.stop,
            articles=articles,
            clock=self.clock,
            weights=cfg.sentiment_weights,
            verbose=cfg.verbose,
            news_enabled=cfg.news_enabled,
        )
        if cfg.news_enabled:
            # One budget per API key and day, shared through the database by
            # every collector and backfill on the key (api/budget.py).
            self.news_budget = SharedBudget(
                cfg.api_key,
                settings.EODHD_DAILY_CALLS,
                DatabaseLane(name="budget", timeout=budget.ANSWER_WITHIN),
            )
            self.news = NewsPoller(
                client=NewsClient(
                    cfg.news_api_base,
                    cfg.api_key,
                    daily_call_budget=settings.EODHD_DAILY_CALLS,
                    shared=self.news_budget,
                ),
                articles=articles,
                symbols=cfg.symbols,
                stop=self.stop,
                clock=self.clock,
                poll_interval=cfg.news_poll_interval,
            )
        self.monitor = HealthMonitor(
            feeds=[(r, self.gates[r.stream]) for r in self.receivers.values()],
            clock=self.clock,
            stop=self.stop,
            stale_after=cfg.stale_after,
            summary=self.summary,
            observe_extra=self._writer_observation,
            check_interval=cfg.health_check_interval,
            log_interval=cfg.health_log_interval,
        )
        if cfg.universe:
            self.universe = Universe(app=self, stop=self.stop, clock=self.clock)

    @property
    def workers(self) -> list:
        """In shutdown order: the pipeline drains front to back."""
        workers = [*self.receivers.values(), self.aggregator, self.writer]
        return [*workers, self.monitor, self.sentiment, self.news, self.universe]

    # Running --------------------------------------------------------------------

    def start(self) -> bool:
        """Prepare and start every worker; False if stopped during preparation.
        Raises StartupError (one line) after undoing whatever was started."""
        cfg = self.config
        logger.info(
            "🚀 collector starting: %d symbols (%s), feed %s, %s",
            len(cfg.symbols),
            ",".join(cfg.symbols),
            mask_token(cfg.ws_url)
            if len(self.streams) == 1
            else ", ".join(mask_token(feed_url(cfg.ws_url, s)) for s in self.streams),
            self.gate.status_line(),
        )
        try:
            started = self._start()
        except BaseException:
            self._undo_start()
            raise
        if not started:
            self._undo_start()  # stopped while preparing
        return started

    def _start(self) -> bool:
        cfg = self.config
        if self.spool is not None:
            try:
                self.identity = self.spool.claim()
            except SpoolUnusable as exc:
                raise StartupError(str(exc)) from None
        self.lane.application_name = tagged_application_name(
            connection.settings_dict.get("OPTIONS", {}).get("application_name"),
            self.identity,
        )
        if cfg.metrics_port is not None:
            try:
                self.metrics = MetricsServer(
                    self, host=cfg.metrics_host, port=cfg.metrics_port
                )
            except OSError as exc:
                raise StartupError(
                    f"cannot serve metrics on {cfg.metrics_host}:{cfg.metrics_port}: "
                    f"{exc.strerror or exc}"
                ) from None
            self.metrics.start()  # /healthz says "starting" until the workers run
        numbers = self.prepare()
        if numbers is None:
            return False
        self.build(numbers)
        if cfg.record_dir is not None:
            self.journal = Journal(cfg.record_dir)
            self.journal.mark_start(
                numbers,
                received_at=float(self.aggregator.start_second),
                carried={s: len(t) for s, t in self.partial_candles.items()},
                seeds=self.seeds,
                conditions=cfg.conditions,
                streams=self.streams,
            )
            for receiver in self.receivers.values():
                receiver.journal = self.journal
            logger.info("📼 recording every frame to %s", cfg.record_dir)
        for worker in self.workers:
            if worker is not None:
                worker.start()
        return True

    def _undo_start(self) -> None:
        """A failed start leaves nothing running: stop what began, keep what must
        be kept (the spool is on disk already)."""
        self.stop.set()
        for worker in self.workers:
            if worker is not None and worker.is_alive():
                worker.join(2.0)
        for pump in self.pumps.values():
            if pump is not None:
                pump.close()
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None
        if self.journal is not None:
            self.journal.close()
        self.lane.close(timeout=1.0)
        if self.news_budget is not None:
            self.news_budget.close()
        if self.spool is not None:
            self.spool.release()

    def verdict(self) -> Verdict:
        """Health for /healthz and the 💓 line: the writer storing bars (or rightly
        standing by), then the feed connected (or rightly waiting) with fresh
        data."""
        if self.monitor is None:
            return Verdict(False, "starting", "the collector is starting")
        return self.monitor.verdict()

    def _maintain_partitions(self) -> None:
        """On the writer's session (the lane), hourly: the coming days' and
        months' partitions exist, and what sits in the default partitions is
        measured (api.partitions; nothing on SQLite)."""
        created = partitions.ensure()
        if created:
            logger.info("🗂️ created partitions %s", ", ".join(created))
        self.default_partition_rows = partitions.default_rows()
        for table, rows in self.default_partition_rows.items():
            if rows:
                logger.warning(
                    "⚠️ %d rows of %s are in its default partition: run "
                    "`manage.py partitions` (they are stored; reads are slower)",
                    rows,
                    table,
                    extra={"dedupe": f"default partition {table}"},
                )

    def _writer_observation(self) -> dict:
        """The writer's side of an Observation; read from any thread."""
        w = self.writer
        now = self.clock.monotonic()
        since, spooled_at = w.waiting_since, w.backlog.spooled_at
        role = w.role
        return {
            "bars_waiting": w.waiting,
            "max_waiting": self.config.max_pending,
            "oldest_waiting": None if since is None else now - since,
            "wait_limit": WRITE_WAIT_LIMIT + self.config.flush_interval,
            "role": None if role is None else role.value,
            "writer_silent": now - w.beat if w.is_alive() else None,
            "stuck_after": WRITER_STUCK_AFTER,
            "db_busy": w.lane.busy_for(),
            "db_busy_limit": SUSPECT_AFTER,
            "spooling": spooled_at is not None and now - spooled_at < SPOOLING_RECENT,
            "last_error": w.db_error,
        }

    def run(
        self, install_signals: bool = True, on_started: Callable[[], None] | None = None
    ) -> int:
        """`on_started` runs once every worker runs (the command tunes the garbage
        collector there: a process-wide choice, not the collector's)."""
        if install_signals:
            self._install_signal_handlers()
        if self.stop.is_set():
            logger.info("🛑 stopped during start-up: nothing was started")
            return 0
        if not self.start():
            return 0
        if on_started is not None:
            on_started()
        while not self.stop.wait(0.5):
            pass
        return self.shutdown()

    def shutdown(self, timeout: float = 9.0) -> int:
        """Stop, let the pipeline drain in order, report; return the exit code."""
        self.stop.set()
        deadline = self.clock.monotonic() + timeout
        for worker in self.workers:
            if worker is not None and worker.is_alive():
                worker.join(max(0.05, deadline - self.clock.monotonic()))
        for pump in self.pumps.values():
            if pump is not None:
                pump.close()
        if self.metrics is not None:
            self.metrics.stop()
        if self.journal is not None:
            self.journal.close()
        if self.spool is not None:
            self.spool.release()
        # Only the pipeline must finish: a news request in flight may not.
        pipeline = [*self.receivers.values(), self.aggregator, self.writer]
        stuck = [w.name for w in pipeline if w is not None and w.is_alive()]
        if stuck:
            logger.error("❌ workers still running at exit: %s", ", ".join(stuck))
        logger.info("🏁 session statistics: %s", self.summary())
        crashed = [w.name for w in self.workers if w is not None and w.failure]
        return 1 if crashed or stuck else 0

    def _install_signal_handlers(self) -> None:
        def handle(signum, frame):
            # Only set the flag; the main loop does the shutdown.
            logger.info("🛑 %s received: shutting down", signal.Signals(signum).name)
            self.stop.set()

        for signum in SIGNALS:
            signal.signal(signum, handle)

    # Reporting ------------------------------------------------------------------

    def summary(self) -> str:
        r, a, w = self.receiver, self.aggregator, self.writer
        if r is None or a is None or w is None:
            return "not started"
        uptime = self.clock.monotonic() - self.started_at
        state = "connected" if r.connected else "disconnected"
        seconds, rules = a.seconds, a.ingest.rules
        return (
            f"uptime {uptime:.0f}s | {state} ({r.stats.connections} connections) | "
            f"trades {r.stats.trades} malformed {r.stats.malformed} "
            f"ignored {r.stats.ignored} | bars written {w.stats.bars_written} "
            f"revisions {w.stats.revisions_written} "
            + "".join(
                f"{kind.label} bars {w.stats.written[kind.name]} "
                for kind in KINDS
                if kind.width != 1
            )
            + f"| waiting {w.waiting} | "
            f"open seconds {seconds.open_seconds()} late {seconds.late_trades} "
            f"dropped late {seconds.dropped_too_late} | "
            f"conditions {rules.mode} restricted {rules.ineligible} | "
            f"queue {self.trades_queue.qsize()} | "
            f"role {w.role.value if w.role else 'electing'} | "
            f"spool {self.spool.size if self.spool else 0} B"
            + (
                f" | quarantined {sum(w.quarantine.counts.values())}"
                if w.quarantine.counts
                else ""
            )
        )


def _ensure_tickers(symbols: list[str]) -> Tails:
    """Runs on the database lane: every symbol has its Ticker; what is stored."""
    for symbol in symbols:
        Ticker.objects.get_or_create(symbol=symbol)
    return stored_tails(symbols)
