"""The writer: the only thread that writes bars. Its one job is flushing - when,
and with what result; one batched idempotent upsert per kind per flush; retries
with backoff; a database outage never drops a bar.

Who it works with:
- the backlog (backlog.py) holds what waits, in memory and in the spool;
- the database lane (database.py) runs each call within a bound - a call into a
  black hole is abandoned, and the writer keeps taking and spooling bars while
  it waits;
- the election (leader.py) says whether this collector writes at all;
- the store (pipeline/store.py) turns bars into rows and isolates rows the
  database refuses, which go to the quarantine file (quarantine.py).
"""

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

from api.collector.backlog import Backlog, Chunk
from api.collector.coverage import CRASH_AFTER, HEARTBEAT, CoverageBook
from api.collector.database import DatabaseLane
from api.collector.leader import (
    Change,
    Election,
    Leadership,
    Role,
    kinds_of,
    label,
    symbol_of,
    unit,
    unit_of,
)
from api.collector.metrics import DelayHistogram
from api.collector.quarantine import Quarantine
from api.collector.spool import Spool
from api.market.backoff import Backoff
from api.pipeline.errors import CallTimeout, ErrorKind, LockLost, classify, first_line
from api.pipeline.kinds import KINDS, STREAM_KINDS, TICK100, BarKind
from api.pipeline.messages import Bars, Finished, Progress, Watch
from api.pipeline.store import Outcome, Store, Tails
from api.workers.clock import Clock
from api.workers.worker import Worker

logger = logging.getLogger(__name__)

# Seconds between two flushes at the least. A flush is one upsert per kind with
# bars waiting, so at most 3 / 0.7 = 4.3 statements a second whatever the trade
# rate or number of symbols; in a live session seconds close once a second, so
# this never holds a bar back (1-minute bars add one statement a minute).
MIN_GAP = 0.7
# A flush follows each batch of newly closed bars (about once a second in a
# session) and takes pending 100-trade bars and revisions along. The timer is
# the fallback for when nothing closes; shorter than a second it would add a
# flush between the once-a-second ones.
FLUSH_INTERVAL = 1.5
STANDBY_KEEP = 60.0  # seconds of bars a standby keeps to fill a takeover's gap
ELECTION_TRIM = 1.0  # seconds between trims of what a standby keeps
RETRY_DELAYS = (0.1, 0.2, 0.4)  # the seed's backoff between attempts of one flush
# Between failed flushes: short, so that writes resume within seconds of the
# database coming back.
OUTAGE_BACKOFF = {"base": 1.0, "cap": 3.0}
BATCH_ROWS = 2000  # rows per statement (and per bounded call) when catching up
# A database call running this long is suspect (they take milliseconds): bars go
# to the spool meanwhile, so a crash during a black hole loses none.
SUSPECT_AFTER = 2.0
MAINTENANCE_RETRY = 300.0  # seconds after a failed maintenance call


