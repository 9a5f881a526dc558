"""The frame journal: every raw frame with its arrival time, for replay_frames.

Files are gzip-compressed JSON lines named by the UTC hour they start,
`frames-2026-11-29T14.jsonl.gz` (`frames-2026-11-29T14-2.jsonl.gz` when a later run
starts within the same hour: a file is only ever written by the run that created it,
so a tail truncated by a crash is never followed by another run's records).
One line per record:

    {"r": 1795960800.123, "f": "<frame text>"}     a frame that is valid UTF-8
    {"r": 1795960800.123, "b": "<base64>"}         any other bytes, kept exactly
    {"r": 1795960800.0, "meta": {"next_candle": {"AAPL": 57}, "carried": {}}}

The meta record is written by mark_start() when a collector run starts: the
100-trade numbering each subscribed symbol resumes from, so a replay numbers its
candles exactly as that run did.

Cost on the hot path: record() appends to a deque and nothing else. Frames are
encoded and compressed in batches, one gzip member per flush, by a background
thread every `flush_interval` seconds (or by flush() itself).

Durability: each flush hands its member to the operating system, so a crashed or
SIGKILLed process loses at most the last `flush_interval` of frames. fsync runs
only on rotation and close: a power loss or kernel crash may lose what was
flushed since the last fsync (up to one file). A member cut short by a crash is
read up to its last complete record, with a warning.
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
    """A collector run started: where each symbol's 100-trade numbering resumed."""

    received_at: float
    next_candle: dict[str, int]
    carried: dict[str, int] = field(default_factory=dict)


Entry = Frame | StartMark


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
    ) -> None:
        """Note that a collector run starts. Call it before the first frame, with
        the numbers the aggregator resumes from (keys: the subscribed symbols),
        `received_at` = the aggregator's start_second, and `carried` = trades per
        symbol of a partial candle restored from the previous run."""
        at = self.clock() if received_at is None else received_at
        mark = StartMark(at, dict(next_numbers), dict(carried or {}))
        self._buffer.append((at, mark))

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
        _fsync_directory(self.directory)  # make the new name itself durable
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


def _encode(received_at: float, item: bytes | str | StartMark) -> bytes:
    if type(item) is StartMark:
        meta = {"next_candle": item.next_candle, "carried": item.carried}
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


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows): the file fsyncs still run
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    """Complete lines of every gzip member; a damaged tail is skipped with a
    warning."""
    decoder = zlib.decompressobj(wbits=31)
    pending = b""  # a line cut by a chunk boundary
    in_member = False
    with open(path, "rb") as file:
        while True:
            chunk = file.read(READ_CHUNK)
            if not chunk:
                break
            data = chunk
            while data:
                in_member = True
                try:
                    out = decoder.decompress(data)
                except zlib.error as exc:
                    logger.warning(
                        "⚠️ %s is damaged (%s): skipped the rest of the file",
                        path,
                        exc,
                    )
                    return
                lines = (pending + out).split(b"\n")
                pending = lines.pop()
                yield from lines
                if decoder.eof:
                    # A member ends where a flush ended, so on a whole line.
                    data = decoder.unused_data
                    decoder = zlib.decompressobj(wbits=31)
                    in_member = False
                else:
                    data = b""
    if in_member:
        # Truncated by a crash: the lines before the cut are genuine.
        logger.warning(
            "⚠️ %s ends in a truncated record (a crash mid-write): read up to the "
            "last complete one",
            path,
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
        meta = obj["meta"]
        return StartMark(
            received_at,
            {str(k): int(v) for k, v in meta["next_candle"].items()},
            {str(k): int(v) for k, v in meta.get("carried", {}).items()},
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        logger.warning("⚠️ %s: skipped an unreadable record %.80r", path, line)
        return None
