"""An independent reference for the bars: brute force over the trades the feed
server says it sent, written without the collector's code.

Trade conditions ("eodhd", the collector's default) follow EODHD's published table
restated here, with the session taken from the exchange_calendars package's NYSE
calendar; "all" counts every print."""

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

import exchange_calendars
import pandas

# EODHD's "Trade Conditions Guidelines": the codes that do NOT update each part
# (regular hours / extended hours and any other time). Codes in neither of
# EODHD's lists count as regular sales.
_NO = {
    "high_low": {
        "regular": {2, 7, 12, 13, 15, 16, 20, 21, 37, 52, 53},
        "extended": {2, 7, 15, 16, 20, 21, 37, 52, 53},
    },
    "last": {
        "regular": {2, 5, 7, 10, 12, 13, 15, 16, 20, 21, 22, 29, 33, 37, 52, 53},
        "extended": {2, 5, 7, 10, 15, 16, 20, 21, 22, 29, 33, 37, 52, 53},
    },
    "volume": {"regular": {15, 16, 38}, "extended": {15, 16, 38}},
}


@lru_cache(maxsize=1)
def _nyse():
    return exchange_calendars.get_calendar("XNYS")


@lru_cache(maxsize=4096)
def _session_of_minute(minute: int) -> str:
    at = pandas.Timestamp(datetime.fromtimestamp(minute * 60, tz=UTC))
    calendar = _nyse()
    if not calendar.is_session(at.tz_convert("America/New_York").date()):
        return "extended"
    return "regular" if calendar.is_open_on_minute(at) else "extended"


