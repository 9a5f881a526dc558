"""The read API's series and parameters, described once.

Every bar endpoint is a `Series` (model, time column, the fields of an item) read
through one view (`api.views.series_view`) with the same parameters:

- `symbol` (default QLD), or several comma-separated (`symbol=AAPL,MSFT`, at
  most 50): every item then names its `symbol`, items are ordered by time then
  symbol, `limit` and cursors page the merged list and `last=N` is the newest
  N of each symbol; `start_time` / `end_time`: ISO 8601 (UTC when no offset)
  or epoch seconds or milliseconds (a number from 10^11 is milliseconds); the
  window is half-open, [start, end); no bounds: the last hour; one bound: the
  hour after or before it. Times outside 1970-2099 are a 400.
- `limit` (default 10,000, capped at 50,000); `cursor` (from `metadata.next`):
  the page after the last item of the previous one (keyset pagination on time,
  so a revised bar never moves between pages); `last=N`: the newest N items of
  the window, oldest first (without `start_time` the window reaches back 7
  days).
- `format=json|csv` (CSV streams every row of the window, up to 31 days);
  `tz=<IANA zone>`: timestamps in that zone (with their offset; default UTC,
  `Z`); `decimals=float|string` (prices and volumes as JSON numbers, or as exact
  decimal strings).
- Unknown parameters are a 400, not ignored.
"""

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from api.models import MinuteSnapshot, QuoteSnapshot, SecondSnapshot, TickCandle100

DEFAULT_WINDOW = timedelta(hours=1)
LAST_LOOKBACK = timedelta(days=7)
CSV_MAX_WINDOW = timedelta(days=31)
DEFAULT_LIMIT = 10_000
MAX_LIMIT = 50_000
MAX_SYMBOLS = 50
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(2099, 12, 31, tzinfo=UTC)
COMMON = frozenset(
    {"symbol", "start_time", "end_time", "limit", "last", "cursor", "format", "tz"}
    | {"decimals"}
)
_PLUS_LOST = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")
_EPOCH = re.compile(r"\d{1,14}(\.\d{1,6})?")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.\-_:/^=]{0,31}")


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class Field:
    key: str  # JSON key and CSV header
    column: str | None  # the model column; None: computed by the series
    kind: str = "number"  # "time", "decimal", "int", "float", "computed"


@dataclass(frozen=True)
class Series:
    name: str
    model: type
    time: str  # the column windows and cursors use
    fields: tuple[Field, ...]
    timeframe: str
    tiebreak: str | None = None  # a second key when times may repeat
    extra_params: frozenset[str] = frozenset()
    compute: Callable[[dict, dict], None] | None = None  # (item, raw row)
    doc: str = ""

    @property
    def columns(self) -> list[str]:
        names = [self.time]
        if self.tiebreak:
            names.append(self.tiebreak)
        for f in self.fields:
            if f.column and f.column not in names:
                names.append(f.column)
        return names


def _quote_extras(item: dict, raw: dict) -> None:
    bid, ask = raw["bid"], raw["ask"]
    item["spread_close"] = None if bid is None else ask - bid
    # The chart draws the mid-price as candles.
    for key in ("open", "high", "low", "close"):
        item[key] = raw[f"mid_{key}"]


