"""The read API's views (the parameters and series: api/readapi.py) and the
chart page.

Every bar endpoint answers GET and HEAD with `{"ticker", "data", "metadata"}`
(or CSV with format=csv); a bad parameter is a 400 `{"error", "message"}`, an
unknown symbol a 404. Windows are half-open, [start_time, end_time).
"""

import csv
import hashlib
import io
import queue
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Q
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from api import openapi, readapi, resample
from api import stream as push
from api.models import SecondSnapshot, Ticker
from api.readapi import MAX_LIMIT, BadRequest, Query, Series  # noqa: F401

# A window that ended this long ago no longer changes live (grace + revision
# window, with a margin): its responses may be cached.
SETTLED_AFTER = timedelta(minutes=10)


def _iso(value: datetime | None) -> str | None:
    return readapi.render_time(value, None)


def _error(status: int, error: str, message: str) -> JsonResponse:
    return JsonResponse({"error": error, "message": message}, status=status)


def series_view(series: Series):
    @require_safe
    def view(request) -> HttpResponse:
        try:
            q = readapi.parse(series, request.GET)
            if "interval" in series.extra_params:
                text = request.GET.get("interval", "1s").strip()
                q.interval = resample.INTERVALS.get(text, 0)
                if not q.interval:
                    raise BadRequest(
                        f"interval {text!r} is not one of "
                        f"{', '.join(resample.INTERVALS)}"
                    )
        except BadRequest as exc:
            return _error(400, "bad_request", str(exc))
        ticker = Ticker.objects.filter(symbol=q.symbol).first()
        if ticker is None:
            return _error(404, "not_found", f"unknown symbol {q.symbol!r}")
        if q.interval > 1:
            return _resampled(request, q, ticker)
        if q.csv:
            return _csv(q, ticker)
        rows, more = _page(q, ticker)
        data = [readapi.item(series, row, q) for row in rows]
        following = None
        if more and q.last is None:
            tie = rows[-1][1] if series.tiebreak else None
            following = _next(request, readapi.encode_cursor(rows[-1][0], tie))
        return _respond(request, q, ticker, data, more, following)

    view.__doc__ = series.doc
    return view


def _window_of(q: Query, ticker) -> object:
    s = q.series
    rows = s.model.objects.filter(
        ticker=ticker, **{f"{s.time}__gte": q.start, f"{s.time}__lt": q.end}
    )
    if q.cursor is not None:
        at, tie = q.cursor
        if s.tiebreak and tie is not None:
            rows = rows.filter(
                Q(**{f"{s.time}__gt": at}) | Q(**{s.time: at, f"{s.tiebreak}__gt": tie})
            )
        else:
            rows = rows.filter(**{f"{s.time}__gt": at})
    return rows


def _page(q: Query, ticker) -> tuple[list, bool]:
    """At most `limit` rows in time order, and whether more follow (or, with
    last=N, precede)."""
    s = q.series
    order = [s.time] + ([s.tiebreak] if s.tiebreak else [])
    rows = _window_of(q, ticker)
    if q.last is not None:
        newest = rows.order_by(*(f"-{o}" for o in order)).values_list(*s.columns)
        got = list(newest[: q.limit + 1])
        return got[: q.limit][::-1], len(got) > q.limit
    got = list(rows.order_by(*order).values_list(*s.columns)[: q.limit + 1])
    return got[: q.limit], len(got) > q.limit


def _next(request, cursor: str) -> str:
    params = request.GET.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


def _respond(request, q: Query, ticker, data, more, following, **extra):
    metadata = {
        "count": len(data),
        "start_time": _iso(q.start),
        "end_time": _iso(q.end),
        "end_inclusive": False,
        "timeframe": extra.pop("timeframe", q.series.timeframe),
        "limit": q.limit,
        "max_limit": MAX_LIMIT,
        "limit_capped": q.capped,
        "truncated": more,
        "next": following,
        **extra,
    }
    response = JsonResponse(
        {"ticker": ticker.symbol, "data": data, "metadata": metadata}
    )
    if q.end <= timezone.now() - SETTLED_AFTER and q.last is None:
        # A settled window: cacheable, and revalidated by its ETag.
        etag = '"' + hashlib.sha256(response.content).hexdigest()[:32] + '"'
        response["ETag"] = etag
        response["Cache-Control"] = "public, max-age=300"
        if etag in request.headers.get("If-None-Match", ""):
            not_modified = HttpResponse(status=304)
            not_modified["ETag"] = etag
            not_modified["Cache-Control"] = response["Cache-Control"]
            return not_modified
    else:
        response["Cache-Control"] = "no-cache"
    return response


def _csv(q: Query, ticker) -> StreamingHttpResponse:
    """Every row of the window (with last=N: those N), exact decimals, streamed
    in chunks: a whole day of 1-second bars without holding it in memory."""
    s = q.series
    q.strings = True
    order = [s.time] + ([s.tiebreak] if s.tiebreak else [])

    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([f.key for f in s.fields])
        if q.last is not None:
            rows = _page(q, ticker)[0]
        else:
            rows = (
                _window_of(q, ticker)
                .order_by(*order)
                .values_list(*s.columns)
                .iterator(chunk_size=5000)
            )
        for n, row in enumerate(rows, start=1):
            writer.writerow(
                readapi.csv_value(v) for v in readapi.item(s, row, q).values()
            )
            if n % 1000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    stamp = q.start.strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = (
        f'attachment; filename="{ticker.symbol}-{s.name}-{stamp}.csv"'
    )
    response["Cache-Control"] = "no-cache"
    return response


