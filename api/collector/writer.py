"""The writer: the only thread that writes bars. One batched idempotent upsert per
table per flush; retries with backoff; a database outage never drops a bar.

The writer owns the bars; the database lane runs the calls. Each call is bounded
(database.DatabaseLane): a call into a black hole is abandoned, its bars spooled,
and the writer never stops taking bars from the aggregator meanwhile - it keeps
collecting and spooling while it waits. Rows the database refuses for their data
are quarantined (quarantine.Quarantine); everything else flows on."""

import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import DatabaseError

from api.collector.aggregator import FINISHED, WriteBatch
from api.collector.clock import Clock
from api.collector.database import (
    CallTimeout,
    DatabaseLane,
    ErrorKind,
    classify,
    first_line,
)
from api.collector.leader import Change, Leadership, LockLost, Role
from api.collector.metrics import DelayHistogram
from api.collector.quarantine import Quarantine
from api.collector.spool import Spool, SpoolContents, encode_bar, encode_candle
from api.collector.store import (
    Outcome,
    Store,
    candle_key,
    stored_candles,
    stored_tails,
)
from api.collector.throttle import LogThrottle
from api.collector.worker import Worker
from api.market.backoff import Backoff

logger = logging.getLogger(__name__)

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
STANDBY_KEEP = 60.0  # seconds of bars a standby keeps to fill a takeover's gap
RETRY_DELAYS = (0.1, 0.2, 0.4)  # the seed's backoff between attempts of one flush
# Between failed flushes (and elections without an answer): short, so that
# writes resume within seconds of the database coming back.
OUTAGE_BACKOFF = {"base": 1.0, "cap": 5.0}
ELECTION_EVERY = 1.0
# A database call running this long is suspect (they take milliseconds): bars go
# to the spool meanwhile, so a crash during a black hole loses none.
SUSPECT_AFTER = 2.0
BATCH_ROWS = 2000  # rows per statement (and per bounded call) when catching up


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
    spooled: int = 0  # records appended to the spool
    replayed: int = 0  # rows written from the spool
    last_commit_at: float | None = None  # epoch seconds
    spooled_at: float | None = None  # monotonic, last append to the spool
    db_errors: Counter = field(default_factory=Counter)  # ErrorKind -> count
    nulled: Counter = field(default_factory=Counter)  # column -> rows set NULL
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
        shutdown_deadline: float = 6.0,
        source: str = "eodhd_ws",
        spool: Spool | None = None,
        leadership: Leadership | None = None,
        on_promotion: Callable[[dict[str, int]], None] | None = None,
        lane: DatabaseLane | None = None,
        known_tails: dict[str, tuple[int | None, int]] | None = None,
    ) -> None:
        super().__init__("writer", stop)
        self.inbox = inbox
        self.upstream_done = upstream_done
        self.clock = clock or Clock()
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.shutdown_deadline = shutdown_deadline
        self.stats = WriterStats()
        self.lane = lane or DatabaseLane()
        self.leadership = leadership
        self.store = Store(source, fence=leadership.lock if leadership else None)
        self.quarantine = Quarantine(spool.directory if spool else None)
        # Keyed so a revision replaces its pending original (last one wins); the
        # flag says whether the row is new to the database (for stats and delays).
        self.pending_bars: dict[tuple[str, int], tuple] = {}
        self.pending_candles: dict[tuple[str, int], object] = {}
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
        self.symbols: list[str] = []
        self.on_promotion = on_promotion
        # What this collector knows is stored: {symbol: (last second, last candle
        # number)}, to tell its own writes from another collector's.
        self._known: dict[str, tuple[int | None, int]] = dict(known_tails or {})
        self._sync: Change | None = None  # a role change still to act on
        self._next_election = 0.0
        self._election_backoff = Backoff(**OUTAGE_BACKOFF)
        self._flush_backoff = Backoff(**OUTAGE_BACKOFF)
        self._fresh_bars = False  # newly closed seconds wait (not only revisions)
        self._finished = False  # the aggregator said its last word
        self._stop_deadline = math.inf  # monotonic; set once stop is seen
        self._announced = False  # the first stored bars were logged
        self.last_error: str | None = None
        self.beat = time.monotonic()  # the writer thread's heartbeat
        # Since when something waits to be written (monotonic); None: nothing.
        self.waiting_since: float | None = (
            time.monotonic() if self._spool_has_more else None
        )

    @property
    def waiting(self) -> int:
        return len(self.pending_bars) + len(self.pending_candles)

    @property
    def role(self) -> Role | None:
        """writer / standby / unknown; None before the first election (or when
        there is no election: then this collector simply writes)."""
        if self.leadership is None:
            return Role.WRITER
        return self.leadership.role

    # The loop ------------------------------------------------------------------------

    def work(self) -> None:
        last_flush = -math.inf
        retry_at = 0.0
        while True:
            self.beat = time.monotonic()
            finished = self._collect(0.05 if self.waiting else 0.5)
            if self.stop.is_set() and self.upstream_done():
                finished = True  # the aggregator is gone without saying so
            if finished:
                break
            if self._in_outage:
                self._spool_dirty()
            if not self._may_write():
                continue
            if not (self.waiting or self._spool_has_more):
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
                retry_at = 0.0 if ok else last_flush + self._flush_backoff.next()
        self._final_flush()

    def _collect(self, wait: float) -> bool:
        """Take everything the aggregator has handed on; True once it finished."""
        if self._finished:
            return True
        try:
            item = self.inbox.get(timeout=wait) if wait else self.inbox.get_nowait()
        except queue.Empty:
            return False
        while True:
            if item is FINISHED:
                self._finished = True
                return True
            self.add(item)
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return False

    def _idle(self) -> None:
        """While a database call runs: keep taking bars, keep spooling."""
        self.beat = time.monotonic()
        self._collect(0)
        busy = self.lane.busy_for()
        if busy is not None and busy >= SUSPECT_AFTER and not self._in_outage:
            self.last_error = f"no answer from the database for {busy:.0f} s"
            self._enter_outage()
        elif self._in_outage:
            self._spool_dirty()

    def _cutoff(self) -> float:
        """Until when database calls may run: no limit until stop is seen, then
        the shutdown deadline, so that the process ends in time."""
        if self._stop_deadline == math.inf and self.stop.is_set():
            self._stop_deadline = time.monotonic() + self.shutdown_deadline
        return self._stop_deadline

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._idle()
            time.sleep(min(0.05, left))

    def add(self, batch: WriteBatch) -> None:
        pending = self.pending_bars
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
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

    # Leadership ----------------------------------------------------------------------

    def _may_write(self) -> bool:
        """Only the writer writes; a standby keeps the last minute of bars to fill
        a takeover's gap; with the role unknown, every bar is kept and spooled."""
        if self.leadership is None:
            return True
        now = time.monotonic()
        if now >= self._next_election:
            self._elect()
        role = self.leadership.role
        if role is Role.WRITER:
            if self._sync is not None:
                self._settle()
            return self._sync is None
        if role is Role.UNKNOWN:
            self._enter_outage()
            return False
        horizon = self.clock.now() - STANDBY_KEEP
        for key in [k for k in self.pending_bars if k[1] < horizon]:
            del self.pending_bars[key]
        self.pending_candles.clear()  # a standby's candle numbers mean nothing
        self._dirty_bars.clear()
        self._dirty_candles.clear()
        self._in_outage = False
        if not self.waiting and not self._spool_has_more:
            self.waiting_since = None
        return False

    def _elect(self) -> None:
        leadership = self.leadership
        try:
            held = self.lane.run(
                leadership.lock.hold, idle=self._idle, cutoff=self._cutoff
            )
        except (DatabaseError, CallTimeout, OSError) as exc:
            held = None
            self._db_error(exc, "the writer lock")
        change = leadership.observe(held)
        if leadership.role is Role.UNKNOWN:
            self._next_election = time.monotonic() + self._election_backoff.next()
        else:
            self._election_backoff.reset()
            self._next_election = time.monotonic() + ELECTION_EVERY
        if change is Change.FIRST:
            logger.info("👑 this collector is the writer for %s", leadership.name)
            # Had the role been unknown first, another may have written meanwhile.
            self._sync = Change.REGAINED if leadership.losses else None
        elif change in (Change.TAKEOVER, Change.REGAINED):
            self._sync = change
        elif change is Change.STANDBY:
            self._sync = None
            logger.warning(
                "🧍 standby: another collector writes %s (%s); taking over if it stops",
                leadership.name,
                leadership.lock.holder or "lock held",
            )
        elif change is Change.LOST:
            self._sync = None
            logger.error(
                "❌ writer role unknown: cannot reach the database to check the "
                "writer lock of %s (%s); keeping and spooling every bar until it "
                "answers",
                leadership.name,
                self.last_error,
            )

    def _settle(self) -> None:
        """Act on becoming the writer: after a takeover, or after an unknown spell
        during which another collector may have written."""
        symbols = self.symbols_hint()
        try:
            tails = self.lane.run(
                stored_tails, symbols, idle=self._idle, cutoff=self._cutoff
            )
            if self._sync is Change.TAKEOVER:
                others = set(tails)
            else:
                others = self._written_by_others(tails)
        except (DatabaseError, CallTimeout) as exc:
            self._db_error(exc, "reading what is stored")
            self._next_election = 0.0  # check the lock again right away
            return
        change, self._sync = self._sync, None
        if others:
            self._follow(tails, others)
        if change is Change.TAKEOVER:
            self.stats.promotions += 1
            logger.warning(
                "👑 this collector is the writer for %s (%d recent bars to write)",
                self.leadership.name,
                len(self.pending_bars),
            )
        else:
            logger.info(
                "👑 writer lock of %s regained; writing the %d waiting bars%s",
                self.leadership.name,
                self.waiting,
                f" (another collector wrote {', '.join(sorted(others))} meanwhile)"
                if others
                else "",
            )

    def _written_by_others(self, tails: dict) -> set[str]:
        """Symbols with stored rows beyond what this collector knows it stored,
        that are not its own unacknowledged writes."""
        others = set()
        for symbol, (second, number) in tails.items():
            known_second, known_number = self._known.get(symbol, (None, 0))
            if number > known_number:
                stored = self.lane.run(stored_candles, symbol, known_number)
                mine = {
                    key[1]: candle_key(c)
                    for key, c in self.pending_candles.items()
                    if key[0] == symbol
                }
                if any(mine.get(n) != values for n, values in stored.items()):
                    others.add(symbol)
                    continue
            if (
                second is not None
                and (known_second is None or second > known_second)
                and (symbol, second) not in self.pending_bars
            ):
                others.add(symbol)
        return others

    def _follow(self, tails: dict, symbols: set[str]) -> None:
        """Another collector wrote these symbols: keep only bars after what it
        stored, and number candles after its last."""
        floor = {s: tails[s][0] for s in symbols if tails[s][0] is not None}
        for key in list(self.pending_bars):
            if key[1] <= floor.get(key[0], -math.inf):
                del self.pending_bars[key]
        for key in [k for k in self.pending_candles if k[0] in symbols]:
            del self.pending_candles[key]
        if self.spool is not None and self.spool.size:
            contents = self._load_spool()
            contents.bars = {
                k: v for k, v in contents.bars.items() if k[1] > floor.get(k[0], -1)
            }
            contents.candles = {
                k: v for k, v in contents.candles.items() if k[0] not in symbols
            }
            self.spool.replace(contents)
        for symbol in symbols:
            self._known[symbol] = tails[symbol]
        if self.on_promotion is not None:
            self.on_promotion({s: tails[s][1] + 1 for s in symbols})

    def symbols_hint(self) -> list[str]:
        return sorted({key[0] for key in self.pending_bars} | set(self.symbols))

    # Writing -------------------------------------------------------------------------

    def flush(self, deadline: float | None = None) -> bool:
        """Write what is waiting: up to 1 + 3 attempts. True when all was written."""
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            if delay:
                self._pause(delay)
            try:
                self._write_all(deadline)
            except LockLost as exc:
                # The lock's session is gone: nothing went out. Ask again.
                self.last_error = str(exc)
                self._next_election = 0.0
                if self.leadership.observe(None) is Change.LOST:
                    logger.error(
                        "❌ %s; asking for the writer lock of %s again, bars kept",
                        exc,
                        self.leadership.name,
                    )
                self._enter_outage()
                return False
            except (DatabaseError, CallTimeout) as exc:
                kind = self._db_error(exc, "a write", attempt)
                self._spool_dirty(quiet=True)  # whatever happens next, it is safe
                if kind is ErrorKind.TIMEOUT:
                    break  # no quick retries into a black hole
            else:
                if self._in_outage:
                    logger.info("✅ database is back: all waiting bars written")
                self._in_outage = False
                self._flush_backoff.reset()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                break
        self._enter_outage()
        return False

    def _db_error(self, exc: BaseException, what: str, attempt: int = 0) -> ErrorKind:
        kind = classify(exc)
        self.stats.db_errors[kind] += 1
        self.stats.failed_attempts += 1
        self.last_error = first_line(exc)
        self._throttle.log(
            logging.WARNING,
            f"db {kind}",
            time.monotonic(),
            "❌ database %s failed (%s%s): %s; %d bars waiting",
            what,
            kind,
            f", attempt {attempt + 1}/{1 + len(RETRY_DELAYS)}" if attempt else "",
            self.last_error,
            self.waiting,
        )
        return kind

    def _write_all(self, deadline: float | None) -> None:
        """Spooled rows first (memory holds the newer version of any key), then
        what is pending, in bounded calls; each row leaves `pending` once stored."""
        started = time.monotonic()
        if self._spool_has_more:
            self._replay_spool(deadline)
        bars = sorted(self.pending_bars.items(), key=lambda kv: kv[0][1])
        candles = sorted(self.pending_candles.items(), key=lambda kv: kv[0][1])
        for start in range(0, max(len(bars), len(candles)), BATCH_ROWS):
            bar_items = bars[start : start + BATCH_ROWS]
            candle_items = candles[start : start + BATCH_ROWS]
            outcome = self._call_store(
                [(bar, scores) for _, (bar, scores, _new) in bar_items],
                [candle for _, candle in candle_items],
                deadline,
            )
            self._written(bar_items, candle_items, outcome)
        self.stats.flushes += 1
        self._fresh_bars = False
        if self.spool is not None and self.spool.size and not self._spool_has_more:
            # Everything spooled is in memory or was replayed: all committed now.
            self.spool.clear()
        if not self._spool_has_more:
            # What still waits came in while this flush ran.
            self.waiting_since = started if self.waiting else None

    def _call_store(self, bars, candles, deadline) -> Outcome:
        outcome = self.lane.run(
            self.store.write,
            bars,
            candles,
            deadline=deadline,
            idle=self._idle,
            cutoff=self._cutoff,
        )
        self.stats.statements += outcome.statements
        self.stats.nulled.update(outcome.nulled)
        if outcome.rejected:
            self.quarantine.rows(outcome.rejected)
        return outcome

    def _written(self, bar_items, candle_items, outcome: Outcome) -> None:
        stats = self.stats
        now = self.clock.now()
        rejected = {id(r.item[0]) for r in outcome.rejected if r.kind == "second"}
        known = self._known
        for key, (bar, _scores, new) in bar_items:
            # Only drop what was written; a newer revision may have replaced it.
            if self.pending_bars.get(key, (None,))[0] is bar:
                del self.pending_bars[key]
                self._dirty_bars.discard(key)
            if id(bar) in rejected:
                continue  # quarantined, not written
            last, number = known.get(key[0], (None, 0))
            if last is None or key[1] > last:
                known[key[0]] = (key[1], number)
            if not new:
                stats.revisions_written += 1
                continue
            stats.bars_written += 1
            delay = now - (bar.second + 1)
            stats.commit_delays.append(delay)
            stats.delay_histogram.observe(delay)
            stats.bars_by_symbol[bar.symbol] = (
                stats.bars_by_symbol.get(bar.symbol, 0) + 1
            )
        for key, candle in candle_items:
            if self.pending_candles.get(key) is candle:
                del self.pending_candles[key]
                self._dirty_candles.discard(key)
            last, number = known.get(key[0], (None, 0))
            if key[1] > number:
                known[key[0]] = (last, key[1])
        stats.candles_written += outcome.candles
        if bar_items or candle_items:
            if not self._announced and bar_items:
                self._announced = True
                logger.info(
                    "✅ first bars stored: %d 1-second bars, up to %s",
                    len(bar_items),
                    datetime.fromtimestamp(bar_items[-1][0][1], tz=UTC).strftime(
                        "%H:%M:%S"
                    ),
                )
            stats.last_commit_at = now

    def _load_spool(self) -> SpoolContents:
        """The spool's contents; damaged lines are quarantined and left out of the
        file, once."""
        contents = self.spool.load()
        if contents.damaged:
            self.quarantine.lines(contents.damaged, str(self.spool.path))
            self.spool.replace(contents)
            contents.damaged = []
        return contents

    def _replay_spool(self, deadline: float | None) -> None:
        contents = self._load_spool()
        bars = [
            item
            for key, item in sorted(contents.bars.items(), key=lambda kv: kv[0][1])
            if key not in self.pending_bars
        ]
        candles = [
            candle
            for key, candle in sorted(contents.candles.items(), key=lambda kv: kv[0][1])
            if key not in self.pending_candles
        ]
        self._spool_has_more = False
        written = [0, 0]
        for start in range(0, max(len(bars), len(candles)), BATCH_ROWS):
            try:
                outcome = self._call_store(
                    bars[start : start + BATCH_ROWS],
                    candles[start : start + BATCH_ROWS],
                    deadline,
                )
            except BaseException:
                self._spool_has_more = True  # the rest is still only on disk
                raise
            written[0] += outcome.bars
            written[1] += outcome.candles
            for bar, _scores in bars[start : start + BATCH_ROWS]:
                last, number = self._known.get(bar.symbol, (None, 0))
                if last is None or bar.second > last:
                    self._known[bar.symbol] = (bar.second, number)
            for candle in candles[start : start + BATCH_ROWS]:
                last, number = self._known.get(candle.symbol, (None, 0))
                self._known[candle.symbol] = (last, max(number, candle.number))
        self.stats.replayed += written[0] + written[1]
        if written[0] or written[1]:
            logger.info(
                "♻️ wrote %d bars and %d 100-trade bars from the spool",
                written[0],
                written[1],
            )

    # Outage and spool ----------------------------------------------------------------

    def _spool_dirty(self, quiet: bool = False) -> int:
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
        self.stats.spooled_at = time.monotonic()
        return len(records)

    def _enter_outage(self) -> None:
        """From now on every bar is spooled as it arrives, until a write succeeds."""
        if not self._in_outage and self.spool is not None:
            logger.warning(
                "💾 bars cannot be written now (%s): %d bars go to the spool %s until "
                "they can",
                self.last_error or "database unavailable",
                self.waiting,
                self.spool.path,
            )
        self._in_outage = True
        self._spool_dirty()

    def _final_flush(self) -> None:
        role = self.role
        if role is Role.STANDBY:
            return  # a standby writes nothing
        if role is Role.WRITER:
            deadline = self._cutoff()
            if deadline == math.inf:  # the aggregator finished without a stop
                deadline = time.monotonic() + self.shutdown_deadline
            while (self.waiting or self._spool_has_more) and (
                time.monotonic() < deadline
            ):
                if self.flush(deadline):
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
        if self.leadership is not None and hasattr(self.leadership.lock, "release"):
            self.leadership.lock.release()
        self.lane.close(timeout=1.0)  # ending the session releases the lock
