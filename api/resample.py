"""Bars resampled to a coarser interval, for the read API's `interval=`.

Semantics (the same in SQL and in Python):
- buckets of `step` seconds aligned to the epoch in UTC (a 1d bar is a UTC day);
- open: the first open by time that is not NULL, close: the last such close
  (a bar whose prints set no price - docs/conditions.md - takes no part in
  them), high/low: the extremes of the non-NULL highs and lows;
- volume, tick count and eligible count summed;
- VWAP volume-weighted over the bars that have one;
- the composite score of the bucket's last bar (its score at the close; NULL
  when that bar's score is unknown);
- `bars`: how many source bars the bucket holds.

Source: 1-minute bars for intervals of whole minutes when the symbol has minute
bars in the window (they were built live from the same trades), else the
1-second bars. On PostgreSQL the resampling is one SQL statement (date_bin,
ordered aggregates), pruned to the window's partitions; on other databases the
window's bars are read in time order and folded in Python.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection

from api.models import MinuteSnapshot, SecondSnapshot

INTERVALS = {
    "1s": 1,
    "5s": 5,
    "15s": 15,
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3600,
    "1d": 86400,
}
_VWAP = Decimal("0.0000000001")


@dataclass(frozen=True)
class Source:
    model: type
    columns: tuple[str, ...]  # open, high, low, close, volume, ticks, eligible,
    # vwap, score - in that order
    label: str


SECONDS = Source(
    SecondSnapshot,
    (
        "ohlc_1sec_open", "ohlc_1sec_high", "ohlc_1sec_low", "ohlc_1sec_close",
        "ohlc_1sec_volume", "ohlc_1sec_tick_count", "ohlc_1sec_eligible_count",
        "vwap", "composite_score",
    ),
    "1s",
)  # fmt: skip
MINUTES = Source(
    MinuteSnapshot,
    (
        "open", "high", "low", "close", "volume", "tick_count", "eligible_count",
        "vwap", "composite_score",
    ),
    "1m",
)  # fmt: skip


def source_for(ticker, start: datetime, end: datetime, step: int) -> Source:
    if step % 60 == 0:
        minutes = MinuteSnapshot.objects.filter(
            ticker=ticker, timestamp__gte=start, timestamp__lt=end
        )
        if minutes.exists():
            return MINUTES
    return SECONDS


def resample(ticker, start, end, step: int, limit: int) -> tuple[list[tuple], Source]:
    """[(bucket start, open, high, low, close, volume, ticks, eligible, vwap,
    score, bars)] in time order, at most `limit`; and the source used."""
    source = source_for(ticker, start, end, step)
    if connection.vendor == "postgresql":
        return _in_sql(source, ticker.id, start, end, step, limit), source
    rows = (
        source.model.objects.filter(
            ticker=ticker, timestamp__gte=start, timestamp__lt=end
        )
        .order_by("timestamp")
        .values_list("timestamp", *source.columns)
        .iterator(chunk_size=5000)
    )
    return fold(rows, step, limit), source


def _in_sql(source: Source, ticker_id, start, end, step: int, limit: int) -> list:
    o, h, lo, c, v, n, e, vw, sc = source.columns
    table = source.model._meta.db_table
    sql = f"""
        SELECT date_bin(make_interval(secs => %s), "timestamp",
                        TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket,
               (array_agg({o} ORDER BY "timestamp") FILTER (WHERE {o} IS NOT NULL))[1],
               max({h}), min({lo}),
               (array_agg({c} ORDER BY "timestamp" DESC)
                   FILTER (WHERE {c} IS NOT NULL))[1],
               sum({v}), sum({n}), sum({e}),
               sum({vw} * {v}) FILTER (WHERE {vw} IS NOT NULL),
               sum({v}) FILTER (WHERE {vw} IS NOT NULL),
               (array_agg({sc} ORDER BY "timestamp" DESC))[1],
               count(*)
        FROM "{table}"
        WHERE ticker_id = %s AND "timestamp" >= %s AND "timestamp" < %s
        GROUP BY 1 ORDER BY 1 LIMIT %s
    """  # noqa: S608 - the names come from the models, the values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, [step, ticker_id, start, end, limit])
        rows = cursor.fetchall()
    return [
        (bucket, op, hi, low, cl, vol, ticks, eligible, _vwap(pv, vv), score, bars)
        for bucket, op, hi, low, cl, vol, ticks, eligible, pv, vv, score, bars in rows
    ]


def _vwap(pv: Decimal | None, volume: Decimal | None) -> Decimal | None:
    if pv is None or not volume:
        return None
    return (pv / volume).quantize(_VWAP)


def fold(rows, step: int, limit: int) -> list[tuple]:
    """The same resampling over (timestamp, *columns) rows in time order."""
    out: list[tuple] = []
    current = None
    acc: list = []
    for ts, op, hi, low, cl, vol, ticks, eligible, vwap, score in rows:
        epoch = int(ts.timestamp())
        bucket = epoch - epoch % step
        if bucket != current:
            if acc:
                out.append(_close(current, acc))
                if len(out) >= limit:
                    return out
            current, acc = bucket, []
        acc.append((op, hi, low, cl, vol, ticks, eligible, vwap, score))
    if acc and len(out) < limit:
        out.append(_close(current, acc))
    return out


def _close(bucket: int, acc: list) -> tuple:
    opens = [a[0] for a in acc if a[0] is not None]
    closes = [a[3] for a in acc if a[3] is not None]
    highs = [a[1] for a in acc if a[1] is not None]
    lows = [a[2] for a in acc if a[2] is not None]
    weighted = [(a[7], a[4]) for a in acc if a[7] is not None]
    pv = sum((w * v for w, v in weighted), Decimal(0)) if weighted else None
    vv = sum((v for _, v in weighted), Decimal(0)) if weighted else None
    return (
        datetime.fromtimestamp(bucket, tz=UTC),
        opens[0] if opens else None,
        max(highs) if highs else None,
        min(lows) if lows else None,
        closes[-1] if closes else None,
        sum((a[4] for a in acc), Decimal(0)),
        sum(a[5] for a in acc),
        sum(a[6] for a in acc),
        _vwap(pv, vv),
        acc[-1][8],
        len(acc),
    )