DECIMAL, INT, FLOAT, TIME = "decimal", "int", "float", "time"
SERIES = {
    "second": Series(
        "second",
        SecondSnapshot,
        "timestamp",
        (
            Field("timestamp", "timestamp", TIME),
            Field("open", "ohlc_1sec_open", DECIMAL),
            Field("high", "ohlc_1sec_high", DECIMAL),
            Field("low", "ohlc_1sec_low", DECIMAL),
            Field("close", "ohlc_1sec_close", DECIMAL),
            Field("volume", "ohlc_1sec_volume", DECIMAL),
            Field("tick_count", "ohlc_1sec_tick_count", INT),
            Field("eligible_count", "ohlc_1sec_eligible_count", INT),
            Field("composite_score", "composite_score", FLOAT),
            Field("news_component", "news_score_cached", FLOAT),
            Field("technical_component", "technical_score_cached", FLOAT),
        ),
        "1s",
        extra_params=frozenset({"interval"}),
        doc="1-second bars; `interval=` resamples them (api/resample.py).",
    ),
    "minute": Series(
        "minute",
        MinuteSnapshot,
        "timestamp",
        (
            Field("timestamp", "timestamp", TIME),
            Field("open", "open", DECIMAL),
            Field("high", "high", DECIMAL),
            Field("low", "low", DECIMAL),
            Field("close", "close", DECIMAL),
            Field("volume", "volume", DECIMAL),
            Field("tick_count", "tick_count", INT),
            Field("eligible_count", "eligible_count", INT),
            Field("vwap", "vwap", DECIMAL),
            Field("composite_score", "composite_score", FLOAT),
        ),
        "1m",
        doc="1-minute bars built live; the score is the one at the minute's close.",
    ),
    "tick": Series(
        "tick",
        TickCandle100,
        "completed_at",
        (
            Field("timestamp", "completed_at", TIME),
            Field("open", "open", DECIMAL),
            Field("high", "high", DECIMAL),
            Field("low", "low", DECIMAL),
            Field("close", "close", DECIMAL),
            Field("volume", "total_volume", DECIMAL),
            Field("candle_number", "candle_number", INT),
            Field("tick_count", "tick_count", INT),
            Field("eligible_count", "eligible_count", INT),
            Field("duration_seconds", "duration_seconds", DECIMAL),
            Field("first_tick_time", "first_tick_time", TIME),
            Field("last_tick_time", "last_tick_time", TIME),
        ),
        "100t",
        tiebreak="candle_number",
        doc="100-trade bars by completion time.",
    ),
    "quote": Series(
        "quote",
        QuoteSnapshot,
        "timestamp",
        (
            Field("timestamp", "timestamp", TIME),
            *(
                Field(name, name, DECIMAL)
                for name in (
                    "bid",
                    "ask",
                    "bid_size",
                    "ask_size",
                    "best_bid",
                    "worst_bid",
                    "best_ask",
                    "worst_ask",
                    "mid_open",
                    "mid_high",
                    "mid_low",
                    "mid_close",
                    "spread_mean",
                )
            ),  # fmt: skip
            *(
                Field(name, name, INT)
                for name in (
                    "quote_count",
                    "crossed_count",
                    "locked_count",
                    "zero_size_count",
                )
            ),  # fmt: skip
            Field("spread_close", None, DECIMAL),
            Field("open", None, DECIMAL),
            Field("high", None, DECIMAL),
            Field("low", None, DECIMAL),
            Field("close", None, DECIMAL),
        ),
        "1s-quote",
        compute=_quote_extras,
        doc="1-second quote bars; the mid-price again as open/high/low/close.",
    ),
    "sentiment": Series(
        "sentiment",
        SecondSnapshot,
        "timestamp",
        (
            Field("timestamp", "timestamp", TIME),
            Field("close", "ohlc_1sec_close", DECIMAL),
            Field("composite_score", "composite_score", FLOAT),
            Field("news_component", "news_score_cached", FLOAT),
            Field("technical_component", "technical_score_cached", FLOAT),
            Field("flow_component", "flow_score_cached", FLOAT),
        ),
        "1s",
        doc="The sentiment scores stamped on each 1-second bar.",
    ),
}


# The items of a resampled series (api/resample.py), in its row order.
RESAMPLED = (
    Field("timestamp", None, TIME),
    Field("open", None, DECIMAL),
    Field("high", None, DECIMAL),
    Field("low", None, DECIMAL),
    Field("close", None, DECIMAL),
    Field("volume", None, DECIMAL),
    Field("tick_count", None, INT),
    Field("eligible_count", None, INT),
    Field("vwap", None, DECIMAL),
    Field("composite_score", None, FLOAT),
    Field("bars", None, INT),
)


# Parameters ---------------------------------------------------------------------


def parse_time(name: str, raw: str | None) -> datetime | None:
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if _EPOCH.fullmatch(text):
        number = float(text)
        seconds = number / 1000 if number >= 1e11 else number
        try:
            value = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise BadRequest(f"{name}={raw!r} is out of range") from None
    else:
        # An unescaped "+00:00" in a query string arrives as " 00:00".
        text = _PLUS_LOST.sub(r"\1+\2", text)
        try:
            value = parse_datetime(text)
        except ValueError:
            value = None
        if value is None:
            raise BadRequest(
                f"{name}={raw!r} is not an ISO 8601 date-time or epoch seconds/ms"
            )
        if timezone.is_naive(value):
            value = value.replace(tzinfo=UTC)
    try:
        within = EARLIEST <= value <= LATEST
    except OverflowError:
        within = False
    if not within:
        raise BadRequest(f"{name}={raw!r} is outside 1970-2099")
    return value.astimezone(UTC)


def window(params, last: bool) -> tuple[datetime, datetime]:
    start = parse_time("start_time", params.get("start_time"))
    end = parse_time("end_time", params.get("end_time"))
    if start is None and end is None:
        end = timezone.now()
    if start is None:
        start = end - (LAST_LOOKBACK if last else DEFAULT_WINDOW)
    if end is None:
        end = start + DEFAULT_WINDOW
    if start >= end:
        raise BadRequest("start_time must be before end_time")
    return start, end


