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
from django.db import connection
from django.db.models import Q
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from api import access, observed, openapi, readapi, resample
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
        found = {t.symbol: t for t in Ticker.objects.filter(symbol__in=q.symbols)}
        missing = [name for name in q.symbols if name not in found]
        if missing:
            return _error(404, "not_found", f"unknown symbol {', '.join(missing)!r}")
        tickers = [found[name] for name in q.symbols]
        if q.interval > 1:
            return _resampled(request, q, tickers)
        if q.csv:
            return _csv(q, tickers)
        rows, more = _page(q, tickers)
        names = {t.pk: t.symbol for t in tickers}
        data = [_item(q, row, names) for row in rows]
        following = None
        if more and q.last is None:
            following = _next(request, readapi.encode_cursor(_cursor_of(q, rows[-1])))
        return _respond(request, q, tickers, data, more, following)

    view.__doc__ = series.doc
    return view


# Rows are the series' columns and, when several symbols are read, the ticker id
# last: ordered by time, ticker id, then the series' tiebreak.


def _order(q: Query) -> list[str]:
    s = q.series
    return [s.time, *(["ticker_id"] if q.multi else []), *filter(None, [s.tiebreak])]


def _columns(q: Query) -> list[str]:
    return q.series.columns + (["ticker_id"] if q.multi else [])


def _item(q: Query, row: tuple, names: dict) -> dict:
    if not q.multi:
        return readapi.item(q.series, row, q)
    return {"symbol": names[row[-1]], **readapi.item(q.series, row[:-1], q)}


def _cursor_of(q: Query, row: tuple) -> readapi.Cursor:
    tie = row[1] if q.series.tiebreak else None
    return readapi.Cursor(row[0], tie, row[-1] if q.multi else None)


def _after(keys: list[tuple[str, object]]) -> Q:
    """Rows after a key in lexicographic order of `keys` (column, value)."""
    keys = [(column, value) for column, value in keys if value is not None]
    clause = Q(pk__in=[])
    for i, (column, value) in enumerate(keys):
        equal = {c: v for c, v in keys[:i]}
        clause |= Q(**equal, **{f"{column}__gt": value})
    return clause


def _window_of(q: Query, tickers) -> object:
    s = q.series
    rows = s.model.objects.filter(
        ticker__in=tickers, **{f"{s.time}__gte": q.start, f"{s.time}__lt": q.end}
    )
    if q.cursor is not None:
        c = q.cursor
        keys = [(s.time, c.at)]
        if q.multi:
            keys.append(("ticker_id", c.ticker))
        if s.tiebreak:
            keys.append((s.tiebreak, c.tiebreak))
        rows = rows.filter(_after(keys))
    return rows


def _page(q: Query, tickers) -> tuple[list, bool]:
    """At most `limit` rows in time order, and whether more follow (or, with
    last=N, precede: the newest N of each symbol)."""
    order, columns = _order(q), _columns(q)
    if q.last is not None:
        got, more = [], False
        for ticker in tickers:
            rows = _window_of(q, [ticker]).order_by(*(f"-{o}" for o in order))
            newest = list(rows.values_list(*columns)[: q.limit + 1])
            more = more or len(newest) > q.limit
            got.extend(newest[: q.limit])
        width = len(q.series.columns)
        got.sort(key=lambda row: (row[0], row[-1] if q.multi else 0, row[1:width]))
        return got, more
    got = list(
        _window_of(q, tickers).order_by(*order).values_list(*columns)[: q.limit + 1]
    )
    return got[: q.limit], len(got) > q.limit


def _next(request, cursor: str) -> str:
    params = request.GET.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


def _coverage(q: Query, tickers) -> dict:
    """metadata.gaps (time in the window no collector observed, after the
    symbol's coverage began) and metadata.coverage_from (when it began; null:
    never recorded, nothing known)."""
    streams = observed.streams_for(q.series.name)
    ids = [t.pk for t in tickers]
    found, firsts = observed.unobserved(ids, streams, q.start, q.end)
    return {
        "gaps": [
            {"symbol": t.symbol, "start": _iso(s), "end": _iso(e)}
            for t in tickers
            for s, e in found.get(t.pk, ())
        ],
        "coverage_from": {t.symbol: _iso(firsts.get(t.pk)) for t in tickers},
    }


