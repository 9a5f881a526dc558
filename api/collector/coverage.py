"""What this collector observed, as coverage intervals (api.models.Coverage),
kept by the writer and stored beside the bars.

Each receiver says when its subscription began and ended (`Watch`); the
aggregator says how far every second has been handed on (`Progress`). The book
turns those into one interval per (stream, symbol, connection) and stores:

- an interval as soon as it opens (its start);
- how far an open interval reaches (`seen_through`) every HEARTBEAT seconds, and
  only as far as the bars are stored: progress counts once everything the
  writer took before it has been written - so a crash never leaves coverage
  claiming seconds whose bars were lost;
- its end once the bars up to it are stored (at shutdown, after the last flush).

An interval this collector finds open, for a symbol it observes itself, belongs
to a collector that died if that was a process of this host that no longer runs
(a restart), or if its `seen_through` is older than CRASH_AFTER (another
machine): it is closed there (`crash`). Should that collector be alive after all
(a long database outage), its next heartbeat opens the interval again.

A standby stores nothing; when it becomes the writer its unstored intervals start
no earlier than the bars it kept (STANDBY_KEEP before the takeover). What could
not be stored when the process stops is saved beside the spool
(`coverage-pending.json`) and stored by the next run.
"""

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.db.models import F

from api.market.coverage import end_reason
from api.pipeline.messages import Watch

logger = logging.getLogger(__name__)

HEARTBEAT = 2.0  # seconds between stores of how far open intervals reach
CRASH_AFTER = 60.0  # an open interval not advanced this long: its collector died
# Seconds between looks for intervals a dead collector left open on what this
# one observes; also at the first store and when it observes a new symbol.
DEAD_SCAN_EVERY = 30.0
PENDING_FILE = "coverage-pending.json"


_STARTED = int(time.time())


