"""The data-quality report of one trading session (`manage.py data_quality`,
the admin's "Data quality" page; docs/coverage.md).

Per symbol: how much of the session was observed (coverage), the gaps (how
many, how long in all, the longest), how many seconds were rebuilt from the
tick history (source=backfill), and - for the ranges backfill_gaps fetched - how
the live bars compare with the tape over the seconds both saw: the live stream
and the consolidated tape need not carry the same prints, and this is where a
difference shows (volume ratio, seconds whose close differs, the largest
difference).

Before a symbol's first recorded interval nothing is known: a session its
collectors never recorded is reported as unknown, not as one long gap, and on
the day coverage began only the time from then on can hold gaps (as in the read
API). Nor is the rest of a session still running a gap.
"""

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db.models import Count, Max, Q, Sum

from api import observed
from api.market import calendar
from api.market.coverage import gaps, merge
from api.models import Backfill, BackfillStatus, SecondSnapshot, Source, Ticker


@dataclass
class SymbolQuality:
    symbol: str
    session_seconds: float
    known: bool  # any coverage recorded for this symbol by the session's end
    observed_seconds: float
    observed_share: float | None  # None when unknown
    gaps: int
    gap_seconds: float
    longest_gap_seconds: float
    longest_gap_start: datetime | None
    backfilled_seconds: int
    backfill_ranges: int  # fetched and stored
    backfill_waiting: int  # not published yet, interrupted or failed
    compared_seconds: int
    live_volume: Decimal
    tape_volume: Decimal
    volume_ratio: float | None  # live / tape over the compared seconds
    close_mismatches: int
    max_close_diff: Decimal | None

    def as_json(self) -> dict:
        out = asdict(self)
        for name in ("live_volume", "tape_volume", "max_close_diff"):
            if out[name] is not None:
                out[name] = str(out[name])
        if self.longest_gap_start is not None:
            out["longest_gap_start"] = self.longest_gap_start.isoformat()
        return out


def trading_day(text: str | None) -> date:
    """`--date`/`?date=` (YYYY-MM-DD), or the previous trading day when not
    given. Raises ValueError with a readable message."""
    if not text:
        return calendar.previous_trading_day(datetime.now(tz=UTC).date())
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not YYYY-MM-DD") from None


def session_window(day: date, extended: bool = False) -> tuple[datetime, datetime]:
    bounds = calendar.session_bounds(day, extended=extended)
    if bounds is None:
        raise ValueError(f"{day} is not a trading day")
    return bounds


def report(
    start: datetime,
    end: datetime,
    symbols: list[str] | None = None,
    streams: tuple[str, ...] = observed.TRADE_STREAMS,
) -> list[SymbolQuality]:
    """One row per symbol: the ones asked for, or every symbol with coverage or
    a backfill in the window."""
    if symbols is None:
        tickers = list(
            Ticker.objects.filter(
                Q(coverage__stream__in=streams, coverage__start__lt=end)
                | Q(backfills__start__lt=end, backfills__end__gt=start)
            )
            .distinct()
            .order_by("symbol")
        )
    else:
        tickers = list(Ticker.objects.filter(symbol__in=symbols).order_by("symbol"))
    ids = [t.pk for t in tickers]
    firsts = observed.known_from(ids, streams)
    spans = observed.intervals(ids, streams, start, end)
    backfilled = dict(
        SecondSnapshot.objects.filter(
            ticker_id__in=ids,
            source=Source.BACKFILL,
            timestamp__gte=start,
            timestamp__lt=end,
        )
        .values_list("ticker_id")
        .annotate(n=Count("id"))
    )
    ranges = {
        row["ticker_id"]: row
        for row in Backfill.objects.filter(
            ticker_id__in=ids, start__lt=end, end__gt=start
        )
        .values("ticker_id")
        .annotate(
            done=Count("id", filter=Q(status=BackfillStatus.DONE)),
            waiting=Count("id", filter=~Q(status=BackfillStatus.DONE)),
            compared=Sum("compared_seconds", filter=Q(status=BackfillStatus.DONE)),
            live=Sum("live_volume", filter=Q(status=BackfillStatus.DONE)),
            tape=Sum("tape_volume", filter=Q(status=BackfillStatus.DONE)),
            mismatches=Sum("close_mismatches", filter=Q(status=BackfillStatus.DONE)),
            worst=Max("max_close_diff", filter=Q(status=BackfillStatus.DONE)),
        )
    }
    total = (end - start).total_seconds()
    now = datetime.now(tz=start.tzinfo)
    out = []
    for ticker in tickers:
        tid = ticker.pk
        known = tid in firsts and firsts[tid] < end
        seen = merge(
            (max(r.start, start), min(observed.reach(r, now), end))
            for r in spans.get(tid, ())
        )
        observed_seconds = sum((b - a).total_seconds() for a, b in seen)
        # Neither the time before coverage began nor the future is a gap.
        since, until = max(start, firsts.get(tid, end)), min(end, now)
        holes = gaps(since, until, seen) if known and since < until else []
        lengths = [(b - a).total_seconds() for a, b in holes]
        longest = max(range(len(holes)), key=lengths.__getitem__, default=None)
        fetched = ranges.get(tid, {})
        live = fetched.get("live") or Decimal(0)
        tape = fetched.get("tape") or Decimal(0)
        out.append(
            SymbolQuality(
                symbol=ticker.symbol,
                session_seconds=total,
                known=known,
                observed_seconds=observed_seconds,
                observed_share=observed_seconds / total if known and total else None,
                gaps=len(holes),
                gap_seconds=sum(lengths),
                longest_gap_seconds=lengths[longest] if longest is not None else 0.0,
                longest_gap_start=holes[longest][0] if longest is not None else None,
                backfilled_seconds=backfilled.get(tid, 0),
                backfill_ranges=fetched.get("done") or 0,
                backfill_waiting=fetched.get("waiting") or 0,
                compared_seconds=fetched.get("compared") or 0,
                live_volume=live,
                tape_volume=tape,
                volume_ratio=float(live / tape) if tape else None,
                close_mismatches=fetched.get("mismatches") or 0,
                max_close_diff=fetched.get("worst"),
            )
        )
    return out