def _respond(request, q: Query, tickers, data, more, following, **extra):
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
        **_coverage(q, tickers),
        **extra,
    }
    if q.multi:
        body = {"tickers": [t.symbol for t in tickers], "data": data}
    else:
        body = {"ticker": tickers[0].symbol, "data": data}
    response = JsonResponse({**body, "metadata": metadata})
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


def _csv_writer():
    buffer = io.StringIO()
    return buffer, csv.writer(buffer, lineterminator="\n")


def _csv_response(chunks, q: Query, tickers) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    stamp = q.start.strftime("%Y%m%dT%H%M%SZ")
    name = "-".join(t.symbol for t in tickers[:3]) + (
        "-etc" if len(tickers) > 3 else ""
    )
    response["Content-Disposition"] = (
        f'attachment; filename="{name}-{q.series.name}-{stamp}.csv"'
    )
    response["Cache-Control"] = "no-cache"
    return response


def _csv(q: Query, tickers) -> StreamingHttpResponse:
    """Every row of the window (with last=N: those N), exact decimals, streamed
    in chunks: a whole day of 1-second bars without holding it in memory."""
    s = q.series
    q.strings = True
    names = {t.pk: t.symbol for t in tickers}

    def lines():
        buffer, writer = _csv_writer()
        writer.writerow((["symbol"] if q.multi else []) + [f.key for f in s.fields])
        if q.last is not None:
            rows = _page(q, tickers)[0]
        else:
            rows = (
                _window_of(q, tickers)
                .order_by(*_order(q))
                .values_list(*_columns(q))
                .iterator(chunk_size=5000)
            )
        for n, row in enumerate(rows, start=1):
            writer.writerow(readapi.csv_value(v) for v in _item(q, row, names).values())
            if n % 1000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return _csv_response(lines(), q, tickers)