@dataclass
class WriterStats:
    written: Counter = field(default_factory=Counter)  # kind name -> new rows
    revisions_written: int = 0
    flushes: int = 0
    statements: int = 0
    failed_attempts: int = 0
    promotions: int = 0
    replayed: int = 0  # rows written from the spool
    last_commit_at: float | None = None  # epoch seconds
    db_errors: Counter = field(default_factory=Counter)  # ErrorKind -> count
    nulled: Counter = field(default_factory=Counter)  # column -> rows set NULL
    commit_delays: deque = field(default_factory=lambda: deque(maxlen=100_000))
    delay_histogram: DelayHistogram = field(default_factory=DelayHistogram)
    bars_by_symbol: dict[str, int] = field(default_factory=dict)

    @property
    def bars_written(self) -> int:
        """New 1-second bars stored, trade or quote (the figure users watch)."""
        return self.written["second"] + self.written["quote"]

    @property
    def candles_written(self) -> int:
        return self.written["tick100"]


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
        known_tails: Tails | None = None,
        maintenance: Callable[[], object] | None = None,
        maintenance_interval: float = 3600.0,
    ) -> None:
        super().__init__("writer", stop)
        # Housekeeping only the writer does, on its session, between flushes
        # (creating the coming partitions: api.partitions); its failures are
        # logged and retried later, never in the way of bars.
        self.maintenance = maintenance
        self.maintenance_interval = maintenance_interval
        self._maintain_at = -math.inf  # monotonic; at once when first writing
        self.inbox = inbox
        self.upstream_done = upstream_done
        self.clock = clock or Clock()
        self.flush_interval = flush_interval
        self.shutdown_deadline = shutdown_deadline
        self.stats = WriterStats()
        self.lane = lane or DatabaseLane()
        self.leadership = leadership
        self.election = (
            Election(leadership, self.lane, self.clock) if leadership else None
        )
        self.store = Store(source, fence=leadership.lock if leadership else None)
        self.quarantine = Quarantine(spool.directory if spool else None)
        self.spool = spool
        self.backlog = Backlog(spool, max_pending, self.quarantine.lines, self.clock)
        self.on_promotion = on_promotion
        # What this collector knows is stored, per symbol and kind, to tell its
        # own writes from another collector's.
        self._known: Tails = {s: dict(t) for s, t in (known_tails or {}).items()}
        self._flush_backoff = Backoff(**OUTAGE_BACKOFF)
        self._in_outage = False
        self._fresh_bars = False  # newly closed bars wait (not only revisions)
        self._finished = False  # the aggregator said its last word
        self._stop_deadline = math.inf  # monotonic; set once stop is seen
        self._announced = False  # the first stored bars were logged
        self.last_error: str | None = None
        self.beat = self.clock.monotonic()  # the writer thread's heartbeat
        # What the receivers observed (api/collector/coverage.py).
        self.coverage = CoverageBook(
            source=source, directory=spool.directory if spool else None
        )
        self._coverage_retry_at = -math.inf
        self._standing_by: frozenset[str] = frozenset()  # units, as of the last look
        self._trimmed_at = -math.inf

    @property
    def waiting(self) -> int:
        return self.backlog.waiting

    @property
    def waiting_since(self) -> float | None:
        return self.backlog.waiting_since

    @property
    def role(self) -> Role | None:
        """writer / standby / unknown; None before the first election. Without
        an election this collector simply writes."""
        if self.leadership is None:
            return Role.WRITER
        return self.leadership.role

    def owns(self, kind: BarKind, symbol: str) -> bool:
        """True when this collector writes `symbol`'s bars of `kind` now."""
        if self.leadership is None:
            return True
        return unit_of(kind, symbol) in self.leadership.held

    def keeps(self, kind: BarKind, symbol: str) -> bool:
        """What to carry to the next run: what it writes, or wrote when last
        known (the role is unknown now), or anything before the first election."""
        leadership = self.leadership
        if leadership is None or leadership.role is None:
            return True
        name = unit_of(kind, symbol)
        return name in leadership.held or leadership.definite.get(name) is Role.WRITER

    def _mine(self, kind: BarKind, key: tuple[str, int]) -> bool:
        return self.owns(kind, key[0])

    def _theirs(self, kind: BarKind, key: tuple[str, int]) -> bool:
        return not self.owns(kind, key[0])

    def _covers(self, interval) -> bool:
        """A coverage interval is stored by whoever writes its symbol's bars."""
        if self.leadership is None:
            return True
        source = STREAM_KINDS[interval.stream][0].built_from
        return unit(source, interval.symbol) in self.leadership.held

    @property
    def db_error(self) -> str | None:
        """The last database error, the writer's or the election's."""
        if self.election is not None and self.role is Role.UNKNOWN:
            return self.election.last_error or self.last_error
        return self.last_error

    # The loop ------------------------------------------------------------------------

    def work(self) -> None:
        last_flush = -math.inf
        retry_at = 0.0
        while True:
            self.beat = self.clock.monotonic()
            finished = self._collect(0.05 if self.waiting else 0.5)
            if self.stop.is_set() and self.upstream_done():
                finished = True  # the aggregator is gone without saying so
            if finished:
                break
            if self._in_outage:
                self._spool_dirty()
            if not self._may_write():
                continue
            now = self.clock.monotonic()
            if self.maintenance is not None and now >= self._maintain_at:
                self._maintain()
            if self.backlog.empty:
                self._store_coverage()
                continue
            # Flush right after the aggregator closed new bars (once a second, so
            # the commit follows the grace period closely), or when anything has
            # waited a whole interval; never more often than every MIN_GAP.
            since = now - last_flush
            due = (
                self._fresh_bars and since >= MIN_GAP
            ) or since >= self.flush_interval
            if due and now >= retry_at:
                ok = self.flush()
                last_flush = self.clock.monotonic()
                retry_at = 0.0 if ok else last_flush + self._flush_backoff.next()
                if ok:
                    self._store_coverage()
        self._final_flush()
        self._final_coverage()

    def _maintain(self) -> None:
        self._maintain_at = self.clock.monotonic() + self.maintenance_interval
        try:
            self.lane.run(self.maintenance, idle=self._idle, cutoff=self._cutoff)
        except Exception as exc:  # noqa: BLE001 - housekeeping must not stop bars
            self._maintain_at = self.clock.monotonic() + MAINTENANCE_RETRY
            logger.warning(
                "⚠️ maintenance failed (%s); retrying in %.0f s",
                first_line(exc),
                MAINTENANCE_RETRY,
                extra={"dedupe": "maintenance"},
            )

    def _collect(self, wait: float) -> bool:
        """Take everything the aggregator has handed on; True once it finished."""
        if self._finished:
            return True
        try:
            item = self.inbox.get(timeout=wait) if wait else self.inbox.get_nowait()
        except queue.Empty:
            return False
        while True:
            if isinstance(item, Finished):
                self._finished = True
                return True
            self.add(item)
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return False

    def add(self, message: Bars | Watch | Progress) -> None:
        kind = type(message)
        if kind is Progress:
            self.coverage.progress(message.through)
        elif kind is Watch:
            self.coverage.watch(message)
        elif self.backlog.add(message):
            self._fresh_bars = True

    # Coverage ------------------------------------------------------------------------

    def _store_coverage(self, final: bool = False) -> bool:
        """Store what the coverage book has ready (see api/collector/coverage.py);
        a failure is retried a few seconds later, never in the way of bars."""
        book = self.coverage
        now = self.clock.monotonic()
        if final:
            intervals = [i for i in book.everything() if self._covers(i)]
        else:
            if now < self._coverage_retry_at:
                return False
            intervals = [
                i for i in book.ready(now, self._all_written()) if self._covers(i)
            ]
            if not intervals and (
                not book.observed or now - book.last_store < HEARTBEAT
            ):
                return True
        scan = book.dead_scan_due(now)
        crash_before = (
            datetime.fromtimestamp(self.clock.now() - CRASH_AFTER, UTC)
            if scan
            else None
        )
        try:
            closed = self.lane.run(
                book.store,
                intervals,
                crash_before,
                idle=self._idle,
                cutoff=self._cutoff,
            )
        except (DatabaseError, CallTimeout, LockLost) as exc:
            self._coverage_retry_at = now + HEARTBEAT
            book.forget_ids()
            logger.warning(
                "⚠️ coverage not stored (%s); retrying",
                first_line(exc),
                extra={"dedupe": "coverage"},
            )
            return False
        book.stored(intervals, now)
        if scan:
            book.dead_scanned(now)
        if closed:
            logger.warning(
                "🕳️ closed %d coverage intervals left open by a collector that "
                "stopped without closing them (a crash)",
                closed,
            )
        return True

    def _all_written(self) -> bool:
        """Every bar this collector writes is stored (a standby's wait on
        purpose)."""
        backlog = self.backlog
        if backlog.spool_has_more:
            return False
        if self.leadership is None or self.role is not Role.WRITER:
            return backlog.empty
        return not any(
            self.owns(kind, key[0])
            for kind, pending in backlog.pending.items()
            for key in pending
        )

    def _final_coverage(self) -> None:
        """At the end: store every interval once the bars are stored; otherwise
        keep them for the next run. A standby's are dropped: it wrote nothing."""
        if self.role is Role.STANDBY:
            return
        if self.role is Role.WRITER:
            self.coverage.dirty = {
                key: i for key, i in self.coverage.dirty.items() if self._covers(i)
            }
        if self.role is Role.WRITER and self.backlog.empty:
            if self._store_coverage(final=True):
                return
        try:
            kept = self.coverage.save_pending()
        except OSError as exc:
            logger.error("❌ coverage intervals lost: %s", exc)
            return
        if kept:
            logger.warning("💾 %d coverage intervals kept for the next run", kept)

    def _idle(self) -> None:
        """While a database call runs: keep taking bars, keep spooling."""
        self.beat = self.clock.monotonic()
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
            self._stop_deadline = self.clock.monotonic() + self.shutdown_deadline
        return self._stop_deadline

    def _pause(self, seconds: float) -> None:
        """Sub-second pauses between attempts; they also run during the final
        flush after stop was set, so they do not wait on it."""
        end = self.clock.monotonic() + seconds
        while (left := end - self.clock.monotonic()) > 0:
            self._idle()
            time.sleep(min(0.05, left))

    # Leadership ----------------------------------------------------------------------

    def _may_write(self) -> bool:
        """Only the writer of a symbol writes it; for the symbols another
        collector writes, this one keeps the last minute of bars to fill a
        takeover's gap; with the role unknown, every bar is kept and spooled."""
        election = self.election
        if election is None:
            return True
        now = self.clock.monotonic()
        if now >= election.next_at:
            election.run(self._idle, self._cutoff)
        leadership = self.leadership
        role = leadership.role
        if role is Role.UNKNOWN:
            self._enter_outage()
            return False
        if role is None:
            return False
        held = leadership.held
        if held & self._standing_by:
            # What this collector saw as a standby is stored only as far back
            # as the bars it kept.
            self.coverage.clip_unstored(
                self.clock.now() - STANDBY_KEEP,
                lambda i: self._covers(i) and self._was_standby_for(i),
            )
        if election.unsettled:
            self._settle()
        self._standing_by = leadership.lock.wanted - held
        if now >= self._trimmed_at:
            self._trimmed_at = now + ELECTION_TRIM
            self.backlog.keep_recent(self.clock.now() - STANDBY_KEEP, self._theirs)
        if role is Role.STANDBY:
            self._in_outage = False
            return False
        return not election.unsettled

    def _was_standby_for(self, interval) -> bool:
        source = STREAM_KINDS[interval.stream][0].built_from
        return unit(source, interval.symbol) in self._standing_by

    def _settle(self) -> None:
        """Act on becoming the writer of units: after a takeover, or after an
        unknown spell during which another collector may have written."""
        election = self.election
        try:
            succession = election.settle(
                self._known,
                self.backlog.pending,
                self._idle,
                self._cutoff,
            )
        except (DatabaseError, CallTimeout) as exc:
            self._db_error(exc, "reading what is stored")
            election.next_at = 0.0  # check the lock again right away
            return
        if succession.others:
            self._follow(succession)
        gained: dict[Change, list[str]] = {}
        for name, change in succession.changes.items():
            gained.setdefault(change, []).append(name)
        waiting = sum(
            1
            for kind, pending in self.backlog.pending.items()
            for key in pending
            if unit_of(kind, key[0]) in succession.changes
        )
        if taken := gained.get(Change.TAKEOVER):
            self.stats.promotions += 1
            logger.warning(
                "👑 this collector is the writer for %s (%d recent bars to write)",
                label(taken),
                waiting,
            )
        if regained := gained.get(Change.REGAINED):
            others = ", ".join(sorted(label([n]) for n in succession.others))
            logger.info(
                "👑 writer lock of %s regained; writing the %d waiting bars%s",
                label(regained),
                waiting,
                f" (another collector wrote {others} meanwhile)" if others else "",
            )

    def _follow(self, succession) -> None:
        """Another collector wrote these units: keep only bars after what it
        stored, and number 100-trade bars after its last."""
        others, tails = succession.others, succession.tails
        floors: dict[BarKind, dict[str, int]] = {}
        for name in others:
            symbol = symbol_of(name)
            for kind in kinds_of(name):
                if kind.timed and tails[symbol][kind] is not None:
                    floors.setdefault(kind, {})[symbol] = tails[symbol][kind]
                known = self._known.setdefault(symbol, {})
                known[kind] = tails[symbol][kind]
        self.backlog.follow(floors, lambda kind, key: unit_of(kind, key[0]) in others)
        renumbered = {
            symbol_of(name): (tails[symbol_of(name)][TICK100] or 0) + 1
            for name in others
            if TICK100 in kinds_of(name)
        }
        if self.on_promotion is not None and renumbered:
            self.on_promotion(renumbered)

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
                self.election.next_at = 0.0
                if Change.LOST in self.election.observe(None):
                    logger.error(
                        "❌ %s; asking for the writer lock of %s again, bars kept",
                        exc,
                        self.leadership.name,
                    )
                self._enter_outage()
                return False
            except (DatabaseError, CallTimeout) as exc:
                kind = self._db_error(exc, "a write", attempt)
                self._spool_dirty()  # whatever happens next, it is safe
                if kind is ErrorKind.TIMEOUT:
                    break  # no quick retries into a black hole
            else:
                if self._in_outage:
                    logger.info("✅ database is back: all waiting bars written")
                self._in_outage = False
                self._flush_backoff.reset()
                return True
            if deadline is not None and self.clock.monotonic() >= deadline:
                break
        self._enter_outage()
        return False

    def _db_error(self, exc: BaseException, what: str, attempt: int = 0) -> ErrorKind:
        kind = classify(exc)
        self.stats.db_errors[kind] += 1
        self.stats.failed_attempts += 1
        self.last_error = first_line(exc)
        logger.warning(
            "❌ database %s failed (%s%s): %s; %d bars waiting",
            what,
            kind,
            f", attempt {attempt + 1}/{1 + len(RETRY_DELAYS)}" if attempt else "",
            self.last_error,
            self.waiting,
            extra={"dedupe": f"db {kind}", "kind": str(kind)},
        )
        return kind

    def _write_all(self, deadline: float | None) -> None:
        """Spooled rows first (memory holds the newer version of any key), then
        what is pending, in bounded calls; each row stops waiting once stored."""
        started = self.clock.monotonic()
        backlog = self.backlog
        which = None if self.leadership is None else self._mine
        if backlog.spool_has_more:
            self._replay_spool(deadline, which)
        for chunk in backlog.chunks(BATCH_ROWS, which):
            outcome = self._call_store(chunk, deadline)
            backlog.written(chunk)
            self._count(chunk, outcome)
        self.stats.flushes += 1
        self._fresh_bars = False
        backlog.all_written(started)

    def _call_store(self, chunk: Chunk, deadline: float | None) -> Outcome:
        batch = {
            kind: [item for _, item, _ in entries] for kind, entries in chunk.items()
        }
        outcome = self.lane.run(
            self.store.write,
            batch,
            deadline=deadline,
            idle=self._idle,
            cutoff=self._cutoff,
        )
        self.stats.statements += outcome.statements
        self.stats.nulled.update(outcome.nulled)
        if outcome.rejected:
            self.quarantine.rows(outcome.rejected)
        self._learn(chunk, outcome)
        return outcome

    def _learn(self, chunk: Chunk, outcome: Outcome) -> None:
        """How far this collector's stored bars now go, per symbol and kind."""
        rejected = {id(r.item) for r in outcome.rejected}
        known = self._known
        for kind, entries in chunk.items():
            for key, item, _new in entries:
                if id(item) in rejected:
                    continue
                tails = known.setdefault(key[0], {})
                last = tails.get(kind)
                if last is None or key[1] > last:
                    tails[kind] = key[1]

    def _count(self, chunk: Chunk, outcome: Outcome) -> None:
        stats = self.stats
        now = self.clock.now()
        rejected = {id(r.item) for r in outcome.rejected}
        for kind, entries in chunk.items():
            for _key, item, new in entries:
                if id(item) in rejected:
                    continue  # quarantined, not written
                if not new:
                    stats.revisions_written += 1
                    continue
                stats.written[kind.name] += 1
                if kind.width != 1:
                    continue
                bar = item[0]
                delay = now - (bar.second + 1)
                stats.commit_delays.append(delay)
                stats.delay_histogram.observe(delay)
                by_symbol = stats.bars_by_symbol
                by_symbol[bar.symbol] = by_symbol.get(bar.symbol, 0) + 1
        if chunk:
            seconds = [e for kind, es in chunk.items() if kind.width == 1 for e in es]
            if not self._announced and seconds:
                self._announced = True
                logger.info(
                    "✅ first bars stored: %d 1-second bars, up to %s",
                    len(seconds),
                    datetime.fromtimestamp(seconds[-1][0][1], tz=UTC).strftime(
                        "%H:%M:%S"
                    ),
                )
            stats.last_commit_at = now

    def _replay_spool(self, deadline: float | None, which) -> None:
        written = Counter()
        try:
            for chunk in self.backlog.replay_chunks(BATCH_ROWS, which):
                outcome = self._call_store(chunk, deadline)
                written.update(outcome.written)
        except BaseException:
            self.backlog.spool_has_more = True  # the rest is still only on disk
            raise
        self.stats.replayed += sum(written.values())
        if written:
            logger.info(
                "♻️ wrote from the spool: %s",
                ", ".join(
                    f"{written[kind.name]} {kind.label} bars"
                    for kind in KINDS
                    if written[kind.name]
                ),
            )

    # Outage and spool ----------------------------------------------------------------

    def _spool_dirty(self) -> int:
        try:
            return self.backlog.spool_dirty()
        except OSError as exc:
            logger.error(
                "❌ cannot write the spool %s: %s; %d bars held in memory only",
                self.spool.path,
                exc,
                self.waiting,
                extra={"dedupe": "spool"},
            )
            return 0

    def _enter_outage(self) -> None:
        """From now on every bar is spooled as it arrives, until a write succeeds."""
        if not self._in_outage and self.spool is not None:
            logger.warning(
                "💾 bars cannot be written now (%s): %d bars go to the spool %s until "
                "they can",
                self.db_error or "database unavailable",
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
            if self.leadership is not None:
                self.backlog.drop(self._theirs)  # another collector writes these
            deadline = self._cutoff()
            if deadline == math.inf:  # the aggregator finished without a stop
                deadline = self.clock.monotonic() + self.shutdown_deadline
            while not self.backlog.empty and self.clock.monotonic() < deadline:
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
            "❌ shutting down with %s not written",
            ", ".join(
                f"{self.backlog.count(kind)} {kind.label} bars"
                for kind in KINDS
                if self.backlog.count(kind)
            ),
        )

    def cleanup(self) -> None:
        if self.leadership is not None and hasattr(self.leadership.lock, "release"):
            self.leadership.lock.release()
        self.lane.close(timeout=1.0)  # ending the session releases the lock
