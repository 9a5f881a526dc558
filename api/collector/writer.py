"""The writer: the only thread that writes bars. One batched idempotent upsert per
table per flush; retries with backoff; a database outage never drops a bar."""

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
)
from django.db.models import Max

from api.collector.aggregator import FINISHED, WriteBatch
from api.collector.clock import Clock
from api.collector.leader import PROMOTED, REGAINED, Leadership
from api.collector.metrics import DelayHistogram
from api.collector.spool import Spool, encode_bar, encode_candle
from api.collector.throttle import LogThrottle
from api.collector.worker import Worker
from api.market.bars import SecondBar, TickCandle
from api.models import SecondSnapshot, TickCandle100, Ticker
from api.sentiment.scoring import Scores

logger = logging.getLogger(__name__)

SNAPSHOT_FIELDS = [
    "ohlc_1sec_open",
    "ohlc_1sec_high",
    "ohlc_1sec_low",
    "ohlc_1sec_close",
    "ohlc_1sec_volume",
    "ohlc_1sec_tick_count",
    "vwap",
    "price_momentum_5sec",
    "price_change_1sec",
    "composite_score",
    "news_score_cached",
    "technical_score_cached",
    "flow_score_cached",
    "source",
    "updated_at",
]
CANDLE_FIELDS = [
    "completed_at",
    "open",
    "high",
    "low",
    "close",
    "total_volume",
    "tick_count",
    "first_tick_time",
    "last_tick_time",
    "duration_seconds",
    "source",
]
# Seconds between two flushes at the least. A flush is one upsert per table (two
# statements), so at most 2 / 0.7 = 2.9 statements a second whatever the trade
# rate or number of symbols; in a live session seconds close once a second, so
# this never holds a bar back.
MIN_GAP = 0.7
# A flush follows each batch of newly closed seconds (about once a second in a
# session) and takes pending 100-trade bars and revisions along. The timer is
# the fallback for when no second closes; shorter than a second it would add a
# flush - two statements - between the once-a-second ones.
FLUSH_INTERVAL = 1.5
CHECK_EVERY = 30.0  # seconds between connection health checks
STANDBY_KEEP = 60.0  # seconds of bars a standby keeps to fill a takeover's gap
RETRY_DELAYS = (0.1, 0.2, 0.4)  # the seed's backoff between attempts of one flush
OUTAGE_BACKOFF_CAP = 30.0
BATCH_ROWS = 2000  # rows per statement when catching up after an outage


def utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


@dataclass
class WriterStats:
    bars_written: int = 0
    revisions_written: int = 0
    candles_written: int = 0
    flushes: int = 0
    statements: int = 0
    failed_attempts: int = 0
    overflow_dropped: int = 0
    promotions: int = 0
    demotions: int = 0
    spooled: int = 0  # records appended to the spool
    replayed: int = 0  # rows written from the spool
    last_commit_at: float | None = None  # epoch seconds
    commit_delays: deque = field(default_factory=lambda: deque(maxlen=100_000))
    delay_histogram: DelayHistogram = field(default_factory=DelayHistogram)
    bars_by_symbol: dict[str, int] = field(default_factory=dict)