def allows(trade: dict, part: str, conditions: str = "eodhd") -> bool:
    """May this print (as sent: a frame dict) update this part of a bar?"""
    codes = trade.get("c") or []
    if conditions == "all" or not codes:
        return True
    session = _session_of_minute(int(trade["t"]) // 60_000)
    return not set(codes) & _NO[part][session]


def _num(value) -> Decimal:
    return Decimal(str(value)) if not isinstance(value, str) else Decimal(value)


def _size(trade: dict) -> Decimal:
    return _num(trade["v"] if "v" in trade else trade["q"])


def second_bars(
    trades: list[dict],
    start_second: int = 0,
    width: int = 1,
    conditions: str = "eodhd",
) -> dict:
    """{(symbol, bucket start): (open, high, low, close, volume, count)} for
    buckets of `width` seconds; trades stamped before `start_second` left out.
    A price no print was eligible for is None."""
    groups: dict[tuple[str, int], list[tuple[int, int, dict]]] = defaultdict(list)
    for arrival, trade in enumerate(trades):
        second = int(trade["t"]) // 1000
        if second >= start_second:
            bucket = second // width * width
            groups[(trade["s"], bucket)].append((int(trade["t"]), arrival, trade))
    bars = {}
    for key, items in groups.items():
        items.sort(key=lambda item: (item[0], item[1]))
        ranged = [_num(t["p"]) for *_, t in items if allows(t, "high_low", conditions)]
        lasts = [_num(t["p"]) for *_, t in items if allows(t, "last", conditions)]
        bars[key] = (
            lasts[0] if lasts else None,
            max(ranged) if ranged else None,
            min(ranged) if ranged else None,
            lasts[-1] if lasts else None,
            sum(
                (_size(t) for *_, t in items if allows(t, "volume", conditions)),
                Decimal(0),
            ),
            len(items),
        )
    return bars


def tick_candles(
    trades: list[dict],
    size: int = 100,
    first_number: int = 1,
    conditions: str = "eodhd",
) -> dict:
    """{(symbol, number): (open, high, low, close, volume, first_ms, last_ms)}:
    every print counts toward the size; prices from the eligible ones."""
    by_symbol: dict[str, list[dict]] = defaultdict(list)
    for trade in trades:
        by_symbol[trade["s"]].append(trade)
    candles = {}
    for symbol, items in by_symbol.items():
        for index in range(len(items) // size):
            chunk = items[index * size : (index + 1) * size]
            ranged = [_num(t["p"]) for t in chunk if allows(t, "high_low", conditions)]
            lasts = [_num(t["p"]) for t in chunk if allows(t, "last", conditions)]
            times = [int(t["t"]) for t in chunk]
            candles[(symbol, first_number + index)] = (
                lasts[0] if lasts else None,
                max(ranged) if ranged else None,
                min(ranged) if ranged else None,
                lasts[-1] if lasts else None,
                sum(
                    (_size(t) for t in chunk if allows(t, "volume", conditions)),
                    Decimal(0),
                ),
                min(times),
                max(times),
            )
    return candles


def stored_second_bars() -> dict:
    from api.models import SecondSnapshot

    rows = SecondSnapshot.objects.select_related("ticker")
    return {
        (row.ticker.symbol, int(row.timestamp.timestamp())): (
            row.ohlc_1sec_open,
            row.ohlc_1sec_high,
            row.ohlc_1sec_low,
            row.ohlc_1sec_close,
            row.ohlc_1sec_volume,
            row.ohlc_1sec_tick_count,
        )
        for row in rows
    }


def minute_bars(
    trades: list[dict], start_second: int = 0, conditions: str = "eodhd"
) -> dict:
    return second_bars(trades, start_second, width=60, conditions=conditions)


def stored_minute_bars() -> dict:
    from api.models import MinuteSnapshot

    rows = MinuteSnapshot.objects.select_related("ticker")
    return {
        (row.ticker.symbol, int(row.timestamp.timestamp())): (
            row.open,
            row.high,
            row.low,
            row.close,
            row.volume,
            row.tick_count,
        )
        for row in rows
    }


def stored_tick_candles() -> dict:
    from api.models import TickCandle100

    rows = TickCandle100.objects.select_related("ticker")
    return {
        (row.ticker.symbol, row.candle_number): (
            row.open,
            row.high,
            row.low,
            row.close,
            row.total_volume,
            round(row.first_tick_time.timestamp() * 1000),
            round(row.last_tick_time.timestamp() * 1000),
        )
        for row in rows
    }


_QUOTE_FIELDS = (
    "bid", "ask", "bid_size", "ask_size", "best_bid", "worst_bid", "best_ask",
    "worst_ask", "mid_open", "mid_high", "mid_low", "mid_close", "spread_mean",
    "quote_count", "crossed_count", "locked_count", "zero_size_count",
)  # fmt: skip


def quote_bars(frames: list[dict], start_second: int = 0) -> dict:
    """{(symbol, second): tuple of _QUOTE_FIELDS} from us-quote frames (ap, bp,
    as, bs) or forex frames (a, b): crossed quotes (bid > ask) are counted and
    set no price; the spread is the mean of ask - bid over the rest."""
    groups: dict[tuple[str, int], list] = defaultdict(list)
    for arrival, frame in enumerate(frames):
        second = int(frame["t"]) // 1000
        if second < start_second:
            continue
        us = "bp" in frame
        bid = _num(frame["bp"] if us else frame["b"])
        ask = _num(frame["ap"] if us else frame["a"])
        bs = _num(frame["bs"]) if us else None
        asz = _num(frame["as"]) if us else None
        groups[(frame["s"], second)].append(
            (int(frame["t"]), arrival, bid, ask, bs, asz)
        )
    bars = {}
    for key, quotes in groups.items():
        good = sorted(q for q in quotes if q[2] <= q[3])
        mids = [(q[2] + q[3]) / 2 for q in good]
        first = good[0] if good else None
        # The close: the latest timestamp, the last arrived on a tie.
        last = max(good, key=lambda q: (q[0], q[1])) if good else None
        spread = None
        if good:
            spread = (sum(q[3] - q[2] for q in good) / len(good)).quantize(
                Decimal("1e-10")
            )
        bars[key] = (
            last[2] if last else None,
            last[3] if last else None,
            last[4] if last else None,
            last[5] if last else None,
            max((q[2] for q in good), default=None),
            min((q[2] for q in good), default=None),
            min((q[3] for q in good), default=None),
            max((q[3] for q in good), default=None),
            (first[2] + first[3]) / 2 if first else None,
            max(mids, default=None),
            min(mids, default=None),
            (last[2] + last[3]) / 2 if last else None,
            spread,
            len(quotes),
            sum(q[2] > q[3] for q in quotes),
            sum(q[2] == q[3] for q in quotes),
            sum(q[4] == 0 or q[5] == 0 for q in quotes),
        )
    return bars


def stored_quote_bars() -> dict:
    from api.models import QuoteSnapshot

    rows = QuoteSnapshot.objects.select_related("ticker")
    return {
        (row.ticker.symbol, int(row.timestamp.timestamp())): tuple(
            getattr(row, name) for name in _QUOTE_FIELDS
        )
        for row in rows
    }
