"""Reading coverage (api.models.Coverage): which parts of a window a collector
observed, and the gaps - time no collector was subscribed and receiving, which
a missing bar alone cannot tell from a quiet second (docs/coverage.md).

Before a symbol's first recorded interval nothing is known (the collector did
not record coverage yet): gaps are reported only from there on; nor is the
future a gap. An open interval reaches to now while its collector keeps it
fresh (its stored reach lags the live edge by a few seconds), and only to its
stored reach once that is older than CRASH_AFTER (its collector is gone).
"""

from collections import defaultdict
from datetime import datetime

from django.db.models import Min, Q
from django.utils import timezone

from api.collector.coverage import CRASH_AFTER
from api.market.coverage import gaps
from api.models import Coverage
from api.pipeline.kinds import QUOTE_KINDS, STREAM_KINDS

TRADE_STREAMS = tuple(s for s, kinds in STREAM_KINDS.items() if kinds != QUOTE_KINDS)
QUOTE_STREAMS = tuple(s for s, kinds in STREAM_KINDS.items() if kinds == QUOTE_KINDS)
STREAMS = TRADE_STREAMS + QUOTE_STREAMS


def streams_for(series: str) -> tuple[str, ...]:
    return QUOTE_STREAMS if series == "quote" else TRADE_STREAMS


def intervals(
    ticker_ids, streams, start: datetime, end: datetime
) -> dict[int, list[Coverage]]:
    """The intervals that overlap [start, end), per ticker, by start."""
    rows = (
        Coverage.objects.filter(
            ticker_id__in=list(ticker_ids), stream__in=streams, start__lt=end
        )
        .filter(Q(end__gt=start) | Q(end__isnull=True, seen_through__gt=start))
        .order_by("start")
    )
    out: dict[int, list[Coverage]] = defaultdict(list)
    for row in rows:
        out[row.ticker_id].append(row)
    return out


def known_from(ticker_ids, streams) -> dict[int, datetime]:
    rows = (
        Coverage.objects.filter(ticker_id__in=list(ticker_ids), stream__in=streams)
        .values("ticker_id")
        .annotate(first=Min("start"))
    )
    return {row["ticker_id"]: row["first"] for row in rows}


def unobserved(
    ticker_ids, streams, start: datetime, end: datetime
) -> tuple[dict[int, list[tuple[datetime, datetime]]], dict[int, datetime]]:
    """Per ticker: the gaps in [start, end) after its coverage began; and when
    its coverage began (tickers without any are absent)."""
    now = timezone.now()
    end = min(end, now)
    firsts = known_from(ticker_ids, streams)
    observed = intervals(firsts, streams, start, end) if firsts else {}
    out = {}
    for tid, first in firsts.items():
        since = max(start, first)
        spans = [(row.start, reach(row, now)) for row in observed.get(tid, ())]
        out[tid] = gaps(since, end, spans) if since < end else []
    return out, firsts


def reach(row: Coverage, now: datetime) -> datetime:
    """Where an interval stops, as far as readers can tell."""
    if row.end is not None:
        return row.end
    if (now - row.seen_through).total_seconds() < CRASH_AFTER:
        return now
    return row.seen_through
