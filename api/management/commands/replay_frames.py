"""python manage.py replay_frames DIR — rebuild bars from a frame journal.

Every frame goes through the live collector's pure code (parse_frame, SecondBars,
TickBars) with the clock it had live: its arrival time. Rows are written with the
writer's idempotent upserts, so replaying over stored rows fills gaps (a SIGKILL,
an outage) and rewrites the others with the values they already hold.

Rules that make a replay reproduce the live run:
- Each start mark (Journal.mark_start) begins a run: fresh builders, 100-trade
  numbering from the mark, only its symbols, and no 1-second bars for seconds
  before the run started (the live aggregator skips them too). The previous run's
  open seconds close at that point, as they did when it stopped.
- Frames before any start mark are replayed with numbering from 1 (a warning says
  so): such candles are only right if the journal starts with the symbol's
  first candle.
- Existing rows keep their sentiment scores and their `source`; rows the replay
  creates get source "replay" and no scores (unknown, never a fake 0).
- --from/--to select the bars written (1-second bars by their second, 100-trade bars
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

from api.collector.journal import Entry, StartMark, read_entries
from api.collector.store import CANDLE_FIELDS, SNAPSHOT_FIELDS, Store
from api.market.bars import SecondBar, SecondBars, TickBars, TickCandle
from api.market.messages import Malformed, Trade, parse_frame
from api.models import Source

logger = logging.getLogger(__name__)

# Columns a replay must not overwrite: it knows no scores, and a stored row keeps
# the source it was first written by.
KEEP = {
    "composite_score",
    "news_score_cached",
    "technical_score_cached",
    "flow_score_cached",
    "source",
}
REPLAY_SNAPSHOT_FIELDS = [name for name in SNAPSHOT_FIELDS if name not in KEEP]
REPLAY_CANDLE_FIELDS = [name for name in CANDLE_FIELDS if name not in KEEP]
CHUNK_ROWS = 5000  # rows held before an upsert: memory stays bounded
TICK_SIZE = 100


@dataclass
class ReplayCounts:
    runs: int = 0
    frames: int = 0
    trades: int = 0
    malformed: int = 0
    ignored: int = 0  # other symbols, quotes, status frames
    before_start: int = 0  # trades for seconds before their run started
    dropped_late: int = 0  # beyond the revision window, as live
    bars: int = 0
    revisions: int = 0
    candles: int = 0


class _Store:
    """Last version of each bar and candle, upserted in chunks (None: dry run).
    Rows the database refuses are reported, never in the way of the others."""

    def __init__(self, store: Store | None, warn: Callable[[str], None]) -> None:
        self.store = store
        self.warn = warn
        self.rejected = 0
        self.bars: dict[tuple[str, int], SecondBar] = {}
        self.candles: dict[tuple[str, int], TickCandle] = {}

    def bar(self, bar: SecondBar) -> None:
        self.bars[(bar.symbol, bar.second)] = bar  # a revision replaces its original
        if len(self.bars) >= CHUNK_ROWS:
            self.flush()

    def candle(self, candle: TickCandle) -> None:
        self.candles[(candle.symbol, candle.number)] = candle
        if len(self.candles) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.store is not None and (self.bars or self.candles):
            outcome = self.store.write(
                [(bar, None) for bar in self.bars.values()], list(self.candles.values())
            )
            for item in outcome.rejected:
                self.rejected += 1
                self.warn(f"not stored ({item.kind}): {item.reason}")
        self.bars.clear()
        self.candles.clear()


class Replayer:
    """Feeds journal entries through the bar builders, one live run at a time."""

    def __init__(
        self,
        *,
        store: _Store,
        grace: float = 2.0,
        revision_window: float = 300.0,
        symbols: set[str] | None = None,
        window: tuple[float, float] = (-math.inf, math.inf),
        warn: Callable[[str], None] = logger.warning,
    ) -> None:
        self.store = store
        self.grace = grace
        self.revision_window = revision_window
        self.symbols = symbols
        self.window = window
        self.warn = warn
        self.counts = ReplayCounts()
        self.seconds: SecondBars | None = None
        self.ticks: TickBars | None = None
        self.wanted: set[str] | None = None
        self.start_ms: float = -math.inf
        self._numbered: dict[str, int] = {}  # highest candle number seen per symbol

    def run(self, entries: Iterable[Entry]) -> ReplayCounts:
        for entry in entries:
            if type(entry) is StartMark:
                self._start(entry)
                continue
            if self.seconds is None:
                self.warn(
                    "the journal starts without a start mark: 100-trade bars are "
                    "numbered from 1"
                )
                self._start(None)
            self._frame(entry.received_at, entry.data)
        self._end_run()
        self.store.flush()
        return self.counts

    def _start(self, mark: StartMark | None) -> None:
        previous = self.ticks
        self._end_run()
        self.counts.runs += 1
        self.seconds = SecondBars(
            grace=self.grace, revision_window=self.revision_window
        )
        self.ticks = TickBars(size=TICK_SIZE)
        if mark is None:
            self.wanted, self.start_ms = self.symbols, -math.inf
            return
        wanted = set(mark.next_candle)
        self.wanted = wanted & self.symbols if self.symbols is not None else wanted
        self.start_ms = math.floor(mark.received_at) * 1000
        for symbol, number in mark.next_candle.items():
            if number <= self._numbered.get(symbol, 0):
                self.warn(
                    f"{symbol}: a run resumed at 100-trade bar #{number} after an "
                    f"earlier run had numbered #{self._numbered[symbol]} (it stopped "
                    "before storing them): the later run's bars win, as live"
                )
            self.ticks.set_next_number(symbol, number)
        for symbol, count in mark.carried.items():
            trades = previous.pending(symbol)[-count:] if previous and count else []
            if len(trades) < count:
                self.warn(
                    f"{symbol}: the run continued a partial 100-trade bar of {count} "
                    f"trades but the journal holds {len(trades)} of them"
                )
            if trades:
                self.ticks.restore(symbol, trades)

    def _end_run(self) -> None:
        if self.seconds is None:
            return
        self._bars(self.seconds.close_until(math.inf))  # as the live run's finish()
        self.counts.dropped_late += self.seconds.dropped_too_late
        self.seconds = None

    def _frame(self, received_at: float, data: bytes) -> None:
        counts = self.counts
        counts.frames += 1
        bars = self.seconds.close_until(received_at)
        if bars:
            self._bars(bars)
        msg = parse_frame(data)
        if type(msg) is Trade:
            wanted = self.wanted
            if wanted is not None and msg.symbol not in wanted:
                counts.ignored += 1
                return
            counts.trades += 1
            if msg.ts_ms >= self.start_ms:
                self.seconds.add(msg, received_at)
            else:
                counts.before_start += 1
            candle = self.ticks.add(msg)
            if candle is not None:
                self._numbered[candle.symbol] = candle.number
                if self.window[0] <= candle.completed_at_ms / 1000 < self.window[1]:
                    counts.candles += 1
                    self.store.candle(candle)
        elif type(msg) is Malformed:
            counts.malformed += 1
        else:
            counts.ignored += 1

    def _bars(self, bars: list[SecondBar]) -> None:
        low, high = self.window
        for bar in bars:
            if low <= bar.second < high:
                if bar.revision:
                    self.counts.revisions += 1
                else:
                    self.counts.bars += 1
                self.store.bar(bar)


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
        parser.add_argument("--grace", type=float, default=2.0)
        parser.add_argument("--revision-window", type=float, default=300.0)
        parser.add_argument("--symbols", help="comma-separated; default: all")
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
            store = Store(
                Source.REPLAY,
                snapshot_fields=REPLAY_SNAPSHOT_FIELDS,
                candle_fields=REPLAY_CANDLE_FIELDS,
            )
        replayer = Replayer(
            store=_Store(store, warn),
            grace=grace,
            revision_window=window,
            symbols=_symbols(options["symbols"]),
            window=(start, end),
            warn=warn,
        )
        # Late prints for the last seconds arrive up to grace + window later.
        read_until = None if end == math.inf else end + grace + window + 1
        counts = replayer.run(read_entries(directory, None, read_until))
        self.stdout.write(
            f"frames {counts.frames}, trades {counts.trades}, malformed "
            f"{counts.malformed}, ignored {counts.ignored}, runs {counts.runs}, "
            f"bars {counts.bars}, revisions {counts.revisions}, candles "
            f"{counts.candles}, before start {counts.before_start}, dropped late "
            f"{counts.dropped_late}"
        )
        if options["dry_run"]:
            self.stdout.write("dry run: nothing written")
