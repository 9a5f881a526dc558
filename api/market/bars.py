"""Trades -> time-bucketed bars (1 second, 1 minute, ...: with revisions) and
N-trade candles. Pure.

Each trade comes with its eligibility (api.market.conditions: which parts of a
bar it may update). High and low come from the high/low-eligible prints, open
and close from the last-eligible ones, volume and VWAP from the volume-eligible
ones; the tick count counts every print and `eligible_count` the high/low-
eligible ones. A part no print was eligible for is None (stored as NULL): a bar
never borrows a price from another bar, so what a bar holds depends on its own
prints only and is the same live, revised, across a restart and in a replay.

Both builders are single-threaded: the aggregator thread owns them. Time is passed
in (epoch seconds as floats); nothing here reads a clock.
"""

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from itertools import compress
from operator import mul

from api.market.conditions import EVERY, HIGH_LOW, LAST, VOLUME
from api.market.messages import Trade

# Enough digits that sums of price*size never round: parse_frame bounds every
# value to 20 significant digits, at most 20 after the point, price < 1e9 and
# size < 1e12, so a product spans < 62 digits and a sum of them a few more.
_EXACT = Context(prec=120)
_PERCENT = Decimal("0.000001")
_VWAP = Decimal("0.0000000001")  # the database keeps 10 decimal places
_HUNDRED = Decimal(100)
_ZERO = Decimal(0)

# Masks for itertools.compress: which prints may update a part.
_HIGH_LOW_BIT = HIGH_LOW.__and__
_LAST_BIT = LAST.__and__
_VOLUME_BIT = VOLUME.__and__
_PRICED = HIGH_LOW | LAST

FUTURE_LIMIT = 60.0  # seconds ahead of now beyond which a trade's clock is wrong
MOMENTUM_SPAN = 5  # seconds looked back by price_momentum_5sec


@dataclass(frozen=True, slots=True)
class TimeBar:
    symbol: str
    second: int  # epoch second (UTC) the bar's bucket starts at
    open: Decimal | None  # None: no last-eligible print
    high: Decimal | None  # None: no high/low-eligible print
    low: Decimal | None
    close: Decimal | None
    volume: Decimal
    tick_count: int  # every print
    vwap: Decimal | None  # None when volume is 0
    first_ts_ms: int  # the earliest print's time, eligible or not
    last_ts_ms: int
    price_change_1sec: Decimal | None
    price_momentum_5sec: Decimal | None
    revision: bool
    eligible_count: int  # the prints that were high/low-eligible


@dataclass(frozen=True, slots=True)
class TickCandle:
    symbol: str
    number: int
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal | None
    volume: Decimal
    tick_count: int  # every print: always the candle's size
    first_ts_ms: int
    last_ts_ms: int
    duration_seconds: Decimal
    completed_at_ms: int
    eligible_count: int


class _Bucket:
    """An open bucket's trades as parallel lists, and what an earlier run of the
    collector had aggregated of it (its seed).

    Holding the Decimals and ints rather than the Trades lets each Trade be freed
    at once: thousands of live Trades per second would keep the cyclic garbage
    collector busy (Decimals and ints are not tracked by it).
    """

    __slots__ = ("prices", "sizes", "stamps", "flags", "seed")

    def __init__(self, trade: Trade | None, flags: int = EVERY) -> None:
        if trade is None:
            self.prices, self.sizes, self.stamps, self.flags = [], [], [], []
        else:
            self.prices = [trade.price]
            self.sizes = [trade.size]
            self.stamps = [trade.ts_ms]
            self.flags = [flags]
        self.seed: Partial | None = None


