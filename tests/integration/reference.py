"""An independent reference for the bars: brute force over the trades the feed
server says it sent, written without the collector's code."""

from collections import defaultdict
from decimal import Decimal


def _num(value) -> Decimal:
    return Decimal(str(value)) if not isinstance(value, str) else Decimal(value)


def _size(trade: dict) -> Decimal:
    return _num(trade["v"] if "v" in trade else trade["q"])


def second_bars(trades: list[dict], start_second: int = 0, width: int = 1) -> dict:
    """{(symbol, bucket start): (open, high, low, close, volume, count)} for
    buckets of `width` seconds; trades stamped before `start_second` left out."""
    groups: dict[tuple[str, int], list[tuple[int, int, dict]]] = defaultdict(list)
    for arrival, trade in enumerate(trades):
        second = int(trade["t"]) // 1000
        if second >= start_second:
            bucket = second // width * width
            groups[(trade["s"], bucket)].append((int(trade["t"]), arrival, trade))
    bars = {}
    for key, items in groups.items():
        items.sort(key=lambda item: (item[0], item[1]))
        prices = [_num(t["p"]) for _, _, t in items]
        bars[key] = (
            prices[0],
            max(prices),
            min(prices),
            prices[-1],
            sum((_size(t) for _, _, t in items), Decimal(0)),
            len(items),
        )
    return bars


def tick_candles(trades: list[dict], size: int = 100, first_number: int = 1) -> dict:
    """{(symbol, number): (open, high, low, close, volume, first_ms, last_ms)}"""
    by_symbol: dict[str, list[dict]] = defaultdict(list)
    for trade in trades:
        by_symbol[trade["s"]].append(trade)
    candles = {}
    for symbol, items in by_symbol.items():
        for index in range(len(items) // size):
            chunk = items[index * size : (index + 1) * size]
            prices = [_num(t["p"]) for t in chunk]
            times = [int(t["t"]) for t in chunk]
            candles[(symbol, first_number + index)] = (
                prices[0],
                max(prices),
                min(prices),
                prices[-1],
                sum((_size(t) for t in chunk), Decimal(0)),
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


def minute_bars(trades: list[dict], start_second: int = 0) -> dict:
    return second_bars(trades, start_second, width=60)


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
