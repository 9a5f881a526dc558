"""The bar kinds, described once, as data.

A kind says how trades build it (a time bucket of `width` seconds, or `size`
trades in arrival order), where it is stored (model, unique key, the columns an
upsert updates), how one bar becomes a row, and how it is spooled. The aggregator,
the writer, the store, the spool, replay, the metrics and the summary line are
written once for all kinds and read these descriptions: adding a kind is a new
description, its model and migration, and the web layer.

Items: a time-bucketed kind's item is `(TimeBar, Scores | None)` - the scores
stamped when the bar first closed; a count kind's item is the `TickCandle`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from api.market.bars import TickCandle, TimeBar
from api.market.quotes import QuoteBar
from api.models import MinuteSnapshot, QuoteSnapshot, SecondSnapshot, TickCandle100
from api.sentiment.scoring import Scores


@dataclass(frozen=True, eq=False)
class BarKind:
    name: str  # metric label, log key: "second", "minute", "tick100"
    label: str  # for people: "1-second", "1-minute", "100-trade"
    code: str  # the spool record's "k"
    model: type
    unique: tuple[str, ...]  # the upsert's conflict target: ticker + position
    fields: tuple[str, ...]  # the columns an upsert updates
    to_row: Callable  # (item, RowContext) -> model instance
    width: int | None = None  # time-bucketed: seconds per bar
    size: int | None = None  # count-based: trades per bar
    # Columns a replay leaves as stored: it knows no scores, and a row keeps the
    # source it was first written by.
    keep_on_replay: frozenset[str] = frozenset()
    # What it is built from: "trades" or "quotes" (a stream carries one or the
    # other: api.pipeline.ingest).
    built_from: str = "trades"
    # The spool's encoding of an item, when not the trade bars' own.
    encoder: Callable | None = None
    decoder: Callable | None = None

    @property
    def timed(self) -> bool:
        return self.width is not None

    @property
    def position(self) -> str:
        """The column that says how far a symbol's stored bars go."""
        return self.unique[1]

    def stored_position(self, value) -> int:
        """A stored position as the key's integer (epoch second or number)."""
        return int(value.timestamp()) if self.timed else int(value)

    def stored_value(self, position: int):
        """The key's integer as the position column's value."""
        if self.timed:
            return datetime.fromtimestamp(position, tz=UTC)
        return position

    def key(self, item) -> tuple[str, int]:
        if self.timed:
            return (item[0].symbol, item[0].second)
        return (item.symbol, item.number)

    def is_revision(self, item) -> bool:
        return self.timed and item[0].revision

    def replay_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f not in self.keep_on_replay)

    # The spool's encoding ---------------------------------------------------------

    def encode(self, item) -> dict:
        if self.encoder is not None:
            record = self.encoder(item)
        else:
            record = _encode_bar(*item) if self.timed else _encode_candle(item)
        record["k"] = self.code
        return record

    def decode(self, record: dict):
        if self.decoder is not None:
            return self.decoder(record)
        return _decode_bar(record) if self.timed else _decode_candle(record)


class RowContext:
    """What a row builder needs from the store (see store.Store)."""

    source: str

    def ticker_id(self, symbol: str) -> int:  # pragma: no cover - an interface
        raise NotImplementedError

    def exact(self, model, name: str, value):  # pragma: no cover - an interface
        """The value if its column holds it exactly; else the bar is unstorable."""
        raise NotImplementedError

    def derived(self, model, name: str, value):  # pragma: no cover
        """The value if its column holds it; else NULL, counted."""
        raise NotImplementedError

    def time(self, epoch_seconds: float):  # pragma: no cover - an interface
        raise NotImplementedError

    def count(self, value: int, minimum: int = 1) -> int:  # pragma: no cover
        """A count the column holds (>= minimum); else the bar is unstorable."""
        raise NotImplementedError


