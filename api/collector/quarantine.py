"""The dead-letter file: bars the database refused for their data, and damaged
spool lines, kept exactly with the reason - loudly, counted, never silently lost,
and never in the way of the rows behind them."""

import logging
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from api.collector.durable import AppendFile
from api.pipeline.store import Rejected

logger = logging.getLogger(__name__)

FILENAME = "quarantine.jsonl"
MAX_LINE = 10_000  # characters of a damaged line kept


class Quarantine:
    """Without a directory the records go to the log line itself."""

    def __init__(self, directory: Path | None) -> None:
        self.file = AppendFile(Path(directory) / FILENAME) if directory else None
        self.counts: Counter = Counter()  # kind -> records

    def rows(self, rejected: list[Rejected]) -> None:
        records = []
        for item in rejected:
            kind = item.kind
            symbol, position = kind.key(item.item)
            records.append(
                self._entry(kind.name, item.reason, record=kind.encode(item.item))
            )
            logger.error(
                "☣️ quarantined a %s bar of %s (%s %s): %s",
                kind.label,
                symbol,
                "at" if kind.timed else "#",
                position,
                item.reason,
                extra={"symbol": symbol, "kind": kind.name, "reason": item.reason},
            )
        self._keep(records)

    def lines(self, damaged: list[str], source: str) -> None:
        records = [
            self._entry("damaged", f"unreadable line of {source}", line=line[:MAX_LINE])
            for line in damaged
        ]
        if records:
            logger.error(
                "☣️ quarantined %d damaged lines of %s; the rest is kept",
                len(records),
                source,
            )
        self._keep(records)

    def _entry(self, kind: str, reason: str, **payload) -> dict:
        self.counts[kind] += 1
        at = datetime.fromtimestamp(time.time(), tz=UTC).isoformat()
        return {"at": at, "kind": kind, "reason": reason, **payload}

    def _keep(self, records: list[dict]) -> None:
        if not records:
            return
        if self.file is None:
            for record in records:
                logger.error(
                    "☣️ no spool directory: the quarantined record is %s", record
                )
            return
        try:
            self.file.append(records)
        except OSError as exc:
            logger.error(
                "❌ cannot write the quarantine file %s (%s); the records are %s",
                self.file.path,
                exc,
                records,
            )
