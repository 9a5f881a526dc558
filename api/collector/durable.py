"""Append-only JSON-lines files that survive crashes: every append is fsync'd, a
record torn by a crash mid-append is never glued to the next one, and a damaged
line is handed back for the caller to keep, never silently lost."""

import json
import os
from collections.abc import Iterable
from pathlib import Path


class AppendFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._tail_checked = False

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def check(self) -> None:
        """Raise OSError now if the file cannot be created, appended to and read."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab+") as fh:
            fh.seek(0)
            fh.read(1)

    def append(self, records: Iterable[dict]) -> int:
        """Append and fsync: once this returns, the records survive a crash.
        Returns the bytes written."""
        data = "".join(_line(r) for r in records).encode("utf-8")
        if not data:
            return 0
        with open(self.path, "ab+") as fh:
            if not self._tail_checked:
                # A crash mid-append leaves a last line without its newline: end
                # it, so the torn record stays alone (and is skipped when read).
                if fh.seek(0, os.SEEK_END) > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        data = b"\n" + data
                self._tail_checked = True
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return len(data)

    def read(self) -> tuple[list[dict], list[str]]:
        """(records, damaged lines): every complete JSON object, and the raw text
        of each line that is not one."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            return [], []
        records, damaged = [], []
        for line in text.split("\n"):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                damaged.append(line)
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                damaged.append(line)
        return records, damaged

    def replace(self, records: Iterable[dict]) -> None:
        """Atomically rewrite the file with `records` (empty: an empty file)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(_line(r) for r in records))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fsync_directory(self.path.parent)
        self._tail_checked = True


def _line(record: dict) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def fsync_directory(directory: Path) -> None:
    """Make a new or renamed name in `directory` itself durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported here: the files' own fsyncs still ran
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
