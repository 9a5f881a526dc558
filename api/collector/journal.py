"""The frame journal: every raw frame with its arrival time, for replay_frames.

Files are gzip-compressed JSON lines named by the UTC hour they start,
`frames-2026-11-29T14.jsonl.gz` (`frames-2026-11-29T14-2.jsonl.gz` when a later run
starts within the same hour: a file is only ever written by the run that created it,
so a tail truncated by a crash is never followed by another run's records).
One line per record:

    {"r": 1795960800.123, "f": "<frame text>"}     a frame that is valid UTF-8
    {"r": 1795960800.123, "b": "<base64>"}         any other bytes, kept exactly
    {"r": 1795960800.0, "meta": {"next_candle": {"AAPL": 57}, "carried": {},
                                  "conditions": "eodhd"}}
    {"r": 1795960800.2, "watch": {"stream": "us", "symbols": ["AAPL"],
                                   "ending": false, "reason": "",
                                   "collector": "host:123:1795960790"}}

A watch record says a subscription began or ended (coverage): a replay stores
the same coverage intervals.

The meta record is written by mark_start() when a collector run starts: the
100-trade numbering each subscribed symbol resumes from, so a replay numbers its
candles exactly as that run did, and the trade-condition rules the run applied
(a mark without them was written before the rules existed: every print counted).

Cost on the hot path: record() appends to a deque and nothing else. Frames are
encoded and compressed in batches, one gzip member per flush, by a background
thread every `flush_interval` seconds (or by flush() itself).

Durability: each flush hands its member to the operating system, so a crashed or
SIGKILLed process loses at most the last `flush_interval` of frames. fsync runs
only on rotation and close: a power loss or kernel crash may lose what was
flushed since the last fsync (up to one file). A member cut short by a crash is
read up to its last complete record, with a warning.

Damage: a member that zlib rejects (changed bytes: a bad code, header or
checksum) is skipped with one warning, and reading resumes at the next gzip member
header after its start, so the rest of the file is still read. The file is read
in chunks of READ_CHUNK, and lines are handed out as each chunk decompresses:
those of a damaged member are withheld only if the damage shows up in the same
chunk (a member smaller than a chunk is checked whole; a longer one may already
have given lines, possibly altered ones, before its checksum fails).
"""

import base64
import logging
import math
import os
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from api.collector.durable import fsync_directory

logger = logging.getLogger(__name__)

PREFIX = "frames-"
SUFFIX = ".jsonl.gz"
_NAME = re.compile(
    r"^frames-(\d{4}-\d\d-\d\dT\d\d(?:-\d\d-\d\d)?)(?:-(\d+))?\.jsonl\.gz$"
)
READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Frame:
    received_at: float
    data: bytes


@dataclass(frozen=True, slots=True)
class StartMark:
    """A collector run started: where each symbol's 100-trade numbering resumed,
    how many trades of a partial 100-trade bar it continued, and the open wider
    buckets it went on from ({kind name: [[symbol, start, *Partial.to_list()]]})."""

    received_at: float
    next_candle: dict[str, int]
    carried: dict[str, int] = field(default_factory=dict)
    seeds: dict[str, list] = field(default_factory=dict)
    conditions: str = "all"  # the run's --conditions; "all" before the rules
    # The EODHD streams the run collected; trades ("us") before quote streams.
    streams: list[str] = field(default_factory=lambda: ["us"])


@dataclass(frozen=True, slots=True)
class WatchMark:
    """A receiver's subscription began or ended (coverage: api/collector/coverage.py),
    with the collector that observed, so a replay stores the same intervals."""

    received_at: float
    stream: str
    symbols: tuple[str, ...]
    ending: bool
    reason: str
    collector: str


Entry = Frame | StartMark | WatchMark


@dataclass
class JournalStats:
    """Written by whichever thread flushes (under the journal's lock)."""

    records: int = 0
    flushes: int = 0
    bytes_written: int = 0
    files: int = 0
    lost: int = 0  # records a failed write could not store
    last_error: str | None = None