@dataclass(frozen=True, slots=True)
class Partial:
    """What a bucket that was still open when a run stopped held: exact running
    totals, carried to the next run so that its bar goes on from them. A part
    no print was eligible for is None (and so is its time)."""

    open: Decimal | None
    open_ts: int | None
    close: Decimal | None
    close_ts: int | None
    high: Decimal | None
    low: Decimal | None
    volume: Decimal
    pv: Decimal
    count: int
    eligible: int
    first_ts: int
    last_ts: int

    def to_list(self) -> list:
        """Exact, as JSON can hold it (decimals as text, None as null)."""
        return [
            _text(self.open), self.open_ts, _text(self.close), self.close_ts,
            _text(self.high), _text(self.low), str(self.volume), str(self.pv),
            self.count, self.eligible, self.first_ts, self.last_ts,
        ]  # fmt: skip

    @classmethod
    def from_list(cls, values: list) -> "Partial":
        o, o_ts, c, c_ts, h, low, v, pv, n, *rest = values
        if rest:
            eligible, first_ts, last_ts = (int(x) for x in rest)
        else:  # written before the condition rules: every print counted
            eligible, first_ts, last_ts = int(n), int(o_ts), int(c_ts)
        return cls(
            _number(o), _int(o_ts), _number(c), _int(c_ts), _number(h), _number(low),
            Decimal(v), Decimal(pv), int(n), eligible, first_ts, last_ts,
        )  # fmt: skip


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _number(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _int(value) -> int | None:
    return None if value is None else int(value)


class _Acc:
    """A closed bucket's running totals, kept so late trades can be merged."""

    __slots__ = (
        "open",
        "open_ts",
        "close",
        "close_ts",
        "high",
        "low",
        "volume",
        "pv",
        "count",
        "eligible",
        "first_ts",
        "last_ts",
    )

    def __init__(self, bucket: _Bucket) -> None:
        if not bucket.stamps:  # only what an earlier run held
            self._take(bucket.seed)
            return
        flags = bucket.flags
        if flags.count(EVERY) == len(flags):
            self._of(bucket)
        else:
            self._of_ruled(bucket)
        if bucket.seed is not None:
            self._absorb(bucket.seed)

    def _of(self, bucket: _Bucket) -> None:
        """Every print eligible for everything (no codes, or --conditions all)."""
        # C builtins over plain lists: this runs once per trade per second.
        prices, sizes, stamps = bucket.prices, bucket.sizes, bucket.stamps
        first_ts, last_ts = min(stamps), max(stamps)
        # Open is the first arrived of the earliest, close the last arrived of
        # the latest.
        self.open = prices[stamps.index(first_ts)]
        self.close = prices[len(stamps) - 1 - stamps[::-1].index(last_ts)]
        self.open_ts = self.first_ts = first_ts
        self.close_ts = self.last_ts = last_ts
        self.count = self.eligible = len(stamps)
        if self.count == 1:
            self.high = self.low = prices[0]
            self.volume = sizes[0]
            self.pv = _EXACT.multiply(prices[0], sizes[0])
            return
        self.high = max(prices)
        self.low = min(prices)
        with localcontext(_EXACT):
            self.volume = sum(sizes, _ZERO)
            self.pv = sum(map(mul, prices, sizes), _ZERO)

    def _of_ruled(self, bucket: _Bucket) -> None:
        """Each part from the prints eligible for it (the same open/close order
        as _of among the last-eligible prints). C builtins over masks; the
        masks are shared where the bucket's prints allow (usually: regular
        prints and odd lots, which count in volume and set no price)."""
        prices, sizes, stamps, flags = (
            bucket.prices, bucket.sizes, bucket.stamps, bucket.flags,
        )  # fmt: skip
        self.count = len(stamps)
        self.first_ts, self.last_ts = min(stamps), max(stamps)
        kinds = set(flags)
        ranged_mask = list(map(_HIGH_LOW_BIT, flags))
        ranged = list(compress(prices, ranged_mask))
        self.eligible = len(ranged)
        if ranged:
            self.high, self.low = max(ranged), min(ranged)
        else:
            self.high = self.low = None
        if all(k & _PRICED in (0, _PRICED) for k in kinds):
            last_prices, last_mask = ranged, ranged_mask  # the same prints
        else:
            last_mask = list(map(_LAST_BIT, flags))
            last_prices = list(compress(prices, last_mask))
        if last_prices:
            last_stamps = list(compress(stamps, last_mask))
            first_ts, last_ts = min(last_stamps), max(last_stamps)
            self.open = last_prices[last_stamps.index(first_ts)]
            self.close = last_prices[
                len(last_stamps) - 1 - last_stamps[::-1].index(last_ts)
            ]
            self.open_ts, self.close_ts = first_ts, last_ts
        else:
            self.open = self.open_ts = self.close = self.close_ts = None
        with localcontext(_EXACT):
            if all(k & VOLUME for k in kinds):
                self.volume = sum(sizes, _ZERO)
                self.pv = sum(map(mul, prices, sizes), _ZERO)
            else:
                mask = list(map(_VOLUME_BIT, flags))
                counted = list(compress(sizes, mask))
                self.volume = sum(counted, _ZERO)
                self.pv = sum(map(mul, compress(prices, mask), counted), _ZERO)

    def _take(self, seed: "Partial") -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(seed, name))

    def _absorb(self, seed: "Partial") -> None:
        """The earlier run's trades came first: on a time tie, its open wins and
        this run's close does."""
        if seed.open is not None and (
            self.open is None or seed.open_ts <= self.open_ts
        ):
            self.open, self.open_ts = seed.open, seed.open_ts
        if seed.close is not None and (
            self.close is None or seed.close_ts > self.close_ts
        ):
            self.close, self.close_ts = seed.close, seed.close_ts
        if seed.high is not None:
            self.high = seed.high if self.high is None else max(self.high, seed.high)
            self.low = seed.low if self.low is None else min(self.low, seed.low)
        self.volume = _EXACT.add(self.volume, seed.volume)
        self.pv = _EXACT.add(self.pv, seed.pv)
        self.count += seed.count
        self.eligible += seed.eligible
        self.first_ts = min(self.first_ts, seed.first_ts)
        self.last_ts = max(self.last_ts, seed.last_ts)

    def partial(self) -> "Partial":
        return Partial(*(getattr(self, name) for name in self.__slots__))

    def merge(self, trade: Trade, flags: int = EVERY) -> None:
        # The trade arrived after all others: on a ts tie it is not the open but
        # it is the close.
        price, ts = trade.price, trade.ts_ms
        if ts < self.first_ts:
            self.first_ts = ts
        if ts > self.last_ts:
            self.last_ts = ts
        if flags & LAST:
            if self.open is None or ts < self.open_ts:
                self.open, self.open_ts = price, ts
            if self.close is None or ts >= self.close_ts:
                self.close, self.close_ts = price, ts
        if flags & HIGH_LOW:
            self.eligible += 1
            if self.high is None or price > self.high:
                self.high = price
            if self.low is None or price < self.low:
                self.low = price
        if flags & VOLUME:
            self.volume = _EXACT.add(self.volume, trade.size)
            self.pv = _EXACT.add(self.pv, _EXACT.multiply(price, trade.size))
        self.count += 1


