"""python manage.py backfill_gaps — rebuild the bars of the seconds no collector
observed, from EODHD's US tick history (api/backfill.py, docs/coverage.md).

EODHD publishes a day's tick history on the next trading day, so the default is
the previous trading day's session. Run it from a timer after that (the systemd
unit in deploy/systemd/ does); a run is idempotent and resumable: ranges already
stored are skipped, and a run stopped by the budget, a 404 or a signal goes on
from there the next time.

Exit status: 0 when every range is stored or can only be fetched later (not
published yet, the day's API budget spent: it says so); 1 when a range failed
after its retries; 2 on a bad option.
"""

import math
from datetime import UTC, date, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from api import backfill, budget, quality
from api.market.calendar import previous_trading_day
from api.market.conditions import MODES
from api.models import Coverage, Ticker


def _instant(text: str, name: str) -> int:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{name}={text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


class Command(BaseCommand):
    help = "Rebuild the bars of unobserved seconds from EODHD's tick history."

    def add_arguments(self, parser):
        parser.add_argument(
            "--date",
            help="the trading day (YYYY-MM-DD; default: the previous trading day)",
        )
        parser.add_argument(
            "--session",
            choices=("regular", "extended"),
            default="regular",
            help="which part of the day: 09:30-16:00 ET, or 04:00-20:00 ET "
            "(default %(default)s)",
        )
        parser.add_argument(
            "--days",
            type=int,
            default=1,
            help="instead of --date: the N previous trading days (default 1); "
            "days already done cost nothing",
        )
        parser.add_argument("--from", dest="start", help="instead of --date: start")
        parser.add_argument("--to", dest="end", help="instead of --date: end")
        parser.add_argument(
            "--symbols", help="comma-separated (default: every symbol with coverage)"
        )
        parser.add_argument(
            "--conditions",
            choices=MODES,
            default=settings.COLLECTOR_CONDITIONS,
            help="trade-condition rules, as live (default %(default)s)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="plan and count; fetch nothing"
        )

    def handle(self, *args, **options):
        windows = self._windows(options)
        stream = "us"
        if options["symbols"]:
            names = [
                s.strip().upper() for s in options["symbols"].split(",") if s.strip()
            ]
            tickers = list(Ticker.objects.filter(symbol__in=names).order_by("symbol"))
            missing = sorted(set(names) - {t.symbol for t in tickers})
            if missing:
                raise CommandError(f"unknown symbols: {', '.join(missing)}")
        else:
            with_coverage = Coverage.objects.filter(stream=stream).values("ticker_id")
            tickers = list(
                Ticker.objects.filter(pk__in=with_coverage).order_by("symbol")
            )
        api_key = settings.EODHD_API_KEY
        if not api_key and not options["dry_run"]:
            raise CommandError("EODHD_API_KEY is not set")
        client = backfill.TickClient(
            settings.EODHD_API_BASE,
            api_key,
            cost=settings.EODHD_TICKS_CALL_COST,
            daily_calls=settings.EODHD_DAILY_CALLS,
            page_rows=settings.EODHD_TICKS_PAGE_ROWS,
        )
        report = backfill.Report()
        stopped = ""
        for start, end in windows:
            window = f"{_iso(start)} → {_iso(end)}"
            self.stdout.write(f"🩹 backfill {window}: {len(tickers)} symbols")
            for ticker in tickers:
                try:
                    backfill.backfill(
                        ticker,
                        stream,
                        start,
                        end,
                        client,
                        options["conditions"],
                        report,
                        dry_run=options["dry_run"],
                    )
                except backfill.Unpublished:
                    # That day is not out yet: later symbols would 404 too.
                    stopped = (
                        f"the tick history from {_iso(start)[:10]} on is not "
                        "published yet: run again later"
                    )
                    break
                except backfill.OutOfBudget as exc:
                    stopped = f"{exc}: the rest is done by the next run"
                    break
            if stopped:
                break
        used = budget.used(api_key) if api_key else 0
        self.stdout.write(
            f"ranges {report.ranges} (already done {report.skipped}), requests "
            f"{report.requests}, API calls {report.calls} (today {used} of "
            f"{settings.EODHD_DAILY_CALLS}), ticks {report.ticks}, seconds filled "
            f"{report.seconds_filled}, minutes rebuilt {report.minutes_rebuilt}, "
            f"100-trade bars marked {report.candles_marked}"
        )
        if options["dry_run"]:
            self.stdout.write("dry run: nothing fetched")
        if stopped:
            self.stdout.write(f"⏸️ stopped: {stopped}")
        for failure in report.failed:
            self.stderr.write(f"❌ {failure}")
        if report.failed:
            raise SystemExit(1)

    def _windows(self, options) -> list[tuple[int, int]]:
        """The windows to backfill, oldest first."""
        days = options["days"]
        if days < 1:
            raise CommandError("--days must be at least 1")
        if days > 1:
            if options["date"] or options["start"] or options["end"]:
                raise CommandError("give --days, --date or --from/--to, not several")
            day, out = datetime.now(tz=UTC).date(), []
            for _ in range(days):
                day = previous_trading_day(day)
                out.append(self._session(day, options))
            return out[::-1]
        return [self._window(options)]

    def _window(self, options) -> tuple[int, int]:
        if options["start"] or options["end"]:
            if options["date"]:
                raise CommandError("give --date or --from/--to, not both")
            if not (options["start"] and options["end"]):
                raise CommandError("--from and --to go together")
            start = _instant(options["start"], "--from")
            end = _instant(options["end"], "--to")
            if start >= end:
                raise CommandError("--from must be before --to")
            return start, end
        try:
            day = quality.trading_day(options["date"])
        except ValueError as exc:
            raise CommandError(f"--date={exc}") from None
        return self._session(day, options)

    def _session(self, day: date, options) -> tuple[int, int]:
        try:
            opens, closes = quality.session_window(
                day, options["session"] == "extended"
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return int(opens.timestamp()), math.ceil(closes.timestamp())


def _iso(second: int) -> str:
    return datetime.fromtimestamp(second, tz=UTC).isoformat().replace("+00:00", "Z")