def collector_id() -> str:
    """host:pid:start (a restarted container may have the same host and pid)."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{_STARTED}"


def _alive_here(collector: str) -> bool:
    """False only for a collector of this host whose process is gone."""
    parts = collector.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname()[:50]:
        return True
    _, pid, started = parts
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return started == str(_STARTED)  # this process, or an earlier one
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running, as another user
    return True


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


@dataclass
class Interval:
    stream: str
    symbol: str
    start: float  # epoch seconds
    seen: float  # how far it reaches (stored bars)
    end: float | None = None
    reason: str = ""
    detail: str = ""
    stored: bool = False  # its row exists
    collector: str = ""  # another run's (saved pending); else this one


class CoverageBook:
    def __init__(
        self,
        *,
        source: str,
        collector: str | None = None,
        directory: Path | None = None,
    ) -> None:
        self.source = source
        self.collector = collector or collector_id()
        self.directory = directory
        self.open: dict[tuple[str, str], Interval] = {}
        self.dirty: dict[tuple[str, str, float], Interval] = {}
        self.through: float | None = None  # the aggregator's progress
        self.observed: set[tuple[str, str]] = set()  # (stream, symbol) ever watched
        self.last_store = -1e18  # monotonic
        self.stores = 0
        self.crashes_closed = 0
        self._ids: dict[str, int] = {}  # symbol -> ticker id, looked up once
        self._scanned: tuple[float, int] | None = None  # (monotonic, observed)
        self._load_pending()

    # From the writer's inbox ---------------------------------------------

    def watch(self, msg: Watch, collector: str = "") -> None:
        """`collector`: who observed, when not this process (a replay)."""
        for symbol in msg.symbols:
            key = (msg.stream, symbol)
            self.observed.add(key)
            current = self.open.pop(key, None)
            if current is not None:  # a begin without an end: close it there
                self._close(current, msg.at, "reconnect", "no end recorded")
            if not msg.ending:
                interval = Interval(msg.stream, symbol, msg.at, msg.at)
                interval.collector = collector
                self.open[key] = interval
                self._mark(interval)
            elif current is not None:
                self._close(current, msg.at, end_reason(msg.reason), msg.reason)

    def progress(self, through: float) -> None:
        self.through = through

    def reach_all(self, at: float, close: bool) -> None:
        """A replay: the open intervals reach `at`; with `close`, their run was
        killed there."""
        for key, interval in list(self.open.items()):
            interval.seen = max(interval.seen, at)
            self._mark(interval)
            if close:
                del self.open[key]
                self._close(interval, at, "crash", "the run ended without closing it")

    # What to store ---------------------------------------------

    def ready(self, now: float, everything_stored: bool) -> list[Interval]:
        """Intervals to store now (monotonic `now`): new ones; with every bar the
        writer took stored, the reach of open ones (every HEARTBEAT) and the ones
        that ended."""
        if everything_stored and self.through is not None:
            if now - self.last_store >= HEARTBEAT:
                for interval in self.open.values():
                    if self.through > interval.seen:
                        interval.seen = self.through
                        self._mark(interval)
        out = []
        for interval in self.dirty.values():
            if interval.end is None or (
                everything_stored
                and self.through is not None
                and self.through >= interval.end
            ):
                out.append(interval)
        return out

    def everything(self) -> list[Interval]:
        """At shutdown, once the last bars are stored: all that changed."""
        return list(self.dirty.values())

    def stored(self, intervals: list[Interval], now: float) -> None:
        for interval in intervals:
            interval.stored = True
            self.dirty.pop(self._key(interval), None)
        self.last_store = now
        self.stores += 1

    def clip_unstored(
        self, earliest: float, which: Callable[[Interval], bool] | None = None
    ) -> None:
        """A standby became the writer (of `which`): it kept bars from
        `earliest` only."""
        for interval in self.open.values():
            if which is not None and not which(interval):
                continue
            if not interval.stored and interval.start < earliest:
                self.dirty.pop(self._key(interval), None)
                interval.start = interval.seen = max(interval.seen, earliest)
                self._mark(interval)

    # Storing (on the database lane) ---------------------------------------------

    def store(
        self,
        intervals: list[Interval],
        crash_before: datetime | None,
        keep_existing: bool = False,
    ) -> int:
        """Upsert the intervals (`keep_existing`: only add those missing, as a
        replay does); close the open intervals of dead collectors on what this
        one observes. Returns how many it closed so."""
        from api.models import Coverage, Ticker

        ids = self._ids
        symbols = {i.symbol for i in intervals} | {s for _, s in self.observed}
        if not symbols <= ids.keys():
            ids.update(
                Ticker.objects.filter(symbol__in=symbols - ids.keys()).values_list(
                    "symbol", "id"
                )
            )
        rows = [
            Coverage(
                ticker_id=ids[i.symbol],
                stream=i.stream,
                collector=i.collector or self.collector,
                start=_dt(i.start),
                end=_dt(i.end),
                seen_through=_dt(max(i.seen, i.end or i.seen)),
                end_reason=i.reason,
                detail=i.detail[:80],
                source=self.source,
            )
            for i in intervals
            if i.symbol in ids
        ]
        if rows and keep_existing:
            Coverage.objects.bulk_create(rows, ignore_conflicts=True)
        elif rows:
            Coverage.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["ticker", "stream", "collector", "start"],
                update_fields=[
                    "end",
                    "seen_through",
                    "end_reason",
                    "detail",
                    "updated_at",
                ],
            )
        closed = 0
        if crash_before is not None and self.observed:
            closed = self._close_dead(ids, crash_before)
            self.crashes_closed += closed
        return closed

    def dead_scan_due(self, now: float) -> bool:
        """Whether the next store should look for dead collectors' intervals
        (monotonic `now`): at first, when a symbol is newly observed, and every
        DEAD_SCAN_EVERY seconds."""
        if self._scanned is None:
            return True
        at, count = self._scanned
        return count != len(self.observed) or now - at >= DEAD_SCAN_EVERY

    def dead_scanned(self, now: float) -> None:
        self._scanned = (now, len(self.observed))

    def forget_ids(self) -> None:
        """After a failed store: a ticker may have been deleted since."""
        self._ids.clear()

    def _close_dead(self, ids: dict[str, int], crash_before: datetime) -> int:
        """Open intervals of other collectors on what this one observes, whose
        collector is gone: a process of this host that no longer runs, or any
        that has not advanced since `crash_before`."""
        from api.models import Coverage, EndReason

        streams = {stream for stream, _ in self.observed}
        candidates = (
            Coverage.objects.filter(
                end__isnull=True,
                stream__in=streams,
                ticker_id__in=[ids[s] for _, s in self.observed if s in ids],
            )
            .exclude(collector=self.collector)
            .values_list("id", "collector", "seen_through")
        )
        dead = [
            pk
            for pk, collector, seen in candidates
            if seen < crash_before or not _alive_here(collector)
        ]
        if not dead:
            return 0
        return Coverage.objects.filter(id__in=dead, end__isnull=True).update(
            end=F("seen_through"),
            end_reason=EndReason.CRASH,
            detail=f"found open by {self.collector}"[:80],
        )

    # Across runs ---------------------------------------------

    def save_pending(self) -> int:
        """What could not be stored, for the next run; returns how many."""
        pending = list(self.dirty.values())
        if self.directory is None or not pending:
            return 0
        path = self.directory / PENDING_FILE
        with open(path, "w", encoding="utf-8") as out:
            json.dump(
                {
                    "collector": self.collector,
                    "intervals": [asdict(i) for i in pending],
                },
                out,
            )
        return len(pending)

    def _load_pending(self) -> None:
        if self.directory is None:
            return
        path = self.directory / PENDING_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            intervals = [Interval(**item) for item in saved["intervals"]]
            for interval in intervals:
                interval.collector = interval.collector or str(saved["collector"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("⚠️ ignoring %s: %s", path, exc)
            return
        for interval in intervals:
            if interval.end is None:  # the process died with it open
                interval.end, interval.reason = interval.seen, "crash"
            self.dirty[self._key(interval)] = interval
        path.unlink(missing_ok=True)
        logger.info("📥 %d coverage intervals of the last run to store", len(intervals))

    # ----------------------------------------------------------------------

    @staticmethod
    def _key(interval: Interval) -> tuple[str, str, float]:
        return (interval.stream, interval.symbol, interval.start)

    def _mark(self, interval: Interval) -> None:
        self.dirty[self._key(interval)] = interval

    def _close(self, interval: Interval, at: float, reason: str, detail: str) -> None:
        interval.end = max(at, interval.start)
        interval.reason = reason
        interval.detail = detail
        self._mark(interval)
