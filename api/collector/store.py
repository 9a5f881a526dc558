"""Bars <-> rows: the columns' limits checked before the database sees a row,
batched idempotent upserts, and rows the database refuses isolated so that the
rest is stored.

A derived figure that cannot fit its column (a percent change after a glitch
print) is stored as NULL and counted. A bar whose own prices, volume or time
cannot be stored exactly is rejected before any statement. A batch the database
refuses for its data (a permanent error) is bisected down to the rows at fault;
those are handed back as rejected, and everything else is written.
"""

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db import DatabaseError
from django.db.models import Max

from api.collector.database import ErrorKind, classify, first_line
from api.collector.leader import LockLost
from api.market.bars import SecondBar, TickCandle
from api.models import SecondSnapshot, TickCandle100, Ticker
from api.sentiment.scoring import Scores

SNAPSHOT_FIELDS = [
    "ohlc_1sec_open",
    "ohlc_1sec_high",
    "ohlc_1sec_low",
    "ohlc_1sec_close",
    "ohlc_1sec_volume",
    "ohlc_1sec_tick_count",
    "vwap",
    "price_momentum_5sec",
    "price_change_1sec",
    "composite_score",
    "news_score_cached",
    "technical_score_cached",
    "flow_score_cached",
    "source",
    "updated_at",
]
CANDLE_FIELDS = [
    "completed_at",
    "open",
    "high",
    "low",
    "close",
    "total_volume",
    "tick_count",
    "first_tick_time",
    "last_tick_time",
    "duration_seconds",
    "source",
]
# Figures derived from the bars: NULL when they cannot fit, never the row's end.
DERIVED = ("vwap", "price_change_1sec", "price_momentum_5sec")
MAX_INT = 2**31 - 1  # PostgreSQL integer


class Unstorable(ValueError):
    """A bar that its columns cannot hold as it is."""


class Fence:
    """What the store asks before every statement (see leader.PostgresLock)."""

    def holds(self) -> bool:  # pragma: no cover - an interface
        raise NotImplementedError

    def touched(self) -> None:  # pragma: no cover - an interface
        raise NotImplementedError


@dataclass(frozen=True)
class Rejected:
    kind: str  # "second" or "tick100"
    item: object  # (SecondBar, Scores | None) or TickCandle
    reason: str


@dataclass
class Outcome:
    """What one write did; applied by the caller on its own thread."""

    bars: int = 0
    candles: int = 0
    statements: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    nulled: Counter = field(default_factory=Counter)  # field -> rows


def _limits(model) -> dict[str, tuple[int, int]]:
    return {
        f.name: (f.max_digits, f.decimal_places)
        for f in model._meta.concrete_fields
        if f.get_internal_type() == "DecimalField"
    }


def fits(value: Decimal, digits: int, places: int) -> bool:
    """True when a numeric(digits, places) column holds `value` exactly."""
    if not value.is_finite():
        return False
    if value and value.adjusted() >= digits - places:
        return False  # too many integer digits
    exponent = value.as_tuple().exponent
    return exponent >= -places or value == value.quantize(Decimal(1).scaleb(-places))


def when(epoch_seconds: float) -> datetime:
    try:
        moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise Unstorable(f"time {epoch_seconds!r} is out of range ({exc})") from None
    return moment


