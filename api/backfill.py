"""Rebuilding the bars of unobserved seconds from EODHD's US tick history
(`manage.py backfill_gaps`; docs/coverage.md).

For each symbol and window:

1. Plan. The whole seconds the coverage records say were not observed in full
   (the gaps, and the seconds an interval's edge cuts) are grouped into fetch
   ranges of whole minutes, at most CHUNK long and aligned to a CHUNK grid, so
   the same gaps always give the same ranges. A range already stored
   (`api.models.Backfill`, status done) is skipped: a run is idempotent, and an
   interrupted run resumes with the ranges not done.
2. Fetch. Each range page by page (at most MAX_PAGE_ROWS ticks a request, paged
   by time, de-duplicated on (ts, seq): api.market.ticks), each request first
   taking its cost from the API key's daily budget shared through the database
   (api/budget.py). A 404 means the day is not published yet (the next trading
   day it is): the run stops and says so. A 429 waits as the server asks (at
   most MAX_WAIT) and retries; a broken page (cut short, not JSON) or a 5xx is
   retried a few times.
3. Build with the live rules: the same ingest (api.pipeline.ingest), the same
   trade-condition rules (the sale-condition letters mapped to the codes the
   rules read: api.market.ticks.LETTERS).
4. Store, through the live store, with source `backfill`: the 1-second bars of
   the unobserved seconds only (a second observed in full is never overwritten),
   and every 1-minute bar that holds one of them, rebuilt whole from the tape.
   100-trade bars whose trades span a gap are marked (`spans_gap`): their
   numbering follows the live stream, which missed trades. The live bars of the
   observed seconds in the range are compared with the tape (volume, closes) and
   the figures kept on the range's record for the data-quality report.
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import requests

from django.db.models import Q

from api import budget, observed
from api.market import ticks
from api.market.coverage import gaps, merge, unobserved_seconds
from api.models import (
    Backfill,
    BackfillStatus,
    SecondSnapshot,
    Source,
    TickCandle100,
    Ticker,
)
from api.pipeline.ingest import Ingest
from api.pipeline.kinds import MINUTE, SECOND
from api.pipeline.store import Store
from api.redact import mask_token

logger = logging.getLogger(__name__)

CHUNK = 900  # seconds: the longest fetch range, and its grid
RETRIES = 3  # attempts of one page after a broken answer
BACKOFF = 1.0  # seconds before the first retry, doubling (at most 10)
MAX_WAIT = 60.0  # seconds a 429's Retry-After is honoured at most
TIMEOUT = 30.0  # seconds per request
IN_FLIGHT = 1.0  # seconds at each end of an interval not trusted (see trusted())


class Unpublished(Exception):
    """404: the tick history of that day is not published yet."""


class OutOfBudget(Exception):
    """The key's daily budget cannot pay for another request."""


class FetchFailed(Exception):
    pass


@dataclass
class Range:
    """One fetch: [start, end) in whole seconds (whole minutes), and the seconds
    in it to fill (runs [a, b))."""

    start: int
    end: int
    fill: list[tuple[int, int]]


@dataclass
class Report:
    ranges: int = 0
    skipped: int = 0  # already done
    requests: int = 0
    calls: int = 0
    ticks: int = 0
    seconds_filled: int = 0
    minutes_rebuilt: int = 0
    candles_marked: int = 0
    unpublished: bool = False
    out_of_budget: bool = False
    failed: list[str] = field(default_factory=list)


def _epoch(value: datetime) -> float:
    return value.timestamp()


def _dt(second: float) -> datetime:
    return datetime.fromtimestamp(second, tz=UTC)


def spans(ticker: Ticker, stream: str, start: datetime, end: datetime) -> list:
    """The ticker's observed intervals overlapping [start, end), epoch seconds."""
    now = datetime.now(tz=UTC)
    rows = observed.intervals([ticker.pk], (stream,), start, end).get(ticker.pk, [])
    return [(_epoch(r.start), _epoch(observed.reach(r, now))) for r in rows]


def trusted(observed_spans: list) -> list:
    """The spans whose prints surely all arrived: IN_FLIGHT in from each end.

    An interval's times are the collector's clock when it subscribed and when
    the link ended; a print is stamped by the exchange, and reaches us a moment
    later (latency, the two clocks' skew). Prints stamped just before a drop
    were still in flight, and ones just after a subscription may have been sent
    before the feed knew of it: those seconds are rebuilt from the tape too."""
    out = []
    for a, b in merge(observed_spans):  # a hand-over between collectors is no edge
        a, b = a + IN_FLIGHT, b - IN_FLIGHT
        if a < b:
            out.append((a, b))
    return out


