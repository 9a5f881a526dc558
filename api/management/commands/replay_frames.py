"""python manage.py replay_frames DIR - rebuild bars from a frame journal.

Every frame goes through the live collector's own ingest rules (pipeline.ingest:
the same builders, the same start-second and late-trade rules) with the clock it
had live: its arrival time. Rows are written by the live store (pipeline.store),
so replaying over stored rows fills gaps (a SIGKILL, an outage) and rewrites the
others with the values they already hold. Every bar kind is rebuilt.

Rules that make a replay reproduce the live run:
- Each start mark (Journal.mark_start) begins a run: a fresh ingest, 100-trade
  numbering from the mark, only its symbols, the open wider buckets it went on
  from, and no trades for buckets before the run started (the live aggregator
  skips them too). The previous run's open
  bars close at that point, as they did when it stopped.
- Frames before any start mark are replayed with numbering from 1 (a warning says
  so): such candles are only right if the journal starts with the symbol's
  first candle.
- Each run builds what its streams built live (its start mark says which:
  trade bars for us/crypto, quote bars for us-quote/forex; marks written before
  quote streams existed: trades); other frames are counted as ignored. Frames
  before any start mark build every kind.
- Each run applies the trade-condition rules its start mark recorded (runs
  recorded before the rules existed counted every print), unless --conditions
  says otherwise.
- Existing rows keep their sentiment scores and their `source`; rows the replay
  creates get source "replay" and no scores (unknown, never a fake 0).
- Coverage (api.models.Coverage): the journal's watch records are the live
  run's subscriptions; the replay stores the same intervals (same collector,
  same start), adding those the database lacks and never changing one it holds.
  A run that ends without closing its intervals (killed) closes them at its
  last frame (`crash`); at the journal's end they stay open there.
- --from/--to select the bars written (time bars by their start, 100-trade bars
  by completion time). The journal is still read from its start, so numbering and
  bar state are right, and past --to by grace + revision window for late prints.
"""

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from api.collector.coverage import CoverageBook
from api.collector.journal import Entry, StartMark, WatchMark, read_entries
from api.market.bars import Partial
from api.market.conditions import MODES
from api.market.messages import Malformed, Quote, Trade, parse_frame
from api.models import Source
from api.pipeline.ingest import Ingest
from api.pipeline.kinds import (
    BY_NAME,
    KINDS,
    QUOTE,
    SECOND,
    STREAM_KINDS,
    TICK100,
    BarKind,
)
from api.pipeline.messages import Watch
from api.pipeline.store import Store

logger = logging.getLogger(__name__)

CHUNK_ROWS = 5000  # rows held before an upsert: memory stays bounded


@dataclass
class ReplayCounts:
    runs: int = 0
    frames: int = 0
    trades: int = 0  # trades and quotes
    malformed: int = 0
    ignored: int = 0  # other symbols, status frames
    before_start: int = 0  # trades for seconds before their run started
    dropped_late: int = 0  # beyond the revision window, as live
    bars: int = 0  # new 1-second bars
    revisions: int = 0  # revised 1-second bars
    candles: int = 0  # 100-trade bars
    quotes: int = 0  # 1-second quote bars, new or revised
    minutes: int = 0  # 1-minute bars, new or revised
    rejected: int = 0  # rows the database refused (reported, not stored)
    watches: int = 0  # subscriptions begun or ended (coverage)


class _Store:
    """The last version of each bar, by kind, upserted in chunks (no store: a dry
    run). Rows the database refuses are reported, never in the way."""

    def __init__(self, store: Store | None, warn: Callable[[str], None]) -> None:
        self.store = store
        self.warn = warn
        self.rejected = 0
        self.items: dict[BarKind, dict] = {kind: {} for kind in KINDS}

    def add(self, kind: BarKind, item) -> None:
        items = self.items[kind]
        items[kind.key(item)] = item  # a revision replaces its original
        if len(items) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        batch = {kind: list(items.values()) for kind, items in self.items.items()}
        if self.store is not None and any(batch.values()):
            for item in self.store.write(batch).rejected:
                self.rejected += 1
                self.warn(f"not stored ({item.kind.label} bar): {item.reason}")
        for items in self.items.values():
            items.clear()