def _resampled(request, q: Query, ticker) -> HttpResponse:
    step = q.interval
    start = q.start
    if q.cursor is not None:
        start = max(start, q.cursor[0] + timedelta(seconds=step))
    if start >= q.end:
        rows, source = [], resample.SECONDS
    else:
        wanted = MAX_LIMIT if q.last is not None else q.limit + 1
        rows, source = resample.resample(ticker, start, q.end, step, wanted)
    if q.last is not None:
        more, rows = len(rows) > q.limit, rows[-q.limit :]
    else:
        more, rows = len(rows) > q.limit, rows[: q.limit]
    if q.csv:
        q.strings = True
    fields = readapi.RESAMPLED
    data = [
        {
            f.key: readapi.render_value(f.kind, value, q)
            for f, value in zip(fields, row, strict=True)
        }
        for row in rows
    ]
    if q.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(f.key for f in fields)
        for entry in data:
            writer.writerow(readapi.csv_value(v) for v in entry.values())
        response = HttpResponse(
            buffer.getvalue(), content_type="text/csv; charset=utf-8"
        )
        response["Cache-Control"] = "no-cache"
        return response
    following = None
    if more and q.last is None:
        following = _next(request, readapi.encode_cursor(rows[-1][0], None))
    interval = request.GET["interval"].strip()
    return _respond(
        request, q, ticker, data, more, following, timeframe=interval,
        source=source.label,
    )  # fmt: skip


second_candles = series_view(readapi.SERIES["second"])
minute_candles = series_view(readapi.SERIES["minute"])
tick_candles = series_view(readapi.SERIES["tick"])
quote_candles = series_view(readapi.SERIES["quote"])
realtime_sentiment = series_view(readapi.SERIES["sentiment"])


@require_safe
def stream(request) -> HttpResponse:
    """Server-Sent Events: new and revised bars of the chosen symbols
    (`symbols=AAPL,MSFT`, `kinds=second,minute,quote`; default second), from
    what the collector commits (api/stream.py). Resumes after `Last-Event-ID`."""
    allowed = {"symbols", "kinds", "last_event_id"}
    unknown = sorted(set(request.GET) - allowed)
    if unknown:
        return _error(400, "bad_request", f"unknown parameter {unknown[0]!r}")
    try:
        wanted = {
            readapi.symbol({"symbol": part})
            for part in request.GET.get("symbols", "").split(",")
            if part.strip()
        }
    except BadRequest as exc:
        return _error(400, "bad_request", str(exc))
    if not wanted:
        return _error(400, "bad_request", "symbols is required (e.g. symbols=AAPL)")
    kinds = {k.strip() for k in request.GET.get("kinds", "second").split(",")}
    if not kinds or not kinds <= set(push.KINDS):
        return _error(
            400, "bad_request", f"kinds must be among {', '.join(push.KINDS)}"
        )
    last_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    if last_id is not None and not last_id.isdigit():
        return _error(400, "bad_request", "Last-Event-ID is not one this API gave")
    hub = push.hub()
    sub = hub.subscribe(wanted, kinds)
    if sub is None:
        response = _error(503, "busy", "too many open streams; retry later")
        response["Retry-After"] = "10"
        return response

    def events():
        # Ids never go back on one stream (what Last-Event-ID resumes from):
        # the live feed may repeat what the backlog just sent.
        newest = int(last_id) if last_id else 0
        try:
            yield "retry: 2000\n\n"
            if last_id:
                for text in hub.backlog(sub, int(last_id)):
                    newest = max(newest, push.event_id(text))
                    yield text
            while not sub.closed:
                try:
                    text = sub.events.get(timeout=push.HEARTBEAT)
                except queue.Empty:
                    yield ": keepalive\n\n"
                    continue
                if push.event_id(text) >= newest:
                    newest = push.event_id(text)
                    yield text
        finally:
            hub.unsubscribe(sub)

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
    return response


@require_safe
def api_schema(request) -> JsonResponse:
    """The OpenAPI 3.1 schema of the read API (generated: api/openapi.py)."""
    return JsonResponse(openapi.schema(), json_dumps_params={"indent": 1})


@require_safe
def api_docs(request) -> HttpResponse:
    """Interactive docs (Swagger UI, vendored) for the schema."""
    return render(request, "api/docs.html")


@require_safe
def symbols(request) -> JsonResponse:
    """Every symbol the database knows, with its newest 1-second bar."""
    out = []
    for ticker in Ticker.objects.order_by("symbol"):
        last = (
            SecondSnapshot.objects.filter(ticker=ticker)
            .order_by("-timestamp")
            .values_list("timestamp", flat=True)
            .first()
        )
        out.append(
            {
                "symbol": ticker.symbol,
                "company_name": ticker.company_name,
                "exchange": ticker.exchange,
                "last_second_bar": _iso(last),
            }
        )
    return JsonResponse({"symbols": out, "count": len(out)})


@require_safe
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


def chart(request) -> HttpResponse:
    """Staff only, unless the operator opened it (CHART_PUBLIC)."""
    if not settings.CHART_PUBLIC:
        return staff_member_required(_chart)(request)
    return _chart(request)


def _chart(request) -> HttpResponse:
    """Candles, volume and sentiment for one symbol; refreshes itself while live."""
    tickers = list(Ticker.objects.order_by("symbol").values_list("symbol", flat=True))
    symbol = request.GET.get("symbol", "").upper()
    if symbol not in tickers:
        symbol = "QLD" if "QLD" in tickers else (tickers[0] if tickers else "")
    range_ = request.GET.get("range", "15m")
    if range_ not in dict(CHART_RANGES):
        range_ = "15m"
    kind = request.GET.get("kind", "second")
    if kind not in ("second", "second-1m", "second-5m", "tick", "quote"):
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