class _Kept:
    """One symbol's closed bars still open to revision, by ascending second."""

    __slots__ = ("seconds", "bars", "released")

    def __init__(self) -> None:
        self.seconds: list[int] = []
        self.bars: dict[int, _Acc] = {}
        # (second, close) of the newest bar with a close let go, for
        # price_change_1sec.
        self.released: tuple[int, Decimal] | None = None

    def add(self, second: int, acc: _Acc) -> None:
        if not self.seconds or self.seconds[-1] < second:
            self.seconds.append(second)
        else:
            insort(self.seconds, second)
        self.bars[second] = acc

    def previous_close(self, second: int) -> Decimal | None:
        """The close of the latest earlier bar that has one."""
        seconds, bars = self.seconds, self.bars
        for i in range(bisect_left(seconds, second) - 1, -1, -1):
            close = bars[seconds[i]].close
            if close is not None:
                return close
        if self.released is not None and self.released[0] < second:
            return self.released[1]
        return None

    def momentum_base(self, second: int, span: int) -> Decimal | None:
        """The close of the earliest bar with one, from `span` before `second`."""
        seconds, bars = self.seconds, self.bars
        for i in range(bisect_left(seconds, second - span), len(seconds)):
            if seconds[i] >= second:
                break
            close = bars[seconds[i]].close
            if close is not None:
                return close
        return None