class Journal:
    def __init__(
        self,
        directory: Path,
        *,
        rotate_seconds: float = 3600,
        clock: Callable[[], float] = time.time,
        flush_interval: float | None = 1.0,
        flush_records: int = 50_000,
        compresslevel: int = 6,
    ) -> None:
        if rotate_seconds <= 0:
            raise ValueError("rotate_seconds must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rotate_seconds = rotate_seconds
        self.clock = clock
        self.flush_records = flush_records
        self.compresslevel = compresslevel
        self.stats = JournalStats()
        # deque.append and popleft are atomic: the receiver never takes a lock.
        self._buffer: deque = deque()
        self._lock = threading.Lock()
        self._file = None
        self._path: Path | None = None
        self._period: float = -math.inf
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_interval is not None:
            self._thread = threading.Thread(
                target=self._flush_loop,
                args=(flush_interval,),
                name="journal",
                daemon=True,
            )
            self._thread.start()

    # Any thread -----------------------------------------------------------------

    def record(self, data: bytes, received_at: float) -> None:
        """Keep one frame. Cheap: no encoding, no syscall."""
        buffer = self._buffer
        buffer.append((received_at, data))
        if len(buffer) >= self.flush_records:
            if self._thread is None:
                self.flush()
            elif not self._wake.is_set():
                self._wake.set()

    def mark_start(
        self,
        next_numbers: dict[str, int],
        received_at: float | None = None,
        carried: dict[str, int] | None = None,
        seeds: dict | None = None,
        conditions: str = "eodhd",
        streams: list[str] | None = None,
    ) -> None:
        """Note that a collector run starts. Call it before the first frame, with
        the numbers the aggregator resumes from (keys: the subscribed symbols),
        `received_at` = the aggregator's start_second, `carried` = trades per
        symbol of a partial candle restored from the previous run, and `seeds` =
        the open wider buckets it goes on from ({kind: {(symbol, start):
        Partial}}), `conditions` = the run's trade-condition rules, `streams`
        = the EODHD streams it collected (what a replay builds)."""
        at = self.clock() if received_at is None else received_at
        raw = {
            kind.name: [[s, start, *p.to_list()] for (s, start), p in got.items()]
            for kind, got in (seeds or {}).items()
            if got
        }
        mark = StartMark(
            at,
            dict(next_numbers),
            dict(carried or {}),
            raw,
            conditions,
            list(streams or ["us"]),
        )
        self._buffer.append((at, mark))

    def mark_watch(self, watch, collector: str) -> None:
        """Note a `Watch` (api.pipeline.messages): a subscription began or ended."""
        mark = WatchMark(
            watch.at,
            watch.stream,
            tuple(watch.symbols),
            watch.ending,
            watch.reason,
            collector,
        )
        self._buffer.append((watch.at, mark))

    def flush(self) -> None:
        """Encode, compress and write what is buffered as one gzip member per file."""
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        """Stop the background flusher, write everything, fsync and close."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        with self._lock:
            self._flush_locked()
            self._close_file()

    # Internals ------------------------------------------------------------------

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the journal must never take the collector down
                logger.exception("❌ journal flush failed")

    def _flush_locked(self) -> None:
        buffer = self._buffer
        count = len(buffer)
        if not count:
            return
        lines: list[bytes] = []
        period = self._period
        for _ in range(count):
            received_at, item = buffer.popleft()
            at_period = self._period_of(received_at)
            if at_period > period:  # rotation only moves forward in time
                if lines:
                    self._write(period, lines)
                    lines = []
                period = at_period
            lines.append(_encode(received_at, item))
        self._write(period, lines)

    def _period_of(self, received_at: float) -> float:
        if not math.isfinite(received_at):
            received_at = self.clock()  # a broken stamp must not pick the file
        return math.floor(received_at / self.rotate_seconds) * self.rotate_seconds

    def _write(self, period: float, lines: list[bytes]) -> None:
        lines.append(b"")  # every record ends with a newline
        payload = b"\n".join(lines)
        member = zlib.compress(payload, self.compresslevel, wbits=31)
        try:
            if self._file is None or period > self._period:
                self._open(period)
            self._file.write(member)
            self._file.flush()  # to the OS: survives a crash of this process
        except OSError as exc:
            self.stats.lost += len(lines) - 1
            self.stats.last_error = str(exc)
            logger.error(
                "❌ journal write to %s failed (%s): %d records lost",
                self._path,
                exc,
                len(lines) - 1,
            )
            self._close_file(quiet=True)  # the next flush starts a new file
            return
        self.stats.records += len(lines) - 1
        self.stats.flushes += 1
        self.stats.bytes_written += len(member)

    def _open(self, period: float) -> None:
        self._close_file()
        stamp = _stamp(period, self.rotate_seconds)
        part = 1
        while True:
            suffix = "" if part == 1 else f"-{part}"
            path = self.directory / f"{PREFIX}{stamp}{suffix}{SUFFIX}"
            try:
                # "x": never append to a file another run may have left truncated.
                self._file = open(path, "xb")
                break
            except FileExistsError:
                part += 1
        self._path = path
        self._period = period
        self.stats.files += 1
        fsync_directory(self.directory)  # make the new name itself durable
        logger.info("📼 journal file %s", path)

    def _close_file(self, quiet: bool = False) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            if not quiet:
                logger.error("❌ journal close of %s failed: %s", self._path, exc)
        self._file = None


def _encode(received_at: float, item: bytes | str | StartMark | WatchMark) -> bytes:
    if type(item) is WatchMark:
        watch = {
            "stream": item.stream,
            "symbols": list(item.symbols),
            "ending": item.ending,
            "reason": item.reason,
            "collector": item.collector,
        }
        return orjson.dumps({"r": received_at, "watch": watch})
    if type(item) is StartMark:
        meta = {
            "next_candle": item.next_candle,
            "carried": item.carried,
            "conditions": item.conditions,
            "streams": item.streams,
        }
        if item.seeds:
            meta["seeds"] = item.seeds
        return orjson.dumps({"r": received_at, "meta": meta})
    if type(item) is str:
        return orjson.dumps({"r": received_at, "f": item})
    data = bytes(item)
    try:
        return orjson.dumps({"r": received_at, "f": data.decode("utf-8")})
    except UnicodeDecodeError:
        return orjson.dumps({"r": received_at, "b": base64.b64encode(data).decode()})


def _stamp(period: float, rotate_seconds: float) -> str:
    start = datetime.fromtimestamp(period, tz=UTC)
    if rotate_seconds % 3600 == 0:
        return start.strftime("%Y-%m-%dT%H")
    return start.strftime("%Y-%m-%dT%H-%M-%S")


# Reading ------------------------------------------------------------------------


def journal_files(directory: Path) -> list[Path]:
    """The journal's files in the order they were written."""
    found = []
    for path in Path(directory).iterdir():
        match = _NAME.match(path.name)
        if match:
            stamp, part = match.group(1), int(match.group(2) or 1)
            start = datetime.strptime(
                stamp, "%Y-%m-%dT%H-%M-%S" if len(stamp) > 13 else "%Y-%m-%dT%H"
            )
            found.append((start, part, path))
    found.sort()
    return [path for _, _, path in found]


def read_entries(
    directory: Path, start: float | None = None, end: float | None = None
) -> Iterator[Entry]:
    """Frames and start marks in journal order, with start <= received_at <= end."""
    low = -math.inf if start is None else start
    high = math.inf if end is None else end
    for path in journal_files(directory):
        for line in _lines(path):
            entry = _decode(line, path)
            if entry is not None and low <= entry.received_at <= high:
                yield entry


def read_journal(
    directory: Path, start: float | None = None, end: float | None = None
) -> Iterator[tuple[float, bytes]]:
    """(received_at, frame) in journal order, with start <= received_at <= end."""
    for entry in read_entries(directory, start, end):
        if type(entry) is Frame:
            yield entry.received_at, entry.data


def _lines(path: Path) -> Iterator[bytes]:
    """Complete lines of every gzip member. A member cut short at the end of the
    file gives its lines up to the cut; a damaged one is skipped up to the next
    member header. Both with a warning."""
    decoder = zlib.decompressobj(wbits=31)
    started = False  # the decoder has been given some of its member
    start = 0  # where the member being decoded starts in the file
    pending = b""  # a line cut by a chunk boundary
    damaged: tuple[int, str] | None = None  # a damaged region not yet reported
    # The chunk being decoded, where it starts in the file, and how far it has
    # been given to decoders. The file is always read up to the chunk's end.
    chunk, chunk_at, pos = b"", 0, 0
    with open(path, "rb") as file:
        while True:
            if pos >= len(chunk):
                chunk_at += len(chunk)
                chunk, pos = file.read(READ_CHUNK), 0
                if not chunk:
                    break
            started = True
            try:
                out = decoder.decompress(memoryview(chunk)[pos:] if pos else chunk)
            except zlib.error as exc:
                # A bad code, header or checksum: whatever the member still
                # holds back is suspect, and its bytes may hide the next header.
                if damaged is None:
                    damaged = (start, str(exc))
                found = _next_member(file, start + 1, chunk, chunk_at)
                if found is None:
                    logger.warning(
                        "⚠️ %s: a damaged gzip member at byte %d (%s); no intact "
                        "member after it",
                        path,
                        *damaged,
                    )
                    return
                start, chunk, chunk_at = found
                pos = start - chunk_at
                decoder = zlib.decompressobj(wbits=31)
                started, pending = False, b""
                continue
            lines = (pending + out).split(b"\n")
            pending = lines.pop()
            yield from lines
            if decoder.eof:
                if damaged is not None:
                    _skipped(path, damaged, start)
                    damaged = None
                # A member ends where a flush ended, so on a whole line.
                pos = len(chunk) - len(decoder.unused_data)
                start = chunk_at + pos
                decoder = zlib.decompressobj(wbits=31)
                started = False
            else:
                pos = len(chunk)
    if damaged is not None:
        _skipped(path, damaged, start)
    if started:
        # Truncated by a crash: the lines before the cut are genuine.
        logger.warning(
            "⚠️ %s ends in a truncated record (a crash mid-write): read up to the "
            "last complete one",
            path,
        )


_MAGIC = b"\x1f\x8b\x08"  # a gzip member: ID1, ID2, CM = deflate


def _next_member(
    file, at: int, chunk: bytes, chunk_at: int
) -> tuple[int, bytes, int] | None:
    """The first plausible gzip member header at or after byte `at` of the file:
    its offset, and a chunk holding it with the chunk's offset, the file read up to
    the chunk's end. `chunk` (at `chunk_at`) is what the file was read up to."""
    if at < chunk_at:  # the damaged member started in an earlier chunk
        file.seek(at)
        chunk, chunk_at = b"", at
    find = at - chunk_at
    while True:
        hit = chunk.find(_MAGIC, find)
        while 0 <= hit < len(chunk) - 3:  # with the flags byte after it
            if not chunk[hit + 3] & 0xE0:  # the reserved flags must be clear
                return chunk_at + hit, chunk, chunk_at
            hit = chunk.find(_MAGIC, hit + 1)
        more = file.read(READ_CHUNK)
        if not more:
            return None
        # Keep the last 3 bytes unsearched so far: a header may straddle chunks.
        keep = max(find, len(chunk) - 3)
        chunk, chunk_at, find = chunk[keep:] + more, chunk_at + keep, 0


def _skipped(path: Path, damaged: tuple[int, str], resumed_at: int) -> None:
    logger.warning(
        "⚠️ %s: a damaged gzip member at byte %d (%s); skipped to the next member "
        "at byte %d",
        path,
        *damaged,
        resumed_at,
    )


def _decode(line: bytes, path: Path) -> Entry | None:
    if not line:
        return None
    try:
        obj = orjson.loads(line)
        received_at = float(obj["r"])
        if "f" in obj:
            return Frame(received_at, obj["f"].encode("utf-8"))
        if "b" in obj:
            return Frame(received_at, base64.b64decode(obj["b"], validate=True))
        if "watch" in obj:
            w = obj["watch"]
            return WatchMark(
                received_at,
                str(w["stream"]),
                tuple(str(s) for s in w["symbols"]),
                bool(w["ending"]),
                str(w.get("reason", "")),
                str(w.get("collector", "")),
            )
        meta = obj["meta"]
        return StartMark(
            received_at,
            {str(k): int(v) for k, v in meta["next_candle"].items()},
            {str(k): int(v) for k, v in meta.get("carried", {}).items()},
            {str(k): list(v) for k, v in meta.get("seeds", {}).items()},
            str(meta.get("conditions", "all")),
            [str(s) for s in meta.get("streams", ["us"])],
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        logger.warning("⚠️ %s: skipped an unreadable record %.80r", path, line)
        return None