def _scores(scores: Scores | None) -> dict:
    if scores is None:
        return {}
    return {
        "composite_score": scores.composite,
        "news_score_cached": scores.news,
        "technical_score_cached": scores.technical,
        "flow_score_cached": scores.flow,
    }


def _second_row(item: tuple[TimeBar, Scores | None], ctx: RowContext):
    bar, scores = item
    m = SecondSnapshot
    return m(
        ticker_id=ctx.ticker_id(bar.symbol),
        timestamp=ctx.time(bar.second),
        ohlc_1sec_open=ctx.exact(m, "ohlc_1sec_open", bar.open),
        ohlc_1sec_high=ctx.exact(m, "ohlc_1sec_high", bar.high),
        ohlc_1sec_low=ctx.exact(m, "ohlc_1sec_low", bar.low),
        ohlc_1sec_close=ctx.exact(m, "ohlc_1sec_close", bar.close),
        ohlc_1sec_volume=ctx.exact(m, "ohlc_1sec_volume", bar.volume),
        ohlc_1sec_tick_count=ctx.count(bar.tick_count),
        ohlc_1sec_eligible_count=ctx.count(bar.eligible_count, minimum=0),
        vwap=ctx.derived(m, "vwap", bar.vwap),
        price_momentum_5sec=ctx.derived(
            m, "price_momentum_5sec", bar.price_momentum_5sec
        ),
        price_change_1sec=ctx.derived(m, "price_change_1sec", bar.price_change_1sec),
        **{name: _finite(value) for name, value in _scores(scores).items()},
        source=ctx.source,
    )


def _minute_row(item: tuple[TimeBar, Scores | None], ctx: RowContext):
    bar, scores = item
    m = MinuteSnapshot
    return m(
        ticker_id=ctx.ticker_id(bar.symbol),
        timestamp=ctx.time(bar.second),
        open=ctx.exact(m, "open", bar.open),
        high=ctx.exact(m, "high", bar.high),
        low=ctx.exact(m, "low", bar.low),
        close=ctx.exact(m, "close", bar.close),
        volume=ctx.exact(m, "volume", bar.volume),
        tick_count=ctx.count(bar.tick_count),
        eligible_count=ctx.count(bar.eligible_count, minimum=0),
        vwap=ctx.derived(m, "vwap", bar.vwap),
        composite_score=_finite(scores.composite) if scores else None,
        source=ctx.source,
    )


def _candle_row(candle: TickCandle, ctx: RowContext):
    m = TickCandle100
    return m(
        ticker_id=ctx.ticker_id(candle.symbol),
        candle_number=candle.number,
        completed_at=ctx.time(candle.completed_at_ms / 1000),
        open=ctx.exact(m, "open", candle.open),
        high=ctx.exact(m, "high", candle.high),
        low=ctx.exact(m, "low", candle.low),
        close=ctx.exact(m, "close", candle.close),
        total_volume=ctx.exact(m, "total_volume", candle.volume),
        tick_count=ctx.count(candle.tick_count),
        eligible_count=ctx.count(candle.eligible_count, minimum=0),
        first_tick_time=ctx.time(candle.first_ts_ms / 1000),
        last_tick_time=ctx.time(candle.last_ts_ms / 1000),
        duration_seconds=ctx.exact(
            m, "duration_seconds", Decimal(candle.duration_seconds)
        ),
        source=ctx.source,
    )


def _quote_row(item: tuple[QuoteBar, None], ctx: RowContext):
    bar, _ = item
    m = QuoteSnapshot
    return m(
        ticker_id=ctx.ticker_id(bar.symbol),
        timestamp=ctx.time(bar.second),
        **{name: ctx.exact(m, name, getattr(bar, name)) for name in _QUOTE_EXACT},
        spread_mean=ctx.derived(m, "spread_mean", bar.spread_mean),
        quote_count=ctx.count(bar.quote_count),
        **{
            name: ctx.count(getattr(bar, name), minimum=0) for name in _QUOTE_COUNTS[1:]
        },
        source=ctx.source,
    )