class Store:
    """Writes on the calling thread's connection (the database lane's, live).

    `fence` (the writer lock) is checked before every statement: a write can only
    go out on the session that holds the lock."""

    def __init__(
        self,
        source: str,
        *,
        fence: Fence | None = None,
        snapshot_fields: list[str] = SNAPSHOT_FIELDS,
        candle_fields: list[str] = CANDLE_FIELDS,
    ) -> None:
        self.source = source
        self.fence = fence
        self.snapshot_fields = snapshot_fields
        self.candle_fields = candle_fields
        self._ticker_ids: dict[str, int] = {}
        self._snapshot_limits = _limits(SecondSnapshot)
        self._candle_limits = _limits(TickCandle100)

    # Writing ----------------------------------------------------------------------

    def write(
        self,
        bars: list[tuple[SecondBar, Scores | None]],
        candles: list[TickCandle],
    ) -> Outcome:
        """Upsert every bar and candle that can be stored: one statement per table,
        more only when the database refuses some rows."""
        out = Outcome()
        if bars:
            pairs = self._rows(bars, self._snapshot, "second", out)
            self._upsert(SecondSnapshot, pairs, "second", out)
            out.bars = len(bars) - len(out.rejected)
        if candles:
            rejected = len(out.rejected)
            pairs = self._rows(candles, self._candle, "tick100", out)
            self._upsert(TickCandle100, pairs, "tick100", out)
            out.candles = len(candles) - (len(out.rejected) - rejected)
        return out

    def _rows(self, items, to_row, kind: str, out: Outcome) -> list[tuple]:
        pairs = []
        for item in items:
            try:
                pairs.append((item, to_row(item, out.nulled)))
            except Unstorable as exc:
                out.rejected.append(Rejected(kind, item, str(exc)))
        return pairs

    def _upsert(self, model, pairs: list[tuple], kind: str, out: Outcome) -> None:
        if not pairs:
            return
        try:
            self._statement(model, [row for _, row in pairs], out)
        except DatabaseError as exc:
            if classify(exc) is not ErrorKind.PERMANENT:
                raise
            self._ticker_ids.clear()  # a deleted ticker fails every row of it
            self._bisect(model, pairs, kind, out, exc)

    def _bisect(self, model, pairs, kind: str, out: Outcome, exc) -> None:
        """Split a refused batch until the rows at fault stand alone."""
        if len(pairs) == 1:
            out.rejected.append(Rejected(kind, pairs[0][0], first_line(exc)))
            return
        middle = len(pairs) // 2
        for half in (pairs[:middle], pairs[middle:]):
            try:
                self._statement(model, [row for _, row in half], out)
            except DatabaseError as error:
                if classify(error) is not ErrorKind.PERMANENT:
                    raise
                self._bisect(model, half, kind, out, error)

    def _statement(self, model, rows: list, out: Outcome) -> None:
        fence = self.fence
        if fence is not None and not fence.holds():
            raise LockLost("the session holding the writer lock is gone")
        if model is SecondSnapshot:
            unique, fields = ["ticker", "timestamp"], self.snapshot_fields
        else:
            unique, fields = ["ticker", "candle_number"], self.candle_fields
        model.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=unique, update_fields=fields
        )
        out.statements += 1
        if fence is not None:
            fence.touched()

    # Rows ---------------------------------------------------------------------------

    def ticker_id(self, symbol: str) -> int:
        tid = self._ticker_ids.get(symbol)
        if tid is None:
            tid = Ticker.objects.get_or_create(symbol=symbol)[0].pk
            self._ticker_ids[symbol] = tid
        return tid

    def _checked(self, limits, name: str, value, nulled: Counter | None):
        """The value if its column holds it; a derived one becomes NULL (counted),
        any other makes the bar unstorable."""
        if value is None:
            return None
        digits, places = limits[name]
        if fits(value, digits, places):
            return value
        if name in DERIVED and nulled is not None:
            nulled[name] += 1
            return None
        raise Unstorable(f"{name} {value} does not fit numeric({digits},{places})")

    def _snapshot(
        self, item: tuple[SecondBar, Scores | None], nulled: Counter
    ) -> SecondSnapshot:
        bar, scores = item
        lim, check = self._snapshot_limits, self._checked
        if not 0 < bar.tick_count <= MAX_INT:
            raise Unstorable(f"tick count {bar.tick_count} is out of range")
        return SecondSnapshot(
            ticker_id=self.ticker_id(bar.symbol),
            timestamp=when(bar.second),
            ohlc_1sec_open=check(lim, "ohlc_1sec_open", bar.open, None),
            ohlc_1sec_high=check(lim, "ohlc_1sec_high", bar.high, None),
            ohlc_1sec_low=check(lim, "ohlc_1sec_low", bar.low, None),
            ohlc_1sec_close=check(lim, "ohlc_1sec_close", bar.close, None),
            ohlc_1sec_volume=check(lim, "ohlc_1sec_volume", bar.volume, None),
            ohlc_1sec_tick_count=bar.tick_count,
            vwap=check(lim, "vwap", bar.vwap, nulled),
            price_momentum_5sec=check(
                lim, "price_momentum_5sec", bar.price_momentum_5sec, nulled
            ),
            price_change_1sec=check(
                lim, "price_change_1sec", bar.price_change_1sec, nulled
            ),
            composite_score=_score(scores.composite) if scores else None,
            news_score_cached=_score(scores.news) if scores else None,
            technical_score_cached=_score(scores.technical) if scores else None,
            flow_score_cached=_score(scores.flow) if scores else None,
            source=self.source,
        )

    def _candle(self, candle: TickCandle, nulled: Counter) -> TickCandle100:
        lim, check = self._candle_limits, self._checked
        if not 0 < candle.tick_count <= MAX_INT:
            raise Unstorable(f"tick count {candle.tick_count} is out of range")
        return TickCandle100(
            ticker_id=self.ticker_id(candle.symbol),
            candle_number=candle.number,
            completed_at=when(candle.completed_at_ms / 1000),
            open=check(lim, "open", candle.open, None),
            high=check(lim, "high", candle.high, None),
            low=check(lim, "low", candle.low, None),
            close=check(lim, "close", candle.close, None),
            total_volume=check(lim, "total_volume", candle.volume, None),
            tick_count=candle.tick_count,
            first_tick_time=when(candle.first_ts_ms / 1000),
            last_tick_time=when(candle.last_ts_ms / 1000),
            duration_seconds=check(
                lim, "duration_seconds", Decimal(candle.duration_seconds), None
            ),
            source=self.source,
        )


def stored_tails(symbols: list[str]) -> dict[str, tuple[int | None, int]]:
    """{symbol: (last stored second or None, last stored candle number or 0)};
    per ticker, so each maximum is one index probe."""
    tails = {}
    for ticker in Ticker.objects.filter(symbol__in=symbols):
        last = ticker.second_snapshots.aggregate(t=Max("timestamp"))["t"]
        number = ticker.tick_candles.aggregate(n=Max("candle_number"))["n"]
        tails[ticker.symbol] = (
            None if last is None else int(last.timestamp()),
            number or 0,
        )
    return tails


def stored_candles(symbol: str, after: int) -> dict[int, tuple]:
    """The symbol's stored candles numbered above `after`, as comparable tuples."""
    rows = TickCandle100.objects.filter(
        ticker__symbol=symbol, candle_number__gt=after
    ).values_list("candle_number", "open", "high", "low", "close", "total_volume")
    return {row[0]: tuple(row[1:]) for row in rows}


def candle_key(candle: TickCandle) -> tuple:
    """The stored_candles() tuple of a candle in memory."""
    return (candle.open, candle.high, candle.low, candle.close, candle.volume)


def _score(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
