"""Quotes -> 1-second quote bars (US quotes and forex alike). Pure.

A quote bar says what the market quoted during one second of the quotes' own
timestamps:

- bid, ask and their sizes at the second's close (the latest quote by
  timestamp, the last arrived on a tie);
- the best and worst bid and ask of the second (highest/lowest bid, lowest/
  highest ask);
- mid-price open/high/low/close (mid = (bid + ask) / 2, exact);
- the mean quoted spread: the average of ask - bid over the second's quotes.
  A time-weighted spread would need every quote of a second kept until the
  revision window passes; the mean is exact, mergeable, and so the same live,
  revised by a late quote, and replayed;
- the quote count, and how many were crossed (bid > ask), locked (bid == ask)
  or had a zero size.

A crossed quote is no market anyone could trade at: it is counted and takes no
part in the prices or the spread (a bar of crossed quotes only has NULL prices).
A locked quote is a real, zero-spread market and counts. Zero sizes are counted;
the quote's prices count.

Time works as for trade bars (api.market.bars.TimeBars): a second closes `grace`
after it ends; a later quote within `revision_window` revises its bar.
"""

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from decimal import Context, Decimal

from api.market.bars import FUTURE_LIMIT, watermark
from api.market.messages import Quote

_EXACT = Context(prec=120)
_PLACES = Decimal("0.0000000001")  # the database keeps 10 decimal places
_TWO = Decimal(2)


@dataclass(frozen=True, slots=True)
class QuoteBar:
    symbol: str
    second: int
    bid: Decimal | None  # at the close
    ask: Decimal | None
    bid_size: Decimal | None  # None: the feed sends no sizes (forex)
    ask_size: Decimal | None
    best_bid: Decimal | None
    worst_bid: Decimal | None
    best_ask: Decimal | None
    worst_ask: Decimal | None
    mid_open: Decimal | None
    mid_high: Decimal | None
    mid_low: Decimal | None
    mid_close: Decimal | None
    spread_mean: Decimal | None
    quote_count: int
    crossed_count: int
    locked_count: int
    zero_size_count: int
    first_ts_ms: int
    last_ts_ms: int
    revision: bool


class _Acc:
    """One second's running figures; quotes are folded in as they come."""

    __slots__ = (
        "count", "crossed", "locked", "zero", "first_ts", "last_ts",
        "valid", "open_ts", "mid_open", "close_ts", "close",
        "best_bid", "worst_bid", "best_ask", "worst_ask", "mid_high", "mid_low",
        "spread_sum",
    )  # fmt: skip

    def __init__(self, quote: Quote) -> None:
        self.count = self.crossed = self.locked = self.zero = self.valid = 0
        self.first_ts = self.last_ts = quote.ts_ms
        self.open_ts = self.close_ts = None
        self.close: Quote | None = None
        self.mid_open = self.mid_high = self.mid_low = None
        self.best_bid = self.worst_bid = self.best_ask = self.worst_ask = None
        self.spread_sum = Decimal(0)
        self.add(quote)

    def add(self, quote: Quote) -> None:
        """Fold in a quote that arrived after every quote already in."""
        bid, ask, ts = quote.bid, quote.ask, quote.ts_ms
        self.count += 1
        if ts < self.first_ts:
            self.first_ts = ts
        if ts > self.last_ts:
            self.last_ts = ts
        if quote.bid_size == 0 or quote.ask_size == 0:
            self.zero += 1
        if bid > ask:
            self.crossed += 1
            return
        if bid == ask:
            self.locked += 1
        mid = _EXACT.divide(_EXACT.add(bid, ask), _TWO)
        self.valid += 1
        self.spread_sum = _EXACT.add(self.spread_sum, _EXACT.subtract(ask, bid))
        if self.open_ts is None or ts < self.open_ts:
            self.open_ts, self.mid_open = ts, mid
        if self.close_ts is None or ts >= self.close_ts:
            self.close_ts, self.close = ts, quote
        if self.valid == 1:
            self.best_bid = self.worst_bid = bid
            self.best_ask = self.worst_ask = ask
            self.mid_high = self.mid_low = mid
            return
        if bid > self.best_bid:
            self.best_bid = bid
        elif bid < self.worst_bid:
            self.worst_bid = bid
        if ask < self.best_ask:
            self.best_ask = ask
        elif ask > self.worst_ask:
            self.worst_ask = ask
        if mid > self.mid_high:
            self.mid_high = mid
        elif mid < self.mid_low:
            self.mid_low = mid

    def bar(self, symbol: str, second: int, revision: bool) -> QuoteBar:
        close = self.close
        spread = None
        if self.valid:
            spread = _EXACT.quantize(
                _EXACT.divide(self.spread_sum, Decimal(self.valid)), _PLACES
            )
        return QuoteBar(
            symbol=symbol,
            second=second,
            bid=close.bid if close else None,
            ask=close.ask if close else None,
            bid_size=close.bid_size if close else None,
            ask_size=close.ask_size if close else None,
            best_bid=self.best_bid,
            worst_bid=self.worst_bid,
            best_ask=self.best_ask,
            worst_ask=self.worst_ask,
            mid_open=self.mid_open,
            mid_high=self.mid_high,
            mid_low=self.mid_low,
            mid_close=(
                _EXACT.divide(_EXACT.add(close.bid, close.ask), _TWO) if close else None
            ),
            spread_mean=spread,
            quote_count=self.count,
            crossed_count=self.crossed,
            locked_count=self.locked,
            zero_size_count=self.zero,
            first_ts_ms=self.first_ts,
            last_ts_ms=self.last_ts,
            revision=revision,
        )


