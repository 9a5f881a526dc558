"""Bars <-> rows: the columns' limits checked before the database sees a row,
batched idempotent upserts (one statement per kind per write, all of a write in
one transaction on PostgreSQL), and rows the database refuses isolated so that
the rest is stored.

A derived figure that cannot fit its column (a percent change after a glitch
print) is stored as NULL and counted. A bar whose own prices, volume or time
cannot be stored exactly is rejected before any statement. A batch the database
refuses for its data (a permanent error) is bisected down to the rows at fault;
those are handed back as rejected, and everything else is written.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db import DatabaseError, connection, transaction
from django.db.models import OuterRef, Subquery

from api.models import Ticker
from api.pipeline.errors import ErrorKind, LockLost, Unstorable, classify, first_line
from api.pipeline.kinds import KINDS, BarKind, RowContext

MAX_INT = 2**31 - 1  # PostgreSQL integer


class Fence:
    """What the store asks before every statement (see collector.leader)."""

    def holds(self) -> bool:  # pragma: no cover - an interface
        raise NotImplementedError

    def touched(self) -> None:  # pragma: no cover - an interface
        raise NotImplementedError


@dataclass(frozen=True)
class Rejected:
    kind: BarKind
    item: object
    reason: str


@dataclass
class Outcome:
    """What one write did; applied by the caller on its own thread."""

    written: Counter = field(default_factory=Counter)  # kind name -> rows
    statements: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    nulled: Counter = field(default_factory=Counter)  # column -> rows set NULL


def fits(value: Decimal, digits: int, places: int) -> bool:
    """True when a numeric(digits, places) column holds `value` exactly."""
    if not value.is_finite():
        return False
    if value and value.adjusted() >= digits - places:
        return False  # too many integer digits
    exponent = value.as_tuple().exponent
    return exponent >= -places or value == value.quantize(Decimal(1).scaleb(-places))


def _limits(model) -> dict[str, tuple[int, int]]:
    return {
        f.name: (f.max_digits, f.decimal_places)
        for f in model._meta.concrete_fields
        if f.get_internal_type() == "DecimalField"
    }


NOTIFY_CHANNEL = "collector_bars"  # api.stream listens on it


class Store(RowContext):
    """Writes on the calling thread's connection (the database lane's, live).

    `fence` (the writer lock) is checked before every statement: a write can only
    go out on the session that holds the lock. `replay` leaves the columns a
    replay does not know (scores, source) as stored."""

    def __init__(
        self,
        source: str,
        *,
        fence: Fence | None = None,
        replay: bool = False,
        keep_scores: bool = False,
    ) -> None:
        self.source = source
        self.fence = fence
        self.replay = replay
        # A backfill rebuilds prices and volumes but knows no scores: a row's
        # real-time scores stay as stored, its source becomes the backfill's.
        self.keep_scores = keep_scores
        self._ticker_ids: dict[str, int] = {}
        self._limits = {kind.model: _limits(kind.model) for kind in KINDS}
        self._nulled: Counter | None = None

    # Writing ----------------------------------------------------------------------

    def write(self, batch: dict[BarKind, list]) -> Outcome:
        """Upsert every item that can be stored: one statement per kind, more
        only when the database refuses some rows.

        On PostgreSQL a write is one transaction - its upserts and the NOTIFY
        that wakes the web side commit together, one commit per flush however
        many kinds and symbols. When the database refuses a row, that
        transaction is rolled back and the write done again kind by kind, each
        refused batch bisected down to the rows at fault (autocommit)."""
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            try:
                with transaction.atomic():
                    return self._write(batch, bisect=False)
            except DatabaseError as exc:
                # Rolled back: a ticker created in it is gone again.
                self._ticker_ids.clear()
                if classify(exc) is not ErrorKind.PERMANENT:
                    raise
            except BaseException:
                self._ticker_ids.clear()
                raise
        return self._write(batch, bisect=True)

    def _write(self, batch: dict[BarKind, list], bisect: bool) -> Outcome:
        self._look_up_ids(batch)
        out = Outcome()
        self._nulled = out.nulled
        try:
            for kind in KINDS:
                items = batch.get(kind)
                if not items:
                    continue
                rejected = len(out.rejected)
                pairs = []
                for item in items:
                    try:
                        pairs.append((item, kind.to_row(item, self)))
                    except Unstorable as exc:
                        out.rejected.append(Rejected(kind, item, str(exc)))
                if bisect:
                    self._upsert(kind, pairs, out)
                elif pairs:
                    self._statement(kind, [row for _, row in pairs], out)
                out.written[kind.name] += len(items) - (len(out.rejected) - rejected)
            if connection.vendor == "postgresql" and any(out.written.values()):
                # Wake the web side's pushed updates (api/stream.py), wherever it
                # runs: delivered when the bars commit, never before.
                with connection.cursor() as cursor:
                    cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")
                out.statements += 1
        finally:
            self._nulled = None
        return out

    def _upsert(self, kind: BarKind, pairs: list[tuple], out: Outcome) -> None:
        if not pairs:
            return
        try:
            self._statement(kind, [row for _, row in pairs], out)
        except DatabaseError as exc:
            if classify(exc) is not ErrorKind.PERMANENT:
                raise
            self._ticker_ids.clear()  # a deleted ticker fails every row of it
            self._bisect(kind, pairs, out, exc)

    def _bisect(self, kind: BarKind, pairs, out: Outcome, exc) -> None:
        """Split a refused batch until the rows at fault stand alone."""
        if len(pairs) == 1:
            out.rejected.append(Rejected(kind, pairs[0][0], first_line(exc)))
            return
        middle = len(pairs) // 2
        for half in (pairs[:middle], pairs[middle:]):
            try:
                self._statement(kind, [row for _, row in half], out)
            except DatabaseError as error:
                if classify(error) is not ErrorKind.PERMANENT:
                    raise
                self._bisect(kind, half, out, error)

    def _statement(self, kind: BarKind, rows: list, out: Outcome) -> None:
        fence = self.fence
        if fence is not None and not fence.holds():
            raise LockLost("the session holding the writer lock is gone")
        if self.replay:
            fields = kind.replay_fields()
        elif self.keep_scores:
            fields = tuple(
                f for f in kind.fields if f == "source" or f not in kind.keep_on_replay
            )
        else:
            fields = kind.fields
        kind.model.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=kind.unique, update_fields=fields
        )
        out.statements += 1
        if fence is not None:
            fence.touched()

    def _look_up_ids(self, batch: dict[BarKind, list]) -> None:
        """The ticker ids of the batch's new symbols in one statement (a first
        write of 500 symbols is not 500 lookups); ticker_id() creates the rest."""
        known = self._ticker_ids
        missing = {
            (item[0] if kind.timed else item).symbol
            for kind, items in batch.items()
            for item in items
        } - known.keys()
        if len(missing) > 1:
            known.update(
                Ticker.objects.filter(symbol__in=missing).values_list("symbol", "id")
            )

    # RowContext ---------------------------------------------------------------------

    def ticker_id(self, symbol: str) -> int:
        tid = self._ticker_ids.get(symbol)
        if tid is None:
            tid = Ticker.objects.get_or_create(symbol=symbol)[0].pk
            self._ticker_ids[symbol] = tid
        return tid

    def exact(self, model, name: str, value):
        digits, places = self._limits[model][name]
        if value is None or fits(value, digits, places):
            return value
        raise Unstorable(f"{name} {value} does not fit numeric({digits},{places})")

    def derived(self, model, name: str, value):
        digits, places = self._limits[model][name]
        if value is None or fits(value, digits, places):
            return value
        if self._nulled is not None:
            self._nulled[name] += 1
        return None

    def time(self, epoch_seconds: float) -> datetime:
        try:
            return datetime.fromtimestamp(epoch_seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise Unstorable(
                f"time {epoch_seconds!r} is out of range ({exc})"
            ) from None

    def count(self, value: int, minimum: int = 1) -> int:
        if not minimum <= value <= MAX_INT:
            raise Unstorable(f"count {value} is out of range")
        return value


# Reading ----------------------------------------------------------------------------


Tails = dict[str, dict[BarKind, int | None]]


def stored_tails(symbols: list[str]) -> Tails:
    """{symbol: {kind: how far its stored bars go - the last bar's start second,
    or the last number; None when it has none}}. One statement, whatever the
    number of symbols: per ticker and kind, a correlated probe of the unique
    index for its last position (ORDER BY ... DESC LIMIT 1)."""
    probes = {
        kind.name: Subquery(
            kind.model.objects.filter(ticker_id=OuterRef("pk"))
            .order_by(f"-{kind.position}")
            .values(kind.position)[:1]
        )
        for kind in KINDS
    }
    tails: Tails = {}
    rows = (
        Ticker.objects.filter(symbol__in=symbols)
        .annotate(**{f"last_{name}": probe for name, probe in probes.items()})
        .values("symbol", *(f"last_{name}" for name in probes))
    )
    for row in rows:
        tails[row["symbol"]] = {
            kind: (
                None
                if row[f"last_{kind.name}"] is None
                else kind.stored_position(row[f"last_{kind.name}"])
            )
            for kind in KINDS
        }
    return tails


def stored_since(kind: BarKind, symbol: str, after: int | None) -> dict[int, tuple]:
    """The symbol's stored bars of `kind` past position `after`, as comparable
    tuples (see compared())."""
    rows = kind.model.objects.filter(ticker__symbol=symbol)
    if after is not None:
        rows = rows.filter(**{f"{kind.position}__gt": kind.stored_value(after)})
    names = COMPARED[kind.name]
    return {
        kind.stored_position(row[0]): tuple(row[1:])
        for row in rows.values_list(kind.position, *names)
    }


# The columns that tell one collector's bar from another's, per kind.
COMPARED = {
    "second": ("ohlc_1sec_open", "ohlc_1sec_high", "ohlc_1sec_low",
               "ohlc_1sec_close", "ohlc_1sec_volume", "ohlc_1sec_tick_count"),
    "minute": ("open", "high", "low", "close", "volume", "tick_count"),
    "tick100": ("open", "high", "low", "close", "total_volume", "tick_count"),
    "quote": ("bid", "ask", "mid_open", "mid_close", "spread_mean", "quote_count"),
}  # fmt: skip


def compared(kind: BarKind, item) -> tuple:
    """The stored_since() tuple of an item in memory."""
    bar = item[0] if kind.timed else item
    if kind.built_from == "quotes":
        return (
            bar.bid, bar.ask, bar.mid_open, bar.mid_close, bar.spread_mean,
            bar.quote_count,
        )  # fmt: skip
    return (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.tick_count)
