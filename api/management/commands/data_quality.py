"""python manage.py data_quality — one trading session's data quality per
symbol: observed share, gaps, backfilled seconds, live bars against the tick
history (api/quality.py, docs/coverage.md). The admin shows the same report
under Coverage → Data quality.

Exit status 0; 2 on a bad option (a day the market was closed, a bad date).
"""

import json

from django.core.management.base import BaseCommand, CommandError

from api import quality


class Command(BaseCommand):
    help = "Per symbol: observed share of a session, gaps, backfill, live vs tape."

    def add_arguments(self, parser):
        parser.add_argument(
            "--date", help="the trading day (YYYY-MM-DD; default: the previous one)"
        )
        parser.add_argument(
            "--session", choices=("regular", "extended"), default="regular"
        )
        parser.add_argument("--symbols", help="comma-separated (default: all seen)")
        parser.add_argument("--json", action="store_true", help="one JSON document")

    def handle(self, *args, **options):
        try:
            day = quality.trading_day(options["date"])
        except ValueError as exc:
            raise CommandError(f"--date={exc}") from None
        try:
            start, end = quality.session_window(day, options["session"] == "extended")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        symbols = None
        if options["symbols"]:
            symbols = [s.strip().upper() for s in options["symbols"].split(",") if s]
        rows = quality.report(start, end, symbols)
        if options["json"]:
            document = {
                "date": day.isoformat(),
                "session": options["session"],
                "start": start.isoformat(),
                "end": end.isoformat(),
                "symbols": [row.as_json() for row in rows],
            }
            self.stdout.write(json.dumps(document, indent=1))
            return
        self.stdout.write(
            f"📋 {day} {options['session']} session "
            f"({start:%H:%M}-{end:%H:%M} UTC): {len(rows)} symbols"
        )
        for row in rows:
            self.stdout.write(format_row(row))


def format_row(row: quality.SymbolQuality) -> str:
    if not row.known:
        return f"{row.symbol}: no coverage recorded"
    text = (
        f"{row.symbol}: observed {row.observed_share:.2%}, gaps {row.gaps} "
        f"({row.gap_seconds:.0f} s"
    )
    if row.gaps:
        text += f", longest {row.longest_gap_seconds:.0f} s at "
        text += f"{row.longest_gap_start:%H:%M:%S}"
    text += f"), backfilled {row.backfilled_seconds} s"
    if row.backfill_waiting:
        text += f" ({row.backfill_waiting} ranges still to fetch)"
    if row.compared_seconds:
        ratio = f"{row.volume_ratio:.3f}" if row.volume_ratio is not None else "-"
        text += (
            f"; live vs tape over {row.compared_seconds} s: volume {ratio}, "
            f"closes differing {row.close_mismatches}"
        )
        if row.max_close_diff is not None:
            text += f" (at most {row.max_close_diff.normalize()})"
    return text
