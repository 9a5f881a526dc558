"""JSON read endpoints for charts and dashboards.

Time windows are half-open, [start_time, end_time): a bar at exactly end_time is
not included, for both candle endpoints. Without bounds the window is the last
hour; with one bound it is the hour after start_time or before end_time.
"""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from api import resample
from api.models import (
    MinuteSnapshot,
    QuoteSnapshot,
    SecondSnapshot,
    TickCandle100,
    Ticker,
)

_PLUS_LOST = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")
DEFAULT_WINDOW = timedelta(hours=1)
DEFAULT_LIMIT = 10_000
MAX_LIMIT = 50_000


class BadRequest(Exception):
    pass


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _num(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _error(status: int, error: str, message: str) -> JsonResponse:
    return JsonResponse({"error": error, "message": message}, status=status)


def _parse_time(name: str, raw: str | None) -> datetime | None:
    if raw is None or raw == "":
        return None
    # An unescaped "+00:00" in a query string arrives as " 00:00".
    text = _PLUS_LOST.sub(r"\1+\2", raw.strip())
    try:
        value = parse_datetime(text)
    except ValueError:
        value = None
    if value is None:
        raise BadRequest(f"{name}={raw!r} is not an ISO 8601 date-time")
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def _window(params) -> tuple[datetime, datetime]:
    start = _parse_time("start_time", params.get("start_time"))
    end = _parse_time("end_time", params.get("end_time"))
    if start is None and end is None:
        end = timezone.now()
    if start is None:
        start = end - DEFAULT_WINDOW
    if end is None:
        end = start + DEFAULT_WINDOW
    if start >= end:
        raise BadRequest("start_time must be before end_time")
    return start, end


def _limit(params) -> tuple[int, bool]:
    raw = params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT, False
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit={raw!r} is not an integer") from None
    if limit < 1:
        raise BadRequest("limit must be at least 1")
    return min(limit, MAX_LIMIT), limit > MAX_LIMIT


def _query(request):
    """Common parameters: (ticker, start, end, limit, capped) or an error response."""
    symbol = request.GET.get("symbol", "QLD").strip().upper()
    try:
        start, end = _window(request.GET)
        limit, capped = _limit(request.GET)
    except BadRequest as exc:
        return _error(400, "bad_request", str(exc))
    ticker = Ticker.objects.filter(symbol=symbol).first()
    if ticker is None:
        return _error(404, "not_found", f"unknown symbol {symbol!r}")
    return ticker, start, end, limit, capped


def _respond(
    ticker, start, end, limit, capped, timeframe, data, **more
) -> JsonResponse:
    metadata = {
        "count": len(data),
        "start_time": _iso(start),
        "end_time": _iso(end),
        "end_inclusive": False,
        "timeframe": timeframe,
        "limit": limit,
        "max_limit": MAX_LIMIT,
        "limit_capped": capped,
        "truncated": len(data) >= limit,
        **more,
    }
    return JsonResponse({"ticker": ticker.symbol, "data": data, "metadata": metadata})


def _seconds(ticker: Ticker, start: datetime, end: datetime, limit: int, *columns):
    """Columns of the 1-second bars of a window, in time order."""
    window = SecondSnapshot.objects.filter(
        ticker=ticker, timestamp__gte=start, timestamp__lt=end
    )
    return window.order_by("timestamp").values_list(*columns)[:limit]


def _interval(request) -> int | JsonResponse:
    """`interval=` in seconds (1 when absent), or a 400 response."""
    text = request.GET.get("interval", "1s").strip()
    step = resample.INTERVALS.get(text)
    if step is None:
        return _error(
            400,
            "bad_request",
            f"interval {text!r} is not one of {', '.join(resample.INTERVALS)}",
        )
    return step


def _resampled(request, ticker, start, end, limit, capped, step) -> JsonResponse:
    rows, source = resample.resample(ticker, start, end, step, limit)
    data = [
        {
            "timestamp": _iso(ts),
            "open": _num(o),
            "high": _num(h),
            "low": _num(lo),
            "close": _num(c),
            "volume": _num(v),
            "tick_count": n,
            "eligible_count": eligible,
            "vwap": _num(vwap),
            "composite_score": score,
            "bars": bars,
        }
        for ts, o, h, lo, c, v, n, eligible, vwap, score, bars in rows
    ]
    interval = request.GET["interval"].strip()
    return _respond(
        ticker, start, end, limit, capped, interval, data, source=source.label
    )


@require_GET
def second_candles(request) -> JsonResponse:
    """1-second bars; with `interval=` (5s ... 1d) resampled from them, or from
    the 1-minute bars when the interval is whole minutes and they exist
    (api/resample.py)."""
    query = _query(request)
    if isinstance(query, JsonResponse):
        return query
    ticker, start, end, limit, capped = query
    step = _interval(request)
    if isinstance(step, JsonResponse):
        return step
    if step > 1:
        return _resampled(request, ticker, start, end, limit, capped, step)
    rows = _seconds(
        ticker,
        start,
        end,
        limit,
        "timestamp",
        "ohlc_1sec_open",
        "ohlc_1sec_high",
        "ohlc_1sec_low",
        "ohlc_1sec_close",
        "ohlc_1sec_volume",
        "ohlc_1sec_tick_count",
        "ohlc_1sec_eligible_count",
        "composite_score",
        "news_score_cached",
        "technical_score_cached",
    )
    data = [
        {
            "timestamp": _iso(ts),
            "open": _num(o),
            "high": _num(h),
            "low": _num(lo),
            "close": _num(c),
            "volume": _num(v),
            "tick_count": n,
            "eligible_count": eligible,
            "composite_score": comp,
            "news_component": news,
            "technical_component": tech,
        }
        for ts, o, h, lo, c, v, n, eligible, comp, news, tech in rows
    ]
    return _respond(ticker, start, end, limit, capped, "1s", data)


@require_GET
def tick_candles(request) -> JsonResponse:
    query = _query(request)
    if isinstance(query, JsonResponse):
        return query
    ticker, start, end, limit, capped = query
    rows = (
        TickCandle100.objects.filter(
            ticker=ticker, completed_at__gte=start, completed_at__lt=end
        )
        .order_by("completed_at", "candle_number")
        .values_list(
            "completed_at",
            "open",
            "high",
            "low",
            "close",
            "total_volume",
            "candle_number",
            "tick_count",
            "eligible_count",
            "duration_seconds",
            "first_tick_time",
            "last_tick_time",
        )[:limit]
    )
    data = [
        {
            "timestamp": _iso(done),
            "open": _num(o),
            "high": _num(h),
            "low": _num(lo),
            "close": _num(c),
            "volume": _num(v),
            "candle_number": number,
            "tick_count": count,
            "eligible_count": eligible,
            "duration_seconds": _num(duration),
            "first_tick_time": _iso(first),
            "last_tick_time": _iso(last),
        }
        for done, o, h, lo, c, v, number, count, eligible, duration, first, last in rows
    ]
    return _respond(ticker, start, end, limit, capped, "100t", data)


@require_GET
def minute_candles(request) -> JsonResponse:
    """1-minute bars (built live from the same trades as the 1-second bars), by
    the start of their UTC minute; the composite score is the one at the close."""
    query = _query(request)
    if isinstance(query, JsonResponse):
        return query
    ticker, start, end, limit, capped = query
    rows = (
        MinuteSnapshot.objects.filter(
            ticker=ticker, timestamp__gte=start, timestamp__lt=end
        )
        .order_by("timestamp")
        .values_list(
            "timestamp",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "tick_count",
            "eligible_count",
            "vwap",
            "composite_score",
        )[:limit]
    )
    data = [
        {
            "timestamp": _iso(ts),
            "open": _num(o),
            "high": _num(h),
            "low": _num(lo),
            "close": _num(c),
            "volume": _num(v),
            "tick_count": n,
            "eligible_count": eligible,
            "vwap": _num(vwap),
            "composite_score": comp,
        }
        for ts, o, h, lo, c, v, n, eligible, vwap, comp in rows
    ]
    return _respond(ticker, start, end, limit, capped, "1m", data)


_QUOTE_PRICES = (
    "bid", "ask", "bid_size", "ask_size", "best_bid", "worst_bid", "best_ask",
    "worst_ask", "mid_open", "mid_high", "mid_low", "mid_close", "spread_mean",
)  # fmt: skip
_QUOTE_COUNTS = ("quote_count", "crossed_count", "locked_count", "zero_size_count")


@require_GET
def quote_candles(request) -> JsonResponse:
    """1-second quote bars (--feed us-quote or forex): the quote at the second's
    close, the best and worst of the second, mid-price OHLC, the mean quoted
    spread and counts; prices are null when every quote was crossed."""
    query = _query(request)
    if isinstance(query, JsonResponse):
        return query
    ticker, start, end, limit, capped = query
    rows = (
        QuoteSnapshot.objects.filter(
            ticker=ticker, timestamp__gte=start, timestamp__lt=end
        )
        .order_by("timestamp")
        .values_list("timestamp", *_QUOTE_PRICES, *_QUOTE_COUNTS)[:limit]
    )
    data = []
    for ts, *values in rows:
        item = {"timestamp": _iso(ts)}
        item.update(zip(_QUOTE_PRICES, map(_num, values), strict=False))
        item.update(zip(_QUOTE_COUNTS, values[len(_QUOTE_PRICES) :], strict=True))
        bid, ask = values[0], values[1]  # exact, for the difference
        item["spread_close"] = None if bid is None else _num(ask - bid)
        # The chart draws the mid-price as candles.
        item.update(
            open=item["mid_open"],
            high=item["mid_high"],
            low=item["mid_low"],
            close=item["mid_close"],
        )
        data.append(item)
    return _respond(ticker, start, end, limit, capped, "1s-quote", data)


@require_GET
def realtime_sentiment(request) -> JsonResponse:
    query = _query(request)
    if isinstance(query, JsonResponse):
        return query
    ticker, start, end, limit, capped = query
    rows = _seconds(
        ticker,
        start,
        end,
        limit,
        "timestamp",
        "ohlc_1sec_close",
        "composite_score",
        "news_score_cached",
        "technical_score_cached",
        "flow_score_cached",
    )
    data = [
        {
            "timestamp": _iso(ts),
            "close": _num(close),
            "composite_score": comp,
            "news_component": news,
            "technical_component": tech,
            "flow_component": flow,
        }
        for ts, close, comp, news, tech, flow in rows
    ]
    return _respond(ticker, start, end, limit, capped, "1s", data)


@require_GET
def health(request) -> JsonResponse:
    """Last stored 1-second bar per symbol and its age: a collector heartbeat."""
    now = timezone.now()
    symbols = {}
    for ticker in Ticker.objects.order_by("symbol"):
        # One index probe per ticker on (ticker, timestamp), not a scan of the table.
        last = (
            SecondSnapshot.objects.filter(ticker=ticker)
            .order_by("-timestamp")
            .values_list("timestamp", flat=True)
            .first()
        )
        if last is not None:
            symbols[ticker.symbol] = {
                "last_bar": _iso(last),
                "age_seconds": round((now - last).total_seconds(), 3),
            }
    return JsonResponse({"now": _iso(now), "symbols": symbols})


CHART_RANGES = [
    ("5m", "last 5 minutes"),
    ("15m", "last 15 minutes"),
    ("1h", "last hour"),
    ("6h", "last 6 hours"),
    ("1d", "last day"),
    ("custom", "custom (UTC)"),
]


@staff_member_required
def chart(request) -> HttpResponse:
    """Candles, volume and sentiment for one symbol; refreshes itself while live."""
    tickers = list(Ticker.objects.order_by("symbol").values_list("symbol", flat=True))
    symbol = request.GET.get("symbol", "").upper()
    if symbol not in tickers:
        symbol = "QLD" if "QLD" in tickers else (tickers[0] if tickers else "")
    range_ = request.GET.get("range", "15m")
    if range_ not in dict(CHART_RANGES):
        range_ = "15m"
    kind = request.GET.get("kind", "second")
    if kind not in ("second", "tick", "quote"):
        kind = "second"
    context = {
        "tickers": tickers,
        "symbol": symbol,
        "kind": kind,
        "ranges": CHART_RANGES,
        "range": range_,
        "start": request.GET.get("start", ""),
        "end": request.GET.get("end", ""),
        "live": request.GET.get("live", "1") != "0",
    }
    return render(request, "api/chart.html", context)