def positive(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise BadRequest(f"{name} must be at least 1")
    return value


def symbols(params) -> tuple[str, ...]:
    """One symbol or several, comma-separated: upper-cased, in the order given,
    each once."""
    raw = params.get("symbol", "QLD")
    out: list[str] = []
    for part in raw.split(","):
        text = part.strip().upper()
        if not _SYMBOL.fullmatch(text):
            raise BadRequest(f"symbol={part[:40]!r} is not a symbol")
        if text not in out:
            out.append(text)
    if len(out) > MAX_SYMBOLS:
        raise BadRequest(f"at most {MAX_SYMBOLS} symbols per request")
    return tuple(out)


def zone(params) -> ZoneInfo | None:
    raw = params.get("tz")
    if raw is None or raw in ("", "UTC", "Z"):
        return None
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"tz={raw[:40]!r} is not an IANA time zone") from None


def choice(params, name: str, options: tuple[str, ...]) -> str:
    value = params.get(name, options[0])
    if value not in options:
        raise BadRequest(f"{name}={value[:40]!r} is not one of {', '.join(options)}")
    return value


# Cursors: opaque to clients, plain inside: the last item's time (microseconds
# since the epoch), its tiebreak key where times may repeat and, when several
# symbols are read, its ticker's id.


@dataclass(frozen=True)
class Cursor:
    at: datetime
    tiebreak: int | None = None
    ticker: int | None = None


def encode_cursor(cursor: Cursor) -> str:
    micros = round(cursor.at.timestamp() * 1_000_000)
    parts = [str(micros)]
    if cursor.tiebreak is not None or cursor.ticker is not None:
        parts.append("" if cursor.tiebreak is None else str(cursor.tiebreak))
    if cursor.ticker is not None:
        parts.append(str(cursor.ticker))
    return base64.urlsafe_b64encode(":".join(parts).encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> Cursor:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        micros, tie, ticker, *rest = (text.split(":") + ["", ""])[:4]
        if rest and rest[0]:
            raise ValueError(text)
        at = datetime.fromtimestamp(int(micros) / 1_000_000, tz=UTC)
        return Cursor(at, int(tie) if tie else None, int(ticker) if ticker else None)
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError, OSError):
        raise BadRequest("cursor is not one this API gave") from None


@dataclass
class Query:
    series: Series
    symbols: tuple[str, ...]
    start: datetime
    end: datetime
    limit: int
    capped: bool
    last: int | None
    cursor: Cursor | None
    csv: bool
    zone: ZoneInfo | None
    strings: bool
    interval: int = 1
    extras: dict = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        return self.symbols[0]

    @property
    def multi(self) -> bool:
        """Several symbols: items name their symbol, ordered by time then symbol."""
        return len(self.symbols) > 1


def parse(series: Series, params) -> Query:
    unknown = sorted(set(params) - COMMON - series.extra_params)
    if unknown:
        allowed = ", ".join(sorted(COMMON | series.extra_params))
        raise BadRequest(f"unknown parameter {unknown[0]!r} (allowed: {allowed})")
    last = positive("last", params["last"]) if "last" in params else None
    if last is not None and ("limit" in params or "cursor" in params):
        raise BadRequest("last= cannot be combined with limit= or cursor=")
    start, end = window(params, last is not None)
    fmt = choice(params, "format", ("json", "csv"))
    if fmt == "csv" and end - start > CSV_MAX_WINDOW:
        raise BadRequest("format=csv reads at most 31 days at once")
    limit, capped = DEFAULT_LIMIT, False
    if "limit" in params:
        asked = positive("limit", params["limit"])
        limit, capped = min(asked, MAX_LIMIT), asked > MAX_LIMIT
    if last is not None:
        limit, capped = min(last, MAX_LIMIT), last > MAX_LIMIT
    cursor = decode_cursor(params["cursor"]) if "cursor" in params else None
    return Query(
        series=series,
        symbols=symbols(params),
        start=start,
        end=end,
        limit=limit,
        capped=capped,
        last=last,
        cursor=cursor,
        csv=fmt == "csv",
        zone=zone(params),
        strings=choice(params, "decimals", ("float", "string")) == "string",
    )


# Rendering ----------------------------------------------------------------------


def render_time(value: datetime | None, zone: ZoneInfo | None) -> str | None:
    if value is None:
        return None
    if zone is None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.astimezone(zone).isoformat()


def render_value(kind: str, value, q: Query):
    if value is None:
        return None
    if kind == TIME:
        return render_time(value, q.zone)
    if kind == DECIMAL:
        return str(value) if q.strings else float(value)
    return value


def item(series: Series, row: tuple, q: Query) -> dict:
    raw = dict(zip(series.columns, row, strict=True))
    computed: dict = {}
    if series.compute is not None:
        series.compute(computed, raw)
    out = {}
    for f in series.fields:
        value = raw[f.column] if f.column else computed.get(f.key)
        out[f.key] = render_value(f.kind, value, q)
    return out


def csv_value(value) -> str:
    return "" if value is None else str(value)
