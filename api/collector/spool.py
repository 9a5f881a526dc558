"""The durable spool: bars the database could not take, kept on local disk until
it can.

An append-only JSON-lines file, fsync'd after every append, so a crash or a
SIGKILL loses nothing that was spooled. Records are replayed oldest first; the
last record of a key wins (a revision supersedes its original). A truncated or
garbled line, as a crash mid-write can leave, is skipped with a warning.
"""

import json
import logging
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from api.market.bars import SecondBar, TickCandle
from api.sentiment.scoring import Scores

logger = logging.getLogger(__name__)


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def encode_bar(bar: SecondBar, scores: Scores | None) -> dict:
    return {
        "k": "s",
        "sym": bar.symbol,
        "sec": bar.second,
        "o": str(bar.open),
        "h": str(bar.high),
        "l": str(bar.low),
        "c": str(bar.close),
        "v": str(bar.volume),
        "n": bar.tick_count,
        "vw": _dec(bar.vwap),
        "t0": bar.first_ts_ms,
        "t1": bar.last_ts_ms,
        "pc": _dec(bar.price_change_1sec),
        "pm": _dec(bar.price_momentum_5sec),
        "r": bar.revision,
        "sc": None
        if scores is None
        else [
            scores.composite,
            scores.news,
            scores.technical,
            scores.flow,
            scores.computed_at,
        ],
    }


def decode_bar(rec: dict) -> tuple[SecondBar, Scores | None]:
    bar = SecondBar(
        symbol=rec["sym"],
        second=int(rec["sec"]),
        open=Decimal(rec["o"]),
        high=Decimal(rec["h"]),
        low=Decimal(rec["l"]),
        close=Decimal(rec["c"]),
        volume=Decimal(rec["v"]),
        tick_count=int(rec["n"]),
        vwap=_undec(rec["vw"]),
        first_ts_ms=int(rec["t0"]),
        last_ts_ms=int(rec["t1"]),
        price_change_1sec=_undec(rec["pc"]),
        price_momentum_5sec=_undec(rec["pm"]),
        revision=bool(rec["r"]),
    )
    sc = rec.get("sc")
    scores = None if sc is None else Scores(*sc[:4], computed_at=sc[4])
    return bar, scores


def encode_candle(candle: TickCandle) -> dict:
    return {
        "k": "t",
        "sym": candle.symbol,
        "num": candle.number,
        "o": str(candle.open),
        "h": str(candle.high),
        "l": str(candle.low),
        "c": str(candle.close),
        "v": str(candle.volume),
        "n": candle.tick_count,
        "t0": candle.first_ts_ms,
        "t1": candle.last_ts_ms,
        "d": str(candle.duration_seconds),
        "done": candle.completed_at_ms,
    }


def decode_candle(rec: dict) -> TickCandle:
    return TickCandle(
        symbol=rec["sym"],
        number=int(rec["num"]),
        open=Decimal(rec["o"]),
        high=Decimal(rec["h"]),
        low=Decimal(rec["l"]),
        close=Decimal(rec["c"]),
        volume=Decimal(rec["v"]),
        tick_count=int(rec["n"]),
        first_ts_ms=int(rec["t0"]),
        last_ts_ms=int(rec["t1"]),
        duration_seconds=Decimal(rec["d"]),
        completed_at_ms=int(rec["done"]),
    )


@dataclass
class SpoolContents:
    bars: dict[tuple[str, int], tuple[SecondBar, Scores | None]]
    candles: dict[tuple[str, int], TickCandle]
    bad_lines: int

    def __len__(self) -> int:
        return len(self.bars) + len(self.candles)


class Spool:
    def __init__(self, directory: Path, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "spool.jsonl"
        self.max_bytes = max_bytes
        self.dropped = 0  # records dropped past the cap (newest are kept)
        self._warned_full = False
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, records: list[dict]) -> None:
        """Append and fsync: once this returns, the records survive a crash."""
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
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
        """Everything spooled, the last record per key winning."""
        bars: dict = {}
        candles: dict = {}
        bad = 0
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().split("\n")
        except FileNotFoundError:
            return SpoolContents(bars, candles, 0)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if rec["k"] == "s":
                    bar, scores = decode_bar(rec)
                    bars[(bar.symbol, bar.second)] = (bar, scores)
                elif rec["k"] == "t":
                    candle = decode_candle(rec)
                    candles[(candle.symbol, candle.number)] = candle
                else:
                    raise ValueError(f"unknown kind {rec['k']!r}")
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                bad += 1
                logger.warning(
                    "⚠️ spool line %d is damaged (%s); skipped, the rest is kept",
                    number,
                    exc,
                )
        return SpoolContents(bars, candles, bad)

    def clear(self) -> None:
        """Everything spooled is committed: start empty."""
        if self.path.exists():
            with open(self.path, "w", encoding="utf-8") as fh:
                fh.flush()
                os.fsync(fh.fileno())
        self._warned_full = False

    def _enforce_cap(self) -> None:
        """Past the cap: keep the newest records that fit, count what was dropped."""
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            lines = [line for line in fh.read().split("\n") if line.strip()]
        kept: list[str] = []
        budget = int(self.max_bytes * 0.9)  # leave room so we don't rewrite at once
        for line in reversed(lines):
            budget -= len(line.encode()) + 1
            if budget < 0:
                break
            kept.append(line)
        kept.reverse()
        dropped = len(lines) - len(kept)
        self.dropped += dropped
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in kept))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        logger.error(
            "❌ the spool reached its cap of %.0f MB: dropped the %d oldest records "
            "(%d dropped so far); the newest are kept",
            self.max_bytes / 1e6,
            dropped,
            self.dropped,
        )
