"""State carried from one run to the next, so a restart continues as if the
process had never stopped: the partially filled 100-trade bars (their trades),
and the buckets wider than a second that were still open (their running totals:
a minute that spans the restart holds the trades of both runs)."""

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from api.market.bars import Partial, TickBars
from api.market.messages import Trade
from api.pipeline.kinds import BY_NAME, TICK100, BarKind

logger = logging.getLogger(__name__)

FILENAME = "partial_candles.json"

Seeds = dict[BarKind, dict[tuple[str, int], Partial]]


@dataclass
class Carried:
    """What a clean stop left for the next run."""

    # symbol -> (the candle number the trades belong to, the trades)
    candles: dict[str, tuple[int, list[Trade]]] = field(default_factory=dict)
    seeds: Seeds = field(default_factory=dict)


def save_partial_state(
    directory: Path,
    ticks: TickBars | None,
    seeds: Seeds,
    keep: Callable[[BarKind, str], bool] | None = None,
) -> str:
    """Write it atomically (only what `keep` says: the symbols this collector
    writes); returns what was saved, for the log."""
    keep = keep or (lambda kind, symbol: True)
    symbols = {}
    for symbol in ticks.symbols() if ticks is not None else ():
        if not keep(TICK100, symbol):
            continue
        trades = ticks.pending(symbol)
        symbols[symbol] = {
            "next": ticks.next_number(symbol),
            "trades": [
                [str(t.price), str(t.size), t.ts_ms, list(t.conditions)] for t in trades
            ],
        }
    bars = {
        kind.name: [
            [symbol, start, *p.to_list()]
            for (symbol, start), p in got.items()
            if keep(kind, symbol)
        ]
        for kind, got in seeds.items()
    }
    path = Path(directory) / FILENAME
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": 2, "symbols": symbols, "bars": bars}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    trades = sum(len(entry["trades"]) for entry in symbols.values())
    return f"{trades} trades of partial 100-trade bars, " + (
        ", ".join(f"{len(v)} open {BY_NAME[k].label} bars" for k, v in bars.items())
        or "no open wider bars"
    )


def _trade(symbol: str, price, size, ts, conditions=()) -> Trade:
    """A saved trade; its condition codes (saved since the rules) let the next run
    judge it by its rules."""
    return Trade(
        symbol, Decimal(price), Decimal(size), int(ts), tuple(map(int, conditions))
    )


def load_partial_state(directory: Path) -> Carried:
    """What the last clean stop saved; the file is consumed so the same trades
    can never be counted twice."""
    path = Path(directory) / FILENAME
    if not path.exists():
        return Carried()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        carried = Carried(
            candles={
                symbol: (
                    int(entry["next"]),
                    [_trade(symbol, *row) for row in entry["trades"]],
                )
                for symbol, entry in data["symbols"].items()
            },
            seeds={
                BY_NAME[name]: {
                    (str(row[0]), int(row[1])): Partial.from_list(row[2:])
                    for row in rows
                }
                for name, rows in data.get("bars", {}).items()  # version 1: none
            },
        )
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        logger.warning("⚠️ %s is damaged (%s); partial bars start afresh", path, exc)
        carried = Carried()
    path.unlink()
    return carried