def _resampled(request, q: Query, tickers) -> HttpResponse:
    """Each symbol resampled on its own (api/resample.py), merged by bucket time
    then ticker id; rows carry the ticker id last."""
    step = q.interval
    wanted = MAX_LIMIT if q.last is not None else q.limit + 1
    rows, labels, more = [], set(), False
    for ticker in tickers:
        start = q.start
        if q.cursor is not None:
            c = q.cursor
            passed = not q.multi or c.ticker is None or ticker.pk <= c.ticker
            start = max(start, c.at + timedelta(seconds=step) if passed else c.at)
        if start >= q.end:
            continue
        got, source = resample.resample(ticker, start, q.end, step, wanted)
        labels.add(source.label)
        if q.last is not None:
            more = more or len(got) > q.limit
            got = got[-q.limit :]
        rows.extend((*row, ticker.pk) for row in got)
    rows.sort(key=lambda row: (row[0], row[-1]))
    if q.last is None:
        more, rows = len(rows) > q.limit, rows[: q.limit]
    if q.csv:
        q.strings = True
    names = {t.pk: t.symbol for t in tickers}
    fields = readapi.RESAMPLED
    data = []
    for row in rows:
        entry = {"symbol": names[row[-1]]} if q.multi else {}
        for f, value in zip(fields, row[:-1], strict=True):
            entry[f.key] = readapi.render_value(f.kind, value, q)
        data.append(entry)
    if q.csv:
        buffer, writer = _csv_writer()
        writer.writerow((["symbol"] if q.multi else []) + [f.key for f in fields])
        for entry in data:
            writer.writerow(readapi.csv_value(v) for v in entry.values())
        return _csv_response([buffer.getvalue()], q, tickers)
    following = None
    if more and q.last is None:
        last = rows[-1]
        cursor = readapi.Cursor(last[0], None, last[-1] if q.multi else None)
        following = _next(request, readapi.encode_cursor(cursor))
    interval = request.GET["interval"].strip()
    source = "+".join(sorted(labels)) or resample.SECONDS.label
    return _respond(
        request, q, tickers, data, more, following, timeframe=interval,
        source=source,
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
    if not request.GET.get("symbols", "").strip(", "):
        return _error(400, "bad_request", "symbols is required (e.g. symbols=AAPL)")
    try:
        wanted = set(readapi.symbols({"symbol": request.GET["symbols"]}))
    except BadRequest as exc:
        return _error(400, "bad_request", str(exc))
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

    # A stream lasts; the database connection this request may have opened (a
    # session, a token check) is not held for it.
    connection.close()
    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
    return response


COVERAGE_PARAMS = frozenset({"symbol", "start_time", "end_time", "stream"})


@require_safe
def coverage(request) -> JsonResponse:
    """What the collectors observed in a window (default: the last hour): the
    coverage intervals (api.models.Coverage) and the gaps between them."""
    params = request.GET
    unknown = sorted(set(params) - COVERAGE_PARAMS)
    try:
        if unknown:
            allowed = ", ".join(sorted(COVERAGE_PARAMS))
            raise BadRequest(f"unknown parameter {unknown[0]!r} (allowed: {allowed})")
        names = readapi.symbols(params)
        start, end = readapi.window(params, last=False)
        streams = observed.STREAMS
        if "stream" in params:
            if params["stream"] not in streams:
                raise BadRequest(f"stream must be one of {', '.join(streams)}")
            streams = (params["stream"],)
    except BadRequest as exc:
        return _error(400, "bad_request", str(exc))
    found = {t.symbol: t for t in Ticker.objects.filter(symbol__in=names)}
    missing = [name for name in names if name not in found]
    if missing:
        return _error(404, "not_found", f"unknown symbol {', '.join(missing)!r}")
    tickers = [found[name] for name in names]
    ids = [t.pk for t in tickers]
    symbol_of = {t.pk: t.symbol for t in tickers}
    now = timezone.now()
    rows = observed.intervals(ids, streams, start, end)
    gaps, firsts = observed.unobserved(ids, streams, start, end)
    intervals = [
        {
            "symbol": symbol_of[row.ticker_id],
            "stream": row.stream,
            "start": _iso(row.start),
            "end": _iso(row.end),
            "open": row.end is None,
            "seen_through": _iso(row.seen_through),
            "end_reason": row.end_reason or None,
            "detail": row.detail,
            "collector": row.collector,
            "source": row.source,
            # The seconds an edge cuts were observed only in part.
            "first_second_partial": row.start.microsecond != 0,
            "last_second_partial": (observed.reach(row, now)).microsecond != 0,
        }
        for tid in ids
        for row in rows.get(tid, ())
    ]
    window = (min(end, now) - start).total_seconds()
    summary = []
    for t in tickers:
        since = firsts.get(t.pk)
        missing_s = sum((e - s).total_seconds() for s, e in gaps.get(t.pk, ()))
        known = (
            max(0.0, (min(end, now) - max(start, since)).total_seconds())
            if since
            else 0.0
        )
        summary.append(
            {
                "symbol": t.symbol,
                "coverage_from": _iso(since),
                "known_seconds": round(known, 3),
                "observed_seconds": round(max(0.0, known - missing_s), 3),
                "gap_seconds": round(missing_s, 3),
                "gaps": len(gaps.get(t.pk, ())),
            }
        )
    return JsonResponse(
        {
            "symbols": summary,
            "intervals": intervals,
            "gaps": [
                {"symbol": t.symbol, "start": _iso(s), "end": _iso(e)}
                for t in tickers
                for s, e in gaps.get(t.pk, ())
            ],
            "metadata": {
                "start_time": _iso(start),
                "end_time": _iso(end),
                "end_inclusive": False,
                "window_seconds": round(max(0.0, window), 3),
                "streams": list(streams),
            },
        }
    )


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
    response = render(request, "api/chart.html", context)
    if settings.API_TOKENS and settings.CHART_PUBLIC:
        # The API needs a token; the public chart's visitor reads it with this
        # (api/access.py).
        response.set_cookie(
            access.CHART_COOKIE,
            access.chart_cookie(),
            max_age=access.CHART_COOKIE_AGE,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    return response