def watermark(now: float, width: int, grace: float) -> float:
    """The smallest bucket start b with b + width + grace > now, checked
    exactly: every bucket below it is closed at `now`."""
    if now == math.inf:
        return math.inf
    if now == -math.inf:
        return -math.inf
    k = math.floor((now - grace) / width)
    while (k - 1) * width + width + grace > now:
        k -= 1
    while k * width + width + grace <= now:
        k += 1
    return k * width


def _percent(new: Decimal | None, old: Decimal | None) -> Decimal | None:
    if new is None or old is None or not old:
        return None
    return _EXACT.quantize(
        _EXACT.multiply(_EXACT.divide(_EXACT.subtract(new, old), old), _HUNDRED),
        _PERCENT,
    )


class TimeBars:
    """Trades -> one bar per (symbol, bucket of `width` seconds of the exchange
    timestamp, aligned to the epoch).

    A bucket closes once the wall clock passes its end plus `grace`. A trade for a
    closed bucket within `revision_window` of its end is merged into the kept bar,
    which is emitted again with revision=True; an older one is dropped and counted.
    """

    def __init__(
        self, grace: float = 2.0, revision_window: float = 300.0, width: int = 1
    ) -> None:
        if grace < 0 or revision_window < 0:
            raise ValueError("grace and revision_window must not be negative")
        if width < 1 or int(width) != width:
            raise ValueError("width must be a whole number of seconds")
        self.grace = grace
        self.revision_window = revision_window
        self.width = int(width)
        self._momentum_span = MOMENTUM_SPAN * self.width
        # Kept a little past the window so a revised bar at its edge still sees
        # the bars its price_change/momentum are computed from.
        self._keep_for = revision_window + (MOMENTUM_SPAN + 1) * self.width
        self._open: dict[str, dict[int, _Bucket]] = {}
        self._n_open = 0
        self._min_open: float = math.inf
        self._closed_below: float = -math.inf  # every bucket below this is closed
        self._kept: dict[str, _Kept] = {}
        self._n_kept = 0
        self._dirty: set[tuple[str, int]] = set()
        self.bars_closed = 0
        self.revisions = 0
        self.late_trades = 0
        self.dropped_too_late = 0
        self.dropped_future = 0

    def add(self, trade: Trade, now: float, flags: int = EVERY) -> None:
        ts = trade.ts_ms
        width = self.width
        second = ts // 1000 if width == 1 else ts // 1000 // width * width
        if second >= self._closed_below:
            if ts > (now + FUTURE_LIMIT) * 1000:
                # A bad exchange clock must not create a bucket that never closes.
                self.dropped_future += 1
                return
            buckets = self._open.get(trade.symbol)
            if buckets is None:
                buckets = self._open[trade.symbol] = {}
            bucket = buckets.get(second)
            if bucket is None:
                buckets[second] = _Bucket(trade, flags)
                self._n_open += 1
                if second < self._min_open:
                    self._min_open = second
            else:
                bucket.prices.append(trade.price)
                bucket.sizes.append(trade.size)
                bucket.stamps.append(ts)
                bucket.flags.append(flags)
            return
        self._add_late(trade, second, now, flags)

    def _add_late(self, trade: Trade, second: int, now: float, flags: int) -> None:
        if now - (second + self.width) > self.revision_window:
            self.dropped_too_late += 1
            return
        kept = self._kept.get(trade.symbol)
        if kept is None:
            kept = self._kept[trade.symbol] = _Kept()
        acc = kept.bars.get(second)
        if acc is None:
            # The second closed without trades: its first bar is still emitted
            # as a revision, since it comes after the second closed.
            kept.add(second, _Acc(_Bucket(trade, flags)))
            self._n_kept += 1
        else:
            acc.merge(trade, flags)
        self._dirty.add((trade.symbol, second))
        self.late_trades += 1

    def close_until(self, now: float) -> list[TimeBar]:
        """Close buckets whose end + grace <= now; then emit pending revisions."""
        if now != now:  # NaN: no answer about time, close nothing
            return []
        watermark = self._watermark(now)
        if watermark > self._closed_below:
            self._closed_below = watermark
        out: list[TimeBar] = []
        if self._min_open < self._closed_below:
            self._close_buckets(out)
        if self._dirty:
            dirty = sorted(self._dirty, key=lambda key: (key[1], key[0]))
            self._dirty.clear()
            for symbol, second in dirty:
                out.append(self._emit(symbol, second, revision=True))
            self.revisions += len(dirty)
        self._release(now)
        return out

    def _watermark(self, now: float) -> float:
        return watermark(now, self.width, self.grace)

    def _close_buckets(self, out: list[TimeBar]) -> None:
        limit = self._closed_below
        closing: list[tuple[int, str, _Bucket]] = []
        min_open = math.inf
        for symbol, buckets in self._open.items():
            for second in [s for s in buckets if s < limit]:
                closing.append((second, symbol, buckets.pop(second)))
            for second in buckets:
                if second < min_open:
                    min_open = second
        self._min_open = min_open
        self._n_open -= len(closing)
        # Ascending seconds, so each bar finds its predecessors already kept.
        closing.sort(key=lambda item: (item[0], item[1]))
        for second, symbol, bucket in closing:
            kept = self._kept.get(symbol)
            if kept is None:
                kept = self._kept[symbol] = _Kept()
            kept.add(second, _Acc(bucket))
            self._n_kept += 1
            out.append(self._emit(symbol, second, revision=False))
        self.bars_closed += len(closing)

    def _emit(self, symbol: str, second: int, revision: bool) -> TimeBar:
        # A revision recomputes only its own change/momentum; later bars keep the
        # values they were emitted with (cascading would rewrite many stored rows
        # for one late print).
        kept = self._kept[symbol]
        acc = kept.bars[second]
        vwap = None
        if acc.volume:
            vwap = _EXACT.quantize(_EXACT.divide(acc.pv, acc.volume), _VWAP)
        return TimeBar(
            symbol=symbol,
            second=second,
            open=acc.open,
            high=acc.high,
            low=acc.low,
            close=acc.close,
            volume=acc.volume,
            tick_count=acc.count,
            vwap=vwap,
            first_ts_ms=acc.first_ts,
            last_ts_ms=acc.last_ts,
            price_change_1sec=_percent(acc.close, kept.previous_close(second)),
            price_momentum_5sec=_percent(
                acc.close, kept.momentum_base(second, self._momentum_span)
            ),
            revision=revision,
            eligible_count=acc.eligible,
        )

    def _release(self, now: float) -> None:
        horizon = now - self._keep_for - 1  # seconds below this are let go
        for kept in self._kept.values():
            seconds = kept.seconds
            if not seconds or seconds[0] >= horizon:
                continue
            n = bisect_left(seconds, horizon)
            for second in reversed(seconds[:n]):
                close = kept.bars[second].close
                if close is not None:
                    kept.released = (second, close)
                    break
            for second in seconds[:n]:
                del kept.bars[second]
            del seconds[:n]
            self._n_kept -= n

    def partials(self, now: float) -> dict[tuple[str, int], Partial]:
        """The buckets that have not ended at `now`, as exact running totals: what
        a stopping run hands to the next (see seed())."""
        return {
            (symbol, start): _Acc(bucket).partial()
            for symbol, buckets in self._open.items()
            for start, bucket in buckets.items()
            if start + self.width > now
        }

    def seed(self, symbol: str, start: int, partial: Partial) -> None:
        """Go on with a bucket an earlier run left open: its bar will hold the
        earlier trades as well as this run's."""
        if start % self.width:
            raise ValueError("a seed must start on a bucket boundary")
        buckets = self._open.setdefault(symbol, {})
        bucket = buckets.get(start)
        if bucket is None:
            bucket = buckets[start] = _Bucket(None)
            self._n_open += 1
            self._min_open = min(self._min_open, start)
        bucket.seed = partial

    def open_seconds(self) -> int:
        return self._n_open

    def retained(self) -> int:
        return self._n_kept