class Replayer:
    """Feeds journal entries through the ingest rules, one live run at a time."""

    def __init__(
        self,
        *,
        store: _Store,
        grace: float = 2.0,
        revision_window: float = 300.0,
        symbols: set[str] | None = None,
        window: tuple[float, float] = (-math.inf, math.inf),
        warn: Callable[[str], None] = logger.warning,
        conditions: str | None = None,
    ) -> None:
        self.store = store
        # The trade-condition rules: None = each run's own, from its start mark.
        self.conditions = conditions
        self.grace = grace
        self.revision_window = revision_window
        self.symbols = symbols
        self.window = window
        self.warn = warn
        self.counts = ReplayCounts()
        self.ingest: Ingest | None = None
        self.wanted: set[str] | None = None
        self._numbered: dict[str, int] = {}  # highest candle number seen per symbol
        self.coverage = CoverageBook(source=Source.REPLAY, collector="replay")
        self._last_at = -math.inf  # the last entry's arrival time

    def run(self, entries: Iterable[Entry]) -> ReplayCounts:
        for entry in entries:
            self._last_at = entry.received_at
            if type(entry) is StartMark:
                self._start(entry)
                continue
            if type(entry) is WatchMark:
                self._watch(entry)
                continue
            if self.ingest is None:
                self.warn(
                    "the journal starts without a start mark: 100-trade bars are "
                    "numbered from 1"
                )
                self._start(None)
            self._frame(entry.received_at, entry.data)
        self._end_run(last=True)
        self.store.flush()
        self.counts.rejected = self.store.rejected
        return self.counts

    def _start(self, mark: StartMark | None) -> None:
        previous = self.ingest.ticks if self.ingest is not None else None
        self._end_run()
        self.counts.runs += 1
        if mark is None:
            self.wanted = self.symbols
            self.ingest = self._ingest()
            return
        wanted = set(mark.next_candle)
        self.wanted = wanted & self.symbols if self.symbols is not None else wanted
        for symbol, number in mark.next_candle.items():
            if number <= self._numbered.get(symbol, 0):
                self.warn(
                    f"{symbol}: a run resumed at 100-trade bar #{number} after an "
                    f"earlier run had numbered #{self._numbered[symbol]} (it stopped "
                    "before storing them): the later run's bars win, as live"
                )
        partial = {}
        for symbol, count in mark.carried.items():
            trades = previous.pending(symbol)[-count:] if previous and count else []
            if len(trades) < count:
                self.warn(
                    f"{symbol}: the run continued a partial 100-trade bar of {count} "
                    f"trades but the journal holds {len(trades)} of them"
                )
            if trades:
                partial[symbol] = trades
        self.ingest = self._ingest(
            start_second=math.floor(mark.received_at),
            next_numbers=mark.next_candle,
            partial=partial,
            seeds={
                BY_NAME[name]: {
                    (row[0], int(row[1])): Partial.from_list(row[2:]) for row in rows
                }
                for name, rows in mark.seeds.items()
                if name in BY_NAME
            },
            conditions=self.conditions or mark.conditions,
            kinds=_kinds_of(mark.streams),
        )

    def _watch(self, mark: WatchMark) -> None:
        symbols = tuple(
            s for s in mark.symbols if self.symbols is None or s in self.symbols
        )
        if symbols:
            at = mark.received_at
            watch = Watch(mark.stream, symbols, at, mark.ending, mark.reason)
            self.coverage.watch(watch, collector=mark.collector)
            self.counts.watches += 1

    def intervals(self) -> list:
        """The coverage intervals of the journal that overlap the window."""
        low, high = self.window
        return [
            i
            for i in self.coverage.everything()
            if i.start < high and (i.end if i.end is not None else i.seen) > low
        ]

    def _ingest(self, **run) -> Ingest:
        run.setdefault("conditions", self.conditions or "eodhd")
        return Ingest(grace=self.grace, revision_window=self.revision_window, **run)

    def _end_run(self, last: bool = False) -> None:
        # Intervals a run left open: it was killed there (or, at the journal's
        # end, it is still observing: they stay open, reaching that far).
        self.coverage.reach_all(self._last_at, close=not last)
        if self.ingest is None:
            return
        self._closed(self.ingest.finish())  # as the live run's finish()
        self.counts.dropped_late += self.ingest.seconds.dropped_too_late
        self.counts.before_start += self.ingest.before_start
        self.ingest = None

    def _frame(self, received_at: float, data: bytes) -> None:
        counts = self.counts
        counts.frames += 1
        closed = self.ingest.close(received_at)
        if closed:
            self._closed(closed)
        msg = parse_frame(data)
        ingest = self.ingest
        if (type(msg) is Trade and ingest.takes_trades) or (
            type(msg) is Quote and ingest.takes_quotes
        ):
            wanted = self.wanted
            if wanted is not None and msg.symbol not in wanted:
                counts.ignored += 1
                return
            counts.trades += 1
            for kind, candles in self.ingest.add([msg], received_at).items():
                for candle in candles:
                    if kind is TICK100:
                        self._numbered[candle.symbol] = candle.number
                    if self.window[0] <= candle.completed_at_ms / 1000 < self.window[1]:
                        if kind is TICK100:
                            counts.candles += 1
                        self.store.add(kind, candle)
        elif type(msg) is Malformed:
            counts.malformed += 1
        else:
            counts.ignored += 1

    def _closed(self, closed: dict) -> None:
        low, high = self.window
        counts = self.counts
        for kind, bars in closed.items():
            for bar in bars:
                if not low <= bar.second < high:
                    continue
                if kind is SECOND:
                    if bar.revision:
                        counts.revisions += 1
                    else:
                        counts.bars += 1
                elif kind is QUOTE:
                    counts.quotes += 1
                else:
                    counts.minutes += 1
                self.store.add(kind, (bar, None))