class QuoteBars:
    """Quotes -> one bar per (symbol, second of the quote's timestamp)."""

    width = 1

    def __init__(self, grace: float = 2.0, revision_window: float = 300.0) -> None:
        if grace < 0 or revision_window < 0:
            raise ValueError("grace and revision_window must not be negative")
        self.grace = grace
        self.revision_window = revision_window
        self._open: dict[tuple[str, int], _Acc] = {}
        self._min_open: float = math.inf
        self._closed_below: float = -math.inf
        # Closed seconds still open to revision: key -> figures; the seconds
        # kept (ascending) and their symbols, for letting them go.
        self._kept: dict[tuple[str, int], _Acc] = {}
        self._kept_seconds: list[int] = []
        self._kept_symbols: dict[int, list[str]] = {}
        self._dirty: set[tuple[str, int]] = set()
        self.bars_closed = 0
        self.revisions = 0
        self.late_trades = 0  # late quotes (named as the trade builders' counter)
        self.dropped_too_late = 0
        self.dropped_future = 0

    def add(self, quote: Quote, now: float, flags: int = 0) -> None:
        second = quote.ts_ms // 1000
        key = (quote.symbol, second)
        if second >= self._closed_below:
            if quote.ts_ms > (now + FUTURE_LIMIT) * 1000:
                self.dropped_future += 1
                return
            acc = self._open.get(key)
            if acc is None:
                self._open[key] = _Acc(quote)
                if second < self._min_open:
                    self._min_open = second
            else:
                acc.add(quote)
            return
        if now - (second + 1) > self.revision_window:
            self.dropped_too_late += 1
            return
        acc = self._kept.get(key)
        if acc is None:
            self._keep(key, _Acc(quote))
        else:
            acc.add(quote)
        self._dirty.add(key)
        self.late_trades += 1

    def _keep(self, key: tuple[str, int], acc: _Acc) -> None:
        self._kept[key] = acc
        symbol, second = key
        symbols = self._kept_symbols.get(second)
        if symbols is None:
            symbols = self._kept_symbols[second] = []
            seconds = self._kept_seconds
            if not seconds or seconds[-1] < second:
                seconds.append(second)
            else:
                insort(seconds, second)
        symbols.append(symbol)

    def close_until(self, now: float) -> list[QuoteBar]:
        if now != now:
            return []
        mark = watermark(now, 1, self.grace)
        if mark > self._closed_below:
            self._closed_below = mark
        out: list[QuoteBar] = []
        if self._min_open < self._closed_below:
            closing = sorted(
                (key for key in self._open if key[1] < self._closed_below),
                key=lambda key: (key[1], key[0]),
            )
            for key in closing:
                acc = self._open.pop(key)
                self._keep(key, acc)
                out.append(acc.bar(key[0], key[1], revision=False))
            self._min_open = min((key[1] for key in self._open), default=math.inf)
            self.bars_closed += len(closing)
        if self._dirty:
            for key in sorted(self._dirty, key=lambda key: (key[1], key[0])):
                out.append(self._kept[key].bar(key[0], key[1], revision=True))
            self.revisions += len(self._dirty)
            self._dirty.clear()
        self._release(now)
        return out

    def _release(self, now: float) -> None:
        horizon = now - self.revision_window - 2  # closed and past any revision
        seconds = self._kept_seconds
        if not seconds or seconds[0] >= horizon:
            return
        n = bisect_left(seconds, horizon)
        for second in seconds[:n]:
            for symbol in self._kept_symbols.pop(second):
                del self._kept[(symbol, second)]
        del seconds[:n]

    def open_seconds(self) -> int:
        return len(self._open)

    def retained(self) -> int:
        return len(self._kept)