def plan(observed_spans: list, start: int, end: int) -> list[Range]:
    """Fetch ranges for the seconds of [start, end) not observed in full."""
    runs = unobserved_seconds(start, end, observed_spans)
    chunks: dict[int, list[tuple[int, int]]] = {}
    for a, b in runs:
        at = a
        while at < b:
            cell = at // CHUNK * CHUNK
            upto = min(b, cell + CHUNK)
            chunks.setdefault(cell, []).append((at, upto))
            at = upto
    out = []
    for cell in sorted(chunks):
        fill = chunks[cell]
        first = max(cell, fill[0][0] // 60 * 60)
        last = min(cell + CHUNK, math.ceil(fill[-1][1] / 60) * 60)
        out.append(Range(first, last, fill))
    return out


class TickClient:
    """EODHD's GET /ticks/, one page at a time, paid from the shared budget."""

    def __init__(
        self,
        base: str,
        api_key: str,
        *,
        cost: int,
        daily_calls: int,
        page_rows: int = ticks.MAX_PAGE_ROWS,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = base.rstrip("/") + "/ticks/"
        self.api_key = api_key
        self.cost = cost
        self.daily_calls = daily_calls
        # The rows a response holds at most: a shorter page ends the range, so
        # this must not be above what the server really returns.
        self.page_rows = page_rows
        self.session = session or requests.Session()
        self.sleep = sleep
        self.requests = 0
        self.calls = 0

    def page(
        self, symbol: str, from_s: int, to_s: int, tape: str | None
    ) -> ticks.TickPage:
        params = ticks.request_params(f"{symbol}.US", from_s, to_s, self.page_rows)
        params["api_token"] = self.api_key
        problem = ""
        for attempt in range(RETRIES + 1):
            if not budget.spend(self.api_key, self.cost, self.daily_calls):
                raise OutOfBudget(
                    f"the daily budget of {self.daily_calls} API calls is spent"
                )
            self.requests += 1
            self.calls += self.cost
            try:
                response = self.session.get(self.url, params=params, timeout=TIMEOUT)
                status = response.status_code
                body = response.content if status == 200 else b""
            except requests.RequestException as exc:
                # Includes a body cut short (the connection closed mid-page).
                problem = mask_token(str(exc))
                self.sleep(min(BACKOFF * 2**attempt, 10))
                continue
            if status == 404:
                raise Unpublished(f"{symbol} {_dt(from_s):%Y-%m-%d}: 404")
            if status == 429:
                wait = _retry_after(response.headers.get("Retry-After"))
                logger.warning("⏳ tick history: 429, waiting %.0f s", wait)
                self.sleep(wait)
                continue
            if status != 200:
                problem = f"HTTP {status}"
                self.sleep(min(BACKOFF * 2**attempt, 10))
                continue
            try:
                return ticks.parse_page(body, symbol, tape)
            except ticks.TickPageError as exc:
                problem = f"a broken page ({exc})"
                self.sleep(min(BACKOFF * 2**attempt, 10))
        raise FetchFailed(
            f"{symbol} {_dt(from_s):%H:%M:%S}: {problem or 'rate limited'}"
        )

    def fetch(self, symbol: str, start: int, end: int, tape: str | None) -> list:
        """Every print of [start, end), once, in tape order."""
        dedupe = ticks.Dedupe()
        out = []
        from_s = start
        limit = self.page_rows
        while True:
            page = self.page(symbol, from_s, end, tape)
            out.extend(dedupe.add_page(page))
            if page.skipped or page.unknown_letters:
                # A new sale-condition letter counts as a regular sale until the
                # table (api/market/ticks.py) knows it: say so, once a page.
                logger.warning(
                    "⚠️ %s tick history: %d rows skipped %s, unknown letters %s",
                    symbol,
                    page.skipped,
                    dict(page.reasons),
                    dict(page.unknown_letters),
                    extra={"dedupe": "tick page problems"},
                )
            step = ticks.next_page(from_s, end, page.rows, limit, page.last_ts_ms)
            if step.stuck:
                logger.warning(
                    "⚠️ %s: more than %d prints in the second at %s: the rest of "
                    "that second cannot be paged to",
                    symbol,
                    limit,
                    _dt(from_s),
                )
            if step.done:
                return [t for t in out if start * 1000 <= t.ts_ms < end * 1000]
            dedupe.advance(step.from_s * 1000)
            from_s = step.from_s


def _retry_after(raw: str | None) -> float:
    try:
        return min(max(float(raw), 1.0), MAX_WAIT)
    except (TypeError, ValueError):
        return 5.0


def build(trades: list, conditions: str) -> dict:
    """1-second and 1-minute bars of these prints by the live rules."""
    ingest = Ingest(
        (SECOND, MINUTE), grace=0.0, revision_window=0.0, conditions=conditions
    )
    # `now` only guards against clocks in the future: the tape's last print is
    # the present of a build from history. Nothing closes before finish().
    now = max((t.ts_ms for t in trades), default=0) / 1000
    ingest.add(trades, now)
    return ingest.finish()


def backfill_range(
    ticker: Ticker,
    stream: str,
    r: Range,
    client: TickClient,
    conditions: str,
    gap_spans: list,
) -> Backfill:
    """Fetch, build and store one range; its record (status done)."""
    requests_before, calls_before = client.requests, client.calls
    tape = ticks.tape_for_exchange(ticker.exchange)
    trades = client.fetch(ticker.symbol, r.start, r.end, tape)
    bars = build(trades, conditions)
    fill = set()
    for a, b in r.fill:
        fill.update(range(a, b))
    seconds = [(bar, None) for bar in bars.get(SECOND, []) if bar.second in fill]
    minutes_touched = {s // 60 * 60 for s in fill}
    minutes = [
        (bar, None) for bar in bars.get(MINUTE, []) if bar.second in minutes_touched
    ]
    store = Store(Source.BACKFILL, keep_scores=True)
    outcome = store.write({SECOND: seconds, MINUTE: minutes})
    for rejected in outcome.rejected:
        logger.warning("⚠️ %s: not stored: %s", ticker.symbol, rejected.reason)
    # (A live bar in an unobserved second the tape has no print for stays: the
    # live stream and the tape need not carry the same prints.)
    record = _compare(ticker, r, fill, bars.get(SECOND, []))
    marked = mark_candles(ticker, gap_spans, r)
    record.update(
        status=BackfillStatus.DONE,
        requests=client.requests - requests_before,
        calls=client.calls - calls_before,
        ticks=len(trades),
        seconds_filled=len(seconds),
        minutes_rebuilt=len(minutes),
        error="",
    )
    row, _ = Backfill.objects.update_or_create(
        ticker=ticker,
        stream=stream,
        start=_dt(r.start),
        end=_dt(r.end),
        defaults=record,
    )
    row.candles_marked = marked
    return row


def _compare(ticker: Ticker, r: Range, fill: set, tape_bars: list) -> dict:
    """The live bars of the range's observed seconds against the tape's."""
    tape = {bar.second: bar for bar in tape_bars if bar.second not in fill}
    live = {
        int(_epoch(row[0])): row[1:]
        for row in SecondSnapshot.objects.filter(
            ticker=ticker, timestamp__gte=_dt(r.start), timestamp__lt=_dt(r.end)
        ).values_list("timestamp", "ohlc_1sec_volume", "ohlc_1sec_close")
        if int(_epoch(row[0])) not in fill
    }
    compared = set(tape) | set(live)
    live_volume = sum((v for v, _ in live.values()), Decimal(0))
    tape_volume = sum((b.volume for b in tape.values()), Decimal(0))
    mismatches, worst = 0, None
    for second in compared:
        ours = live.get(second, (None, None))[1]
        theirs = tape[second].close if second in tape else None
        if ours is not None and theirs is not None and ours != theirs:
            mismatches += 1
            diff = abs(ours - theirs)
            worst = diff if worst is None else max(worst, diff)
    return {
        "compared_seconds": len(compared),
        "live_volume": live_volume,
        "tape_volume": tape_volume,
        "close_mismatches": mismatches,
        "max_close_diff": worst,
    }


def mark_candles(ticker: Ticker, gap_spans: list, r: Range) -> int:
    """100-trade bars with trades on both sides of, or inside, a gap."""
    clause = Q(pk__in=[])
    for a, b in gap_spans:
        if b <= r.start or a >= r.end:
            continue
        clause |= Q(first_tick_time__lt=_dt(b), last_tick_time__gte=_dt(a))
    return TickCandle100.objects.filter(clause, ticker=ticker, spans_gap=False).update(
        spans_gap=True
    )


def backfill(
    ticker: Ticker,
    stream: str,
    start: int,
    end: int,
    client: TickClient,
    conditions: str,
    report: Report,
    dry_run: bool = False,
) -> None:
    """Every range of one symbol's window not done yet."""
    observed_spans = spans(ticker, stream, _dt(start), _dt(end))
    gap_spans = gaps(start, end, merge(observed_spans))
    for r in plan(trusted(observed_spans), start, end):
        done = Backfill.objects.filter(
            ticker=ticker,
            stream=stream,
            start=_dt(r.start),
            end=_dt(r.end),
            status=BackfillStatus.DONE,
        ).exists()
        if done:
            report.skipped += 1
            continue
        report.ranges += 1
        if dry_run:
            continue
        before = (client.requests, client.calls)
        try:
            row = backfill_range(ticker, stream, r, client, conditions, gap_spans)
        except (Unpublished, OutOfBudget) as exc:
            _record_failure(ticker, stream, r, client, before, exc)
            raise
        except FetchFailed as exc:
            _record_failure(ticker, stream, r, client, before, exc)
            report.failed.append(str(exc))
            continue
        finally:
            report.requests += client.requests - before[0]
            report.calls += client.calls - before[1]
        report.ticks += row.ticks
        report.seconds_filled += row.seconds_filled
        report.minutes_rebuilt += row.minutes_rebuilt
        report.candles_marked += row.candles_marked


def _record_failure(ticker, stream, r: Range, client, before, exc) -> None:
    status = {
        Unpublished: BackfillStatus.UNPUBLISHED,
        OutOfBudget: BackfillStatus.PARTIAL,
    }.get(type(exc), BackfillStatus.FAILED)
    Backfill.objects.update_or_create(
        ticker=ticker,
        stream=stream,
        start=_dt(r.start),
        end=_dt(r.end),
        defaults={
            "status": status,
            "requests": client.requests - before[0],
            "calls": client.calls - before[1],
            "error": str(exc)[:200],
        },
    )