_QUOTE_EXACT = (
    "bid", "ask", "bid_size", "ask_size", "best_bid", "worst_bid", "best_ask",
    "worst_ask", "mid_open", "mid_high", "mid_low", "mid_close",
)  # fmt: skip
_QUOTE_COUNTS = ("quote_count", "crossed_count", "locked_count", "zero_size_count")


def _encode_quote(item: tuple[QuoteBar, None]) -> dict:
    bar, _ = item
    record = {name: _dec(getattr(bar, name)) for name in (*_QUOTE_EXACT, "spread_mean")}
    record.update({name: getattr(bar, name) for name in _QUOTE_COUNTS})
    record.update(
        sym=bar.symbol, sec=bar.second, t0=bar.first_ts_ms, t1=bar.last_ts_ms,
        r=bar.revision,
    )  # fmt: skip
    return record


def _decode_quote(rec: dict) -> tuple[QuoteBar, None]:
    bar = QuoteBar(
        symbol=rec["sym"],
        second=int(rec["sec"]),
        **{name: _undec(rec[name]) for name in (*_QUOTE_EXACT, "spread_mean")},
        **{name: int(rec[name]) for name in _QUOTE_COUNTS},
        first_ts_ms=int(rec["t0"]),
        last_ts_ms=int(rec["t1"]),
        revision=bool(rec["r"]),
    )
    return bar, None


def _finite(value: float | None) -> float | None:
    """A score the column can hold: NaN or infinity is unknown, not a number."""
    return value if value is None or math.isfinite(value) else None


_SCORES = frozenset(
    {"composite_score", "news_score_cached", "technical_score_cached"}
    | {"flow_score_cached", "source"}
)

SECOND = BarKind(
    name="second",
    label="1-second",
    code="s",
    model=SecondSnapshot,
    unique=("ticker", "timestamp"),
    fields=(
        "ohlc_1sec_open",
        "ohlc_1sec_high",
        "ohlc_1sec_low",
        "ohlc_1sec_close",
        "ohlc_1sec_volume",
        "ohlc_1sec_tick_count",
        "ohlc_1sec_eligible_count",
        "vwap",
        "price_momentum_5sec",
        "price_change_1sec",
        "composite_score",
        "news_score_cached",
        "technical_score_cached",
        "flow_score_cached",
        "source",
        "updated_at",
    ),
    to_row=_second_row,
    width=1,
    keep_on_replay=_SCORES,
)
MINUTE = BarKind(
    name="minute",
    label="1-minute",
    code="m",
    model=MinuteSnapshot,
    unique=("ticker", "timestamp"),
    fields=(
        "open",
        "high",
        "low",
        "close",
        "volume",
        "tick_count",
        "eligible_count",
        "vwap",
        "composite_score",
        "source",
        "updated_at",
    ),
    to_row=_minute_row,
    width=60,
    keep_on_replay=_SCORES,
)
TICK100 = BarKind(
    name="tick100",
    label="100-trade",
    code="t",
    model=TickCandle100,
    unique=("ticker", "candle_number"),
    fields=(
        "completed_at",
        "open",
        "high",
        "low",
        "close",
        "total_volume",
        "tick_count",
        "eligible_count",
        "first_tick_time",
        "last_tick_time",
        "duration_seconds",
        "source",
    ),
    to_row=_candle_row,
    size=100,
    keep_on_replay=frozenset({"source"}),
)

QUOTE = BarKind(
    name="quote",
    label="1-second quote",
    code="q",
    model=QuoteSnapshot,
    unique=("ticker", "timestamp"),
    fields=(*_QUOTE_EXACT, "spread_mean", *_QUOTE_COUNTS, "source", "updated_at"),
    to_row=_quote_row,
    width=1,
    keep_on_replay=frozenset({"source"}),
    built_from="quotes",
    encoder=_encode_quote,
    decoder=_decode_quote,
)