class Writer(Worker):
    def __init__(
        self,
        *,
        inbox: queue.Queue,
        stop: threading.Event,
        upstream_done: Callable[[], bool],
        clock: Clock | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        max_pending: int = 500_000,
        shutdown_deadline: float = 7.0,
        source: str = "eodhd_ws",
        spool: Spool | None = None,
        leadership: Leadership | None = None,
        on_promotion: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        super().__init__("writer", stop)
        self.inbox = inbox
        self.upstream_done = upstream_done
        self.clock = clock or Clock()
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.shutdown_deadline = shutdown_deadline
        self.source = source
        self.stats = WriterStats()
        # Keyed so a revision replaces its pending original (last one wins); the
        # flag says whether the row is new to the database (for stats and delays).
        self.pending_bars: dict[
            tuple[str, int], tuple[SecondBar, Scores | None, bool]
        ] = {}
        self.pending_candles: dict[tuple[str, int], TickCandle] = {}
        self._ticker_ids: dict[str, int] = {}
        self._outage_delay = 0.0
        self._throttle = LogThrottle(logger)
        # The spool holds what the database could not take. Keys changed since
        # they were last spooled are "dirty"; during an outage they are spooled
        # as they arrive, so a crash loses (almost) nothing.
        self.spool = spool
        self._dirty_bars: set[tuple[str, int]] = set()
        self._dirty_candles: set[tuple[str, int]] = set()
        self._in_outage = False
        # True when the spool holds rows that are not in memory (left by an
        # earlier run, or evicted from memory during a long outage).
        self._spool_has_more = spool is not None and spool.size > 0
        self.leadership = leadership
        self.symbols: list[str] = []
        self.on_promotion = on_promotion
        self._next_election = 0.0
        self._announced_standby = False
        self._elections = 0
        self._fresh_bars = False  # newly closed seconds wait (not only revisions)
        self._checked_at = -math.inf

    @property
    def waiting(self) -> int:
        return len(self.pending_bars) + len(self.pending_candles)

    def work(self) -> None:
        finished = False
        last_flush = -math.inf
        retry_at = 0.0
        while not finished:
            finished = self._collect(0.05 if self.waiting else 0.5)
            if not finished and self.stop.is_set() and self.upstream_done():
                finished = True  # the aggregator is gone without saying so
            if self._in_outage:
                self._spool_dirty()
            if not self._may_write() or finished or not self.waiting:
                continue
            now = time.monotonic()
            # Flush right after the aggregator closed new seconds (once a second,
            # so the commit follows the grace period closely), or when anything
            # has waited a whole interval; never more often than every MIN_GAP.
            since = now - last_flush
            due = (
                self._fresh_bars and since >= MIN_GAP
            ) or since >= self.flush_interval
            if due and now >= retry_at:
                ok = self.flush()
                last_flush = time.monotonic()
                retry_at = 0.0 if ok else last_flush + self._next_outage_delay()
        self._final_flush()

    def _may_write(self) -> bool:
        """Only the leader writes; a standby keeps the last minute of bars so that
        it can fill the gap when it takes over."""
        if self.leadership is None:
            return True
        now = time.monotonic()
        if now >= self._next_election:
            self._next_election = now + 1.0
            try:
                event = self.leadership.maintain()
            except Exception as exc:  # never let the election kill the writer
                event = None
                self._throttle.log(
                    logging.ERROR, "election", now, "❌ writer election failed: %s", exc
                )
            first = self._elections == 0
            self._elections += 1
            if event == PROMOTED and first:
                # Leader from the start: numbering read at startup is right.
                logger.info(
                    "👑 this collector is the writer for %s", self.leadership.name
                )
            elif event == PROMOTED:
                self._take_over()
            elif event == REGAINED:
                logger.info(
                    "👑 writer lock of %s regained; writing the %d waiting bars",
                    self.leadership.name,
                    self.waiting,
                )
            elif self.leadership.is_standby and not self._announced_standby:
                self._announced_standby = True
                logger.warning(
                    "🧍 standby: another collector writes %s; taking over if it stops",
                    self.leadership.name,
                )
        if self.leadership.is_leader:
            return True
        if self.leadership.out_of_contact:
            # As in any outage: keep everything, spool it, write it when back.
            self._enter_outage()
            return False
        horizon = self.clock.now() - STANDBY_KEEP
        for key in [k for k in self.pending_bars if k[1] < horizon]:
            del self.pending_bars[key]
        self.pending_candles.clear()  # a standby's candle numbers mean nothing
        self._dirty_bars.clear()
        self._dirty_candles.clear()
        return False

    def _take_over(self) -> None:
        """Now the writer: keep only bars after what the old leader stored, and
        have the aggregator number candles after the stored ones."""
        close_old_connections()
        try:
            last_seconds, next_numbers = {}, {}
            for ticker in Ticker.objects.filter(symbol__in=self.symbols_hint()):
                last = ticker.second_snapshots.aggregate(t=Max("timestamp"))["t"]
                if last is not None:
                    last_seconds[ticker.symbol] = int(last.timestamp())
                number = ticker.tick_candles.aggregate(n=Max("candle_number"))["n"]
                next_numbers[ticker.symbol] = (number or 0) + 1
        except DatabaseError as exc:
            connection.close()
            self.leadership.release()
            logger.error("❌ cannot take over as the writer yet: %s", exc)
            return
        for key in list(self.pending_bars):
            if key[1] <= last_seconds.get(key[0], -1):
                del self.pending_bars[key]
        self.pending_candles.clear()
        self.stats.promotions += 1
        logger.warning(
            "👑 this collector is the writer for %s (%d recent bars to write)",
            self.leadership.name,
            len(self.pending_bars),
        )
        if self.on_promotion is not None:
            self.on_promotion(next_numbers)

    def symbols_hint(self) -> list[str]:
        return sorted({key[0] for key in self.pending_bars} | set(self.symbols))

    def _collect(self, wait: float) -> bool:
        """Take everything the aggregator has handed on; True once it finished."""
        try:
            item = self.inbox.get(timeout=wait)
        except queue.Empty:
            return False
        while True:
            if item is FINISHED:
                return True
            self.add(item)
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return False

    def add(self, batch: WriteBatch) -> None:
        pending = self.pending_bars
        for bar, scores in batch.bars:
            if not bar.revision:
                self._fresh_bars = True
            key = (bar.symbol, bar.second)
            waiting = pending.get(key)
            new = not bar.revision or (waiting is not None and waiting[2])
            pending[key] = (bar, scores, new)
            self._dirty_bars.add(key)
        for candle in batch.candles:
            key = (candle.symbol, candle.number)
            self.pending_candles[key] = candle
            self._dirty_candles.add(key)
        overflow = self.waiting - self.max_pending
        if overflow > 0:
            # Shed a tenth at a time, so a long outage does not sort the whole
            # backlog on every batch.
            self._shed_oldest(max(overflow, self.max_pending // 10))

    def _shed_oldest(self, count: int) -> None:
        """Memory is bounded: past the limit the oldest bars leave memory. With a
        spool they stay on disk and are written later; without one they are lost,
        counted and logged."""
        if self.spool is not None:
            self._spool_dirty()
        oldest = sorted(self.pending_bars, key=lambda key: key[1])[:count]
        for key in oldest:
            del self.pending_bars[key]
        if self.spool is not None:
            self._spool_has_more = True
            return
        self.stats.overflow_dropped += len(oldest)
        logger.error(
            "❌ %d bars waiting exceed the limit of %d: dropped the %d oldest "
            "(%d dropped so far)",
            self.waiting + len(oldest),
            self.max_pending,
            len(oldest),
            self.stats.overflow_dropped,
        )

    def _spool_dirty(self) -> int:
        """Append every pending row changed since it was last spooled."""
        if self.spool is None or not (self._dirty_bars or self._dirty_candles):
            return 0
        records = [
            encode_bar(*self.pending_bars[key][:2])
            for key in sorted(self._dirty_bars, key=lambda k: k[1])
            if key in self.pending_bars
        ]
        records += [
            encode_candle(self.pending_candles[key])
            for key in sorted(self._dirty_candles, key=lambda k: k[1])
            if key in self.pending_candles
        ]
        try:
            self.spool.append(records)
        except OSError as exc:
            self._throttle.log(
                logging.ERROR,
                "spool",
                time.monotonic(),
                "❌ cannot write the spool %s: %s; %d bars held in memory only",
                self.spool.path,
                exc,
                self.waiting,
            )
            return 0
        self._dirty_bars.clear()
        self._dirty_candles.clear()
        self.stats.spooled += len(records)
        return len(records)

    def _next_outage_delay(self) -> float:
        self._outage_delay = min(max(1.0, self._outage_delay * 2), OUTAGE_BACKOFF_CAP)
        return self._outage_delay

    def flush(self) -> bool:
        """Write what is pending: up to 1 + 3 attempts. True when all was written."""
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            if delay:
                # Sub-second pauses between attempts; they also run during the
                # final flush after stop was set, so they do not wait on it.
                time.sleep(delay)
            self._check_connection()
            try:
                self._write_pending()
            except (OperationalError, InterfaceError) as exc:
                self.stats.failed_attempts += 1
                connection.close()  # never reuse a broken connection
                self._throttle.log(
                    logging.WARNING,
                    "db down",
                    time.monotonic(),
                    "❌ database write failed (attempt %d/%d): %s; %d bars waiting",
                    attempt + 1,
                    1 + len(RETRY_DELAYS),
                    str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                    self.waiting,
                )
            except DatabaseError as exc:
                self.stats.failed_attempts += 1
                connection.close()
                self._throttle.log(
                    logging.ERROR,
                    "db error",
                    time.monotonic(),
                    "❌ database refused the bars: %s; %d bars waiting",
                    exc,
                    self.waiting,
                )
            else:
                if self._in_outage:
                    logger.info("✅ database is back: all waiting bars written")
                self._in_outage = False
                self._outage_delay = 0.0
                return True
        self._enter_outage()
        return False

    def _enter_outage(self) -> None:
        """From now on every bar is spooled as it arrives, until a write succeeds."""
        if not self._in_outage and self.spool is not None:
            logger.warning(
                "💾 database unavailable: %d bars go to the spool %s until it is back",
                self.waiting,
                self.spool.path,
            )
        self._in_outage = True
        self._spool_dirty()

    def _check_connection(self) -> None:
        """Django only closes stale connections around requests; a long-lived
        thread must do it itself. With CONN_HEALTH_CHECKS that costs a round trip
        (SELECT 1) per call, so it runs every CHECK_EVERY seconds: a connection
        that died meanwhile fails its upsert, is closed, and the retry reconnects."""
        now = time.monotonic()
        if now - self._checked_at >= CHECK_EVERY:
            self._checked_at = now
            close_old_connections()

    def _write_pending(self) -> None:
        """Upsert pending rows; each table's rows leave `pending` only once stored.
        Spooled rows go first: memory holds the newer version of any key."""
        if self._spool_has_more:
            self._replay_spool()
        if self.pending_bars:
            items = sorted(self.pending_bars.items(), key=lambda kv: kv[0][1])
            rows = [self._snapshot(bar, scores) for _, (bar, scores, _new) in items]
            self._upsert(SecondSnapshot, rows, ["ticker", "timestamp"], SNAPSHOT_FIELDS)
            now = self.clock.now()
            stats = self.stats
            for key, (bar, _scores, new) in items:
                # Only drop what was written; a newer revision may have replaced it.
                if self.pending_bars.get(key, (None,))[0] is bar:
                    del self.pending_bars[key]
                if not new:
                    stats.revisions_written += 1
                else:
                    stats.bars_written += 1
                    delay = now - (bar.second + 1)
                    stats.commit_delays.append(delay)
                    stats.delay_histogram.observe(delay)
                    by_symbol = stats.bars_by_symbol
                    by_symbol[bar.symbol] = by_symbol.get(bar.symbol, 0) + 1
            if stats.last_commit_at is None:
                logger.info(
                    "✅ first bars stored: %d 1-second bars, up to %s",
                    len(items),
                    datetime.fromtimestamp(items[-1][0][1], tz=UTC).strftime(
                        "%H:%M:%S"
                    ),
                )
            stats.last_commit_at = now
        if self.pending_candles:
            items = sorted(self.pending_candles.items(), key=lambda kv: kv[0][1])
            rows = [self._candle(candle) for _, candle in items]
            self._upsert(
                TickCandle100, rows, ["ticker", "candle_number"], CANDLE_FIELDS
            )
            for key, _candle in items:
                self.pending_candles.pop(key, None)
            self.stats.candles_written += len(items)
            self.stats.last_commit_at = self.clock.now()
        self.stats.flushes += 1
        self._fresh_bars = False
        self._dirty_bars.clear()
        self._dirty_candles.clear()
        if self.spool is not None and self.spool.size:
            # Everything spooled is in memory or was replayed: all committed now.
            self.spool.clear()

    def _replay_spool(self) -> None:
        contents = self.spool.load()
        bars = [
            self._snapshot(bar, scores)
            for key, (bar, scores) in sorted(
                contents.bars.items(), key=lambda kv: kv[0][1]
            )
            if key not in self.pending_bars
        ]
        candles = [
            self._candle(candle)
            for key, candle in sorted(contents.candles.items(), key=lambda kv: kv[0][1])
            if key not in self.pending_candles
        ]
        if bars:
            self._upsert(SecondSnapshot, bars, ["ticker", "timestamp"], SNAPSHOT_FIELDS)
        if candles:
            self._upsert(
                TickCandle100, candles, ["ticker", "candle_number"], CANDLE_FIELDS
            )
        self._spool_has_more = False
        self.stats.replayed += len(bars) + len(candles)
        if bars or candles:
            logger.info(
                "♻️ wrote %d bars and %d 100-trade bars from the spool",
                len(bars),
                len(candles),
            )

    def _upsert(self, model, rows: list, unique: list[str], fields: list[str]) -> None:
        for start in range(0, len(rows), BATCH_ROWS):
            model.objects.bulk_create(
                rows[start : start + BATCH_ROWS],
                update_conflicts=True,
                unique_fields=unique,
                update_fields=fields,
            )
            self.stats.statements += 1

    def _ticker_id(self, symbol: str) -> int:
        tid = self._ticker_ids.get(symbol)
        if tid is None:
            tid = Ticker.objects.get_or_create(symbol=symbol)[0].pk
            self._ticker_ids[symbol] = tid
        return tid

    def _snapshot(self, bar: SecondBar, scores: Scores | None) -> SecondSnapshot:
        return SecondSnapshot(
            ticker_id=self._ticker_id(bar.symbol),
            timestamp=datetime.fromtimestamp(bar.second, tz=UTC),
            ohlc_1sec_open=bar.open,
            ohlc_1sec_high=bar.high,
            ohlc_1sec_low=bar.low,
            ohlc_1sec_close=bar.close,
            ohlc_1sec_volume=bar.volume,
            ohlc_1sec_tick_count=bar.tick_count,
            vwap=bar.vwap,
            price_momentum_5sec=bar.price_momentum_5sec,
            price_change_1sec=bar.price_change_1sec,
            composite_score=scores.composite if scores else None,
            news_score_cached=scores.news if scores else None,
            technical_score_cached=scores.technical if scores else None,
            flow_score_cached=scores.flow if scores else None,
            source=self.source,
        )

    def _candle(self, candle: TickCandle) -> TickCandle100:
        return TickCandle100(
            ticker_id=self._ticker_id(candle.symbol),
            candle_number=candle.number,
            completed_at=utc(candle.completed_at_ms),
            open=candle.open,
            high=candle.high,
            low=candle.low,
            close=candle.close,
            total_volume=candle.volume,
            tick_count=candle.tick_count,
            first_tick_time=utc(candle.first_ts_ms),
            last_tick_time=utc(candle.last_ts_ms),
            duration_seconds=Decimal(candle.duration_seconds),
            source=self.source,
        )

    def _final_flush(self) -> None:
        if self.leadership is not None and self.leadership.is_standby:
            return  # a standby writes nothing
        deadline = time.monotonic() + self.shutdown_deadline
        while self.waiting and time.monotonic() < deadline:
            if self.flush():
                break
        if not self.waiting:
            return
        if self.spool is not None and (self._spool_dirty() or self.spool.size):
            logger.warning(
                "💾 shutting down with %d bars not written: they are in the spool "
                "and will be written by the next run",
                self.waiting,
            )
            return
        logger.error(
            "❌ shutting down with %d bars and %d 100-trade bars not written",
            len(self.pending_bars),
            len(self.pending_candles),
        )

    def cleanup(self) -> None:
        if self.leadership is not None:
            self.leadership.release()
        connection.close()
