"""What waits to be written: the bars in memory, by kind, and the spool behind
them. Owned by the writer thread (nothing here is shared).

A bar waits under its key (symbol, second or number): a revision replaces its
pending original, last one wins. Keys changed since they were last spooled are
"dirty"; during an outage they are spooled as they arrive, so a crash loses
(almost) nothing. Memory is bounded: past `max_pending` the oldest bars leave
memory - for the spool when there is one, counted and logged when there is not.
"""

import logging
from collections.abc import Callable, Iterator

from api.collector.spool import Spool, SpoolContents
from api.pipeline.kinds import KINDS, BarKind
from api.pipeline.messages import Bars
from api.workers.clock import Clock

logger = logging.getLogger(__name__)

# Which entries a call concerns: (kind, key) -> bool; None: all of them.
Which = Callable[[BarKind, tuple[str, int]], bool] | None

# One entry: (item, new) - new when the row is new to the database (not only a
# revision), for the stats and the commit delays.
Entry = tuple[object, bool]
Chunk = dict[BarKind, list[tuple[tuple[str, int], object, bool]]]


class Backlog:
    def __init__(
        self,
        spool: Spool | None,
        max_pending: int,
        quarantine_lines: Callable[[list[str], str], None],
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.spool = spool
        self.max_pending = max_pending
        self._quarantine_lines = quarantine_lines
        self.pending: dict[BarKind, dict[tuple[str, int], Entry]] = {
            kind: {} for kind in KINDS
        }
        self._dirty: dict[BarKind, set[tuple[str, int]]] = {k: set() for k in KINDS}
        # True when the spool holds rows that are not in memory (left by an
        # earlier run, or evicted from memory during a long outage).
        self.spool_has_more = spool is not None and spool.size > 0
        self.overflow_dropped = 0
        self.spooled = 0  # records appended
        self.spooled_at: float | None = None  # monotonic, last append
        # Since when something waits (monotonic); None: nothing does.
        self.waiting_since: float | None = (
            self.clock.monotonic() if self.spool_has_more else None
        )

    @property
    def waiting(self) -> int:
        return sum(map(len, self.pending.values()))

    @property
    def empty(self) -> bool:
        return not self.waiting and not self.spool_has_more

    def count(self, kind: BarKind) -> int:
        return len(self.pending[kind])

    # Taking bars ----------------------------------------------------------------------

    def add(self, bars: Bars) -> bool:
        """Take a batch; True when it closed new time bars - the moment to flush
        (once a second in a session). Count bars and revisions ride along."""
        if self.waiting_since is None:
            self.waiting_since = self.clock.monotonic()
        fresh = False
        for kind, items in bars.by_kind.items():
            pending, dirty = self.pending[kind], self._dirty[kind]
            for item in items:
                key = kind.key(item)
                revision = kind.is_revision(item)
                fresh = fresh or (kind.timed and not revision)
                waiting = pending.get(key)
                new = not revision or (waiting is not None and waiting[1])
                pending[key] = (item, new)
                dirty.add(key)
        overflow = self.waiting - self.max_pending
        if overflow > 0:
            # Shed a tenth at a time, so a long outage does not sort the whole
            # backlog on every batch.
            self._shed_oldest(max(overflow, self.max_pending // 10))
        return fresh

    def _shed_oldest(self, count: int) -> None:
        if self.spool is not None:
            self.spool_dirty()
        every = [
            (key[1], kind, key)
            for kind, pending in self.pending.items()
            for key in pending
        ]
        every.sort(key=lambda entry: entry[0])
        for _, kind, key in every[:count]:
            del self.pending[kind][key]
        if self.spool is not None:
            self.spool_has_more = True
            return
        self.overflow_dropped += min(count, len(every))
        logger.error(
            "❌ %d bars waiting exceed the limit of %d: dropped the %d oldest "
            "(%d dropped so far)",
            len(every),
            self.max_pending,
            min(count, len(every)),
            self.overflow_dropped,
        )

    # Writing --------------------------------------------------------------------------

    def chunks(self, rows: int, which: Which = None) -> Iterator[Chunk]:
        """What is pending (of `which`), oldest first, in chunks of up to `rows`
        per kind; a snapshot: the backlog may take new bars while the chunks are
        written."""
        ordered = {
            kind: sorted(
                (
                    (key, item, new)
                    for key, (item, new) in pending.items()
                    if which is None or which(kind, key)
                ),
                key=lambda entry: entry[0][1],
            )
            for kind, pending in self.pending.items()
        }
        yield from _chunked(ordered, rows)

    def written(self, chunk: Chunk) -> None:
        """These entries are stored (or quarantined): they stop waiting, unless a
        newer version replaced them meanwhile."""
        for kind, entries in chunk.items():
            pending, dirty = self.pending[kind], self._dirty[kind]
            for key, item, _new in entries:
                if pending.get(key, (None,))[0] is item:
                    del pending[key]
                    dirty.discard(key)

    def all_written(self, started: float) -> None:
        """A flush that began at `started` (monotonic) wrote everything it took."""
        if self.spool is not None and self.spool.size and not self.spool_has_more:
            # Everything spooled is in memory or was replayed: all committed now.
            self.spool.clear()
        if not self.spool_has_more:
            # What still waits came in while the flush ran.
            self.waiting_since = started if self.waiting else None

    # The spool ------------------------------------------------------------------------

    def spool_dirty(self) -> int:
        """Append every pending item changed since it was last spooled."""
        spool = self.spool
        if spool is None or not any(self._dirty.values()):
            return 0
        records = []
        for kind, dirty in self._dirty.items():
            pending = self.pending[kind]
            records += [
                kind.encode(pending[key][0])
                for key in sorted(dirty, key=lambda k: k[1])
                if key in pending
            ]
        spool.append(records)  # OSError: the caller says so; the bars stay dirty
        for dirty in self._dirty.values():
            dirty.clear()
        self.spooled += len(records)
        self.spooled_at = self.clock.monotonic()
        return len(records)

    def load_spool(self) -> SpoolContents:
        """The spool's contents; damaged lines are quarantined and left out of the
        file, once."""
        contents = self.spool.load()
        if contents.damaged:
            self._quarantine_lines(contents.damaged, str(self.spool.path))
            self.spool.replace(contents)
            contents.damaged = []
        return contents

    def replay_chunks(self, rows: int, which: Which = None) -> Iterator[Chunk]:
        """The spool's rows (of `which`: the rest is dropped - another collector
        writes those symbols) that memory does not hold a newer version of,
        oldest first, in chunks. The caller sets `spool_has_more` again if it
        does not write them all; bars evicted meanwhile set it too."""
        contents = self.load_spool()
        self.spool_has_more = False
        ordered = {
            kind: sorted(
                (
                    (key, item, True)
                    for key, item in contents.items[kind].items()
                    if key not in self.pending[kind]
                    and (which is None or which(kind, key))
                ),
                key=lambda entry: entry[0][1],
            )
            for kind in contents.items
        }
        yield from _chunked(ordered, rows)

    # Roles ----------------------------------------------------------------------------

    def keep_recent(self, horizon: float, which: Which = None) -> None:
        """What a standby holds (`which`: the symbols another collector
        writes): the last bars (to fill a takeover's gap), nothing spooled and
        no count bars: its candle numbers mean nothing."""
        for kind, pending in self.pending.items():
            dirty = self._dirty[kind]
            for key in [
                k
                for k in pending
                if (which is None or which(kind, k))
                and (not kind.timed or k[1] < horizon)
            ]:
                del pending[key]
            if which is None:
                dirty.clear()
            else:
                for key in [k for k in dirty if which(kind, k)]:
                    dirty.discard(key)
        if self.empty:
            self.waiting_since = None

    def drop(self, which: Which) -> int:
        """Forget what is pending of `which`; how many were dropped."""
        dropped = 0
        for kind, pending in self.pending.items():
            for key in [k for k in pending if which(kind, k)]:
                del pending[key]
                self._dirty[kind].discard(key)
                dropped += 1
        if self.empty:
            self.waiting_since = None
        return dropped

    def follow(self, floors: dict[BarKind, dict[str, int]], which: Which) -> None:
        """Another collector wrote these (`which`): keep only time bars after
        what it stored (`floors`, per kind and symbol), and none of their count
        bars - in memory and spooled."""

        def keep(kind: BarKind, key: tuple[str, int]) -> bool:
            if not which(kind, key):
                return True
            return kind.timed and key[1] > floors.get(kind, {}).get(key[0], -1)

        for kind, pending in self.pending.items():
            for key in [k for k in pending if not keep(kind, k)]:
                del pending[key]
        if self.spool is not None and self.spool.size:
            contents = self.load_spool()
            for kind, items in contents.items.items():
                contents.items[kind] = {
                    key: item for key, item in items.items() if keep(kind, key)
                }
            self.spool.replace(contents)


def _chunked(ordered: dict[BarKind, list], rows: int) -> Iterator[Chunk]:
    """Chunks of up to `rows` entries per kind, in the lists' order."""
    longest = max(map(len, ordered.values()), default=0)
    for start in range(0, longest, rows):
        yield {
            kind: entries[start : start + rows]
            for kind, entries in ordered.items()
            if entries[start : start + rows]
        }