class TickBars:
    """Trades -> one candle per `size` trades of a symbol, in arrival order. Every
    print counts toward the size; each part of the candle comes from the prints
    eligible for it (open/close: the first and last last-eligible print in
    arrival order)."""

    def __init__(self, size: int = 100) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._pending: dict[str, list[Trade]] = {}
        self._flags: dict[str, list[int]] = {}
        self._next: dict[str, int] = {}

    def set_next_number(self, symbol: str, number: int) -> None:
        self._next[symbol] = number

    def next_number(self, symbol: str) -> int:
        """The number the symbol's next completed candle gets."""
        return self._next.get(symbol, 1)

    def symbols(self) -> list[str]:
        """Symbols with a partial candle."""
        return [symbol for symbol, trades in self._pending.items() if trades]

    def add(self, trade: Trade, flags: int = EVERY) -> TickCandle | None:
        symbol = trade.symbol
        trades = self._pending.get(symbol)
        if trades is None:
            trades = self._pending[symbol] = []
            self._flags[symbol] = []
        trades.append(trade)
        marks = self._flags[symbol]
        marks.append(flags)
        if len(trades) < self.size:
            return None
        self._pending[symbol] = []
        self._flags[symbol] = []
        return self._candle(symbol, trades, marks)

    def _candle(self, symbol: str, trades: list[Trade], flags: list[int]) -> TickCandle:
        number = self._next.get(symbol, 1)
        self._next[symbol] = number + 1
        stamps = [t.ts_ms for t in trades]
        if flags.count(EVERY) == len(flags):
            ranged = lasts = [t.price for t in trades]
            counted = trades
        else:
            ranged = [
                t.price for t, f in zip(trades, flags, strict=True) if f & HIGH_LOW
            ]
            lasts = [t.price for t, f in zip(trades, flags, strict=True) if f & LAST]
            counted = [t for t, f in zip(trades, flags, strict=True) if f & VOLUME]
        with localcontext(_EXACT):
            volume = sum([t.size for t in counted], _ZERO)
        first_ts, last_ts = min(stamps), max(stamps)
        return TickCandle(
            symbol=symbol,
            number=number,
            open=lasts[0] if lasts else None,
            high=max(ranged) if ranged else None,
            low=min(ranged) if ranged else None,
            close=lasts[-1] if lasts else None,
            volume=volume,
            tick_count=len(trades),
            first_ts_ms=first_ts,
            last_ts_ms=last_ts,
            duration_seconds=Decimal(last_ts - first_ts).scaleb(-3),
            completed_at_ms=last_ts,
            eligible_count=len(ranged),
        )

    def pending(self, symbol: str) -> list[Trade]:
        return list(self._pending.get(symbol, ()))

    def restore(
        self, symbol: str, trades: list[Trade], flags: list[int] | None = None
    ) -> None:
        """Continue a partial candle (after a restart) from its trades in order,
        with their eligibility (default: every print eligible)."""
        if len(trades) >= self.size:
            raise ValueError("a partial candle holds fewer than size trades")
        if any(trade.symbol != symbol for trade in trades):
            raise ValueError("every restored trade must be of the symbol")
        if flags is None:
            flags = [EVERY] * len(trades)
        if len(flags) != len(trades):
            raise ValueError("one eligibility per restored trade")
        self._pending[symbol] = list(trades)
        self._flags[symbol] = list(flags)

    def pending_count(self) -> int:
        return sum(map(len, self._pending.values()))
