"""State carried from one run to the next: the partially filled 100-trade bars,
so a restart continues them exactly as if the process had never stopped."""

import json
import logging
import os
from decimal import Decimal
from pathlib import Path

from api.market.bars import TickBars
from api.market.messages import Trade

logger = logging.getLogger(__name__)

FILENAME = "partial_candles.json"


def save_partial_candles(directory: Path, ticks: TickBars) -> int:
    """Write every partial candle atomically; returns the number of trades saved."""
    symbols = {}
    for symbol in ticks.symbols():
        trades = ticks.pending(symbol)
        symbols[symbol] = {
            "next": ticks.next_number(symbol),
            "trades": [[str(t.price), str(t.size), t.ts_ms] for t in trades],
        }
    path = Path(directory) / FILENAME
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": 1, "symbols": symbols}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return sum(len(entry["trades"]) for entry in symbols.values())


def load_partial_candles(directory: Path) -> dict[str, tuple[int, list[Trade]]]:
    """{symbol: (the candle number the trades belong to, trades)}; the file is
    consumed so the same trades can never be counted twice."""
    path = Path(directory) / FILENAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        partial = {
            symbol: (
                int(entry["next"]),
                [
                    Trade(symbol, Decimal(p), Decimal(v), int(ts))
                    for p, v, ts in entry["trades"]
                ],
            )
            for symbol, entry in data["symbols"].items()
        }
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        logger.warning("⚠️ %s is damaged (%s); partial candles start afresh", path, exc)
        partial = {}
    path.unlink()
    return partial