def _kinds_of(streams: list[str]) -> tuple[BarKind, ...]:
    """What a run that collected these streams built (every kind when the
    mark names none this version knows)."""
    built = {kind for s in streams for kind in STREAM_KINDS.get(s, ())}
    return tuple(kind for kind in KINDS if kind in built) or KINDS


def parse_instant(text: str) -> float:
    """ISO 8601 -> epoch seconds; without an offset the time is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise CommandError(f"{text!r} is not an ISO 8601 date and time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _symbols(text: str | None) -> set[str] | None:
    if not text:
        return None
    symbols = {part.strip() for part in text.split(",") if part.strip()}
    if not symbols:
        raise CommandError("--symbols needs at least one symbol")
    return symbols


class Command(BaseCommand):
    help = "Rebuild 1-second and 100-trade bars from a frame journal (--record-dir)."

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="the journal directory")
        parser.add_argument(
            "--from", dest="start", help="first bar time, ISO 8601 (UTC if no offset)"
        )
        parser.add_argument("--to", dest="end", help="end of bar times, exclusive")
        parser.add_argument(
            "--grace",
            type=float,
            default=2.0,
            help="as the live run's --grace (default %(default)s)",
        )
        parser.add_argument(
            "--revision-window",
            type=float,
            default=300.0,
            help="as the live run's --revision-window (default %(default)s)",
        )
        parser.add_argument("--symbols", help="comma-separated; default: all")
        parser.add_argument(
            "--conditions",
            choices=MODES,
            help="trade-condition rules (default: each run's own, as its start mark "
            "recorded them; runs recorded before the rules counted every print)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="compute and count; write nothing"
        )

    def handle(self, *args, **options):
        directory: Path = options["directory"]
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a directory")
        start = parse_instant(options["start"]) if options["start"] else -math.inf
        end = parse_instant(options["end"]) if options["end"] else math.inf
        if start >= end:
            raise CommandError("--from must be before --to")
        grace, window = options["grace"], options["revision_window"]
        if grace < 0 or window < 0:
            raise CommandError("--grace and --revision-window must not be negative")
        warn = lambda text: self.stderr.write(f"⚠️ {text}")  # noqa: E731
        store = None
        if not options["dry_run"]:
            store = Store(Source.REPLAY, replay=True)
        replayer = Replayer(
            store=_Store(store, warn),
            grace=grace,
            revision_window=window,
            symbols=_symbols(options["symbols"]),
            window=(start, end),
            warn=warn,
            conditions=options["conditions"],
        )
        # Late prints for the last seconds arrive up to grace + window later.
        read_until = None if end == math.inf else end + grace + window + 1
        counts = replayer.run(read_entries(directory, None, read_until))
        intervals = replayer.intervals()
        if store is not None and intervals:
            replayer.coverage.store(intervals, None, keep_existing=True)
        self.stdout.write(
            f"frames {counts.frames}, trades {counts.trades}, malformed "
            f"{counts.malformed}, ignored {counts.ignored}, runs {counts.runs}, "
            f"bars {counts.bars}, revisions {counts.revisions}, candles "
            f"{counts.candles}, before start {counts.before_start}, dropped late "
            f"{counts.dropped_late}, 1-minute bars {counts.minutes}, quote bars "
            f"{counts.quotes}, rejected "
            f"{counts.rejected}, coverage intervals {len(intervals)}"
        )
        if options["dry_run"]:
            self.stdout.write("dry run: nothing written")