# Every kind the collector builds, in the order they are written.
KINDS: tuple[BarKind, ...] = (SECOND, MINUTE, TICK100, QUOTE)
# What each EODHD stream builds.
TRADE_KINDS: tuple[BarKind, ...] = (SECOND, MINUTE, TICK100)
QUOTE_KINDS: tuple[BarKind, ...] = (QUOTE,)
STREAM_KINDS = {
    "us": TRADE_KINDS,
    "crypto": TRADE_KINDS,
    "us-quote": QUOTE_KINDS,
    "forex": QUOTE_KINDS,
}
BY_CODE = {kind.code: kind for kind in KINDS}
BY_NAME = {kind.name: kind for kind in KINDS}


# Spool encoding: decimals as strings, exact; keys short, the file can be large.


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _encode_bar(bar: TimeBar, scores: Scores | None) -> dict:
    return {
        "sym": bar.symbol,
        "sec": bar.second,
        "o": _dec(bar.open),
        "h": _dec(bar.high),
        "l": _dec(bar.low),
        "c": _dec(bar.close),
        "v": str(bar.volume),
        "n": bar.tick_count,
        "ne": bar.eligible_count,
        "vw": _dec(bar.vwap),
        "t0": bar.first_ts_ms,
        "t1": bar.last_ts_ms,
        "pc": _dec(bar.price_change_1sec),
        "pm": _dec(bar.price_momentum_5sec),
        "r": bar.revision,
        "sc": None
        if scores is None
        else [
            scores.composite,
            scores.news,
            scores.technical,
            scores.flow,
            scores.computed_at,
        ],
    }


def _decode_bar(rec: dict) -> tuple[TimeBar, Scores | None]:
    bar = TimeBar(
        symbol=rec["sym"],
        second=int(rec["sec"]),
        open=_undec(rec["o"]),
        high=_undec(rec["h"]),
        low=_undec(rec["l"]),
        close=_undec(rec["c"]),
        volume=Decimal(rec["v"]),
        tick_count=int(rec["n"]),
        vwap=_undec(rec["vw"]),
        first_ts_ms=int(rec["t0"]),
        last_ts_ms=int(rec["t1"]),
        price_change_1sec=_undec(rec["pc"]),
        price_momentum_5sec=_undec(rec["pm"]),
        revision=bool(rec["r"]),
        # Spooled before the condition rules: every print was eligible.
        eligible_count=int(rec.get("ne", rec["n"])),
    )
    sc = rec.get("sc")
    scores = None if sc is None else Scores(*sc[:4], computed_at=sc[4])
    return bar, scores


def _encode_candle(candle: TickCandle) -> dict:
    return {
        "sym": candle.symbol,
        "num": candle.number,
        "o": _dec(candle.open),
        "h": _dec(candle.high),
        "l": _dec(candle.low),
        "c": _dec(candle.close),
        "v": str(candle.volume),
        "n": candle.tick_count,
        "ne": candle.eligible_count,
        "t0": candle.first_ts_ms,
        "t1": candle.last_ts_ms,
        "d": str(candle.duration_seconds),
        "done": candle.completed_at_ms,
    }


def _decode_candle(rec: dict) -> TickCandle:
    return TickCandle(
        symbol=rec["sym"],
        number=int(rec["num"]),
        open=_undec(rec["o"]),
        high=_undec(rec["h"]),
        low=_undec(rec["l"]),
        close=_undec(rec["c"]),
        volume=Decimal(rec["v"]),
        tick_count=int(rec["n"]),
        first_ts_ms=int(rec["t0"]),
        last_ts_ms=int(rec["t1"]),
        duration_seconds=Decimal(rec["d"]),
        completed_at_ms=int(rec["done"]),
        eligible_count=int(rec.get("ne", rec["n"])),
    )
