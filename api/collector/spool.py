"""The durable spool: bars the database could not take, kept on local disk until
it can - and the collector's local home between runs.

An append-only JSON-lines file, fsync'd after every append, so a crash or a
SIGKILL loses nothing that was spooled; each record is one bar, encoded by its
kind (pipeline.kinds). Records are replayed oldest first; the
last record of a key wins (a revision supersedes its original). A truncated or
garbled line, as a crash mid-write can leave, is handed back as damaged (the
writer quarantines it) and never stops the rest.

The directory belongs to one collector at a time (an flock on `.lock`), which
also keeps the collector's identity (`identity`): it survives restarts, so a
restarted collector recognises database sessions its predecessor left behind.
"""

import fcntl
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from api.collector.durable import AppendFile
from api.pipeline.kinds import BY_CODE, KINDS, BarKind

logger = logging.getLogger(__name__)


@dataclass
class SpoolContents:
    """What a spool holds: {kind: {key: item}} (the last record of a key wins),
    and the raw text of every damaged line."""

    items: dict[BarKind, dict[tuple[str, int], object]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    damaged: list[str] = field(default_factory=list)

    @property
    def bad_lines(self) -> int:
        return len(self.damaged)

    def __len__(self) -> int:
        return sum(map(len, self.items.values()))


class SpoolUnusable(Exception):
    """The spool directory cannot be used; the message is one readable line."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "spool.jsonl"
        self.max_bytes = max_bytes
        self.dropped = 0  # records dropped past the cap (newest are kept)
        self._file = AppendFile(self.path)
        self._warned_full = False
        self._lock_fd: int | None = None

    @property
    def size(self) -> int:
        return self._file.size

    def claim(self) -> str:
        """Make the directory this process's own, check that the spool can be
        written and read, and return the collector's identity. Raises
        SpoolUnusable with one line otherwise."""
        where = self.directory
        try:
            where.mkdir(parents=True, exist_ok=True)
            fd = os.open(where / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SpoolUnusable(
                f"the spool directory {where} cannot be used: {exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise SpoolUnusable(
                f"the spool directory {where} is in use by another collector "
                f"(pid {other or '?'}): give each collector its own --spool-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        try:
            self._file.check()
            return self._identity()
        except OSError as exc:
            self.release()
            raise SpoolUnusable(
                f"the spool {self.path} cannot be used: {exc}"
            ) from None

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _identity(self) -> str:
        path = self.directory / "identity"
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        if len(text) == 16 and all(c in "0123456789abcdef" for c in text):
            return text
        text = secrets.token_hex(8)
        path.write_text(text + "\n", encoding="utf-8")
        return text

    def append(self, records: list[dict]) -> None:
        """Append and fsync: once this returns, the records survive a crash."""
        if not records:
            return
        self._file.append(records)
        size = self.size
        if size > self.max_bytes:
            self._enforce_cap()
        elif size > 0.8 * self.max_bytes and not self._warned_full:
            self._warned_full = True
            logger.warning(
                "⚠️ the spool holds %.0f MB, %.0f%% of its %.0f MB cap; past the cap "
                "the oldest bars are dropped",
                size / 1e6,
                100 * size / self.max_bytes,
                self.max_bytes / 1e6,
            )

    def load(self) -> SpoolContents:
        """Everything spooled, the last record per key winning; damaged lines
        (torn, garbled, or not a record) are handed back as they are."""
        records, damaged = self._file.read()
        contents = SpoolContents(damaged=damaged)
        for record in records:
            try:
                kind = BY_CODE[record["k"]]
                item = kind.decode(record)
                contents.items[kind][kind.key(item)] = item
            except (ValueError, KeyError, TypeError, ArithmeticError):
                damaged.append(json.dumps(record))
        if damaged:
            logger.warning(
                "⚠️ the spool %s holds %d damaged lines; the rest is kept",
                self.path,
                len(damaged),
            )
        return contents

    def replace(self, contents: SpoolContents) -> None:
        """Rewrite the spool with exactly `contents` (damaged lines left out)."""
        self._file.replace(
            kind.encode(item)
            for kind, items in contents.items.items()
            for _, item in sorted(items.items(), key=lambda kv: kv[0][1])
        )

    def clear(self) -> None:
        """Everything spooled is committed: start empty."""
        if self.path.exists():
            self._file.replace([])
        self._warned_full = False

    def _enforce_cap(self) -> None:
        """Past the cap: keep the newest records that fit, count what was dropped."""
        records, _damaged = self._file.read()
        kept: list[dict] = []
        budget = int(self.max_bytes * 0.9)  # leave room so we don't rewrite at once
        for record in reversed(records):
            budget -= len(json.dumps(record, separators=(",", ":"))) + 1
            if budget < 0:
                break
            kept.append(record)
        kept.reverse()
        dropped = len(records) - len(kept)
        self.dropped += dropped
        self._file.replace(kept)
        logger.error(
            "❌ the spool reached its cap of %.0f MB: dropped the %d oldest records "
            "(%d dropped so far); the newest are kept",
            self.max_bytes / 1e6,
            dropped,
            self.dropped,
        )
