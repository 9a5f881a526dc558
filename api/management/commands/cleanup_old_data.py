"""python manage.py cleanup_old_data — delete rows past their retention.

Time-partitioned tables (1-second, 1-minute and quote bars on PostgreSQL: see
api/partitions.py) lose every partition wholly past the retention at once: detach
and drop, no row-by-row delete, no vacuum debt. Whatever remains past it (the
partition the cutoff falls in, the default partition, unpartitioned tables) is
deleted in small batches, each its own short transaction, so a large table is never
locked for long and the collector can keep writing meanwhile. The newest 100-trade
bar of each ticker is always kept: the collector resumes its numbering from it.
"""

import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from api import partitions
from api.models import (
    MinuteSnapshot,
    OHLCVTick,
    QuoteSnapshot,
    SecondSnapshot,
    TickCandle100,
    Ticker,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90m', '1h', '7d', '2w' -> timedelta."""
    match = _DURATION.match(str(text).lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90m, 1h, 7d or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


class Command(BaseCommand):
    help = (
        "Delete ticks, 1-second, 1-minute and 100-trade bars older than their "
        "retention."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--ticks",
            default=settings.RETENTION_TICKS,
            help="keep OHLCVTick rows this long (default %(default)s, from "
            "RETENTION_TICKS)",
        )
        parser.add_argument(
            "--seconds",
            default=settings.RETENTION_SECOND_BARS,
            help="keep SecondSnapshot rows this long (default %(default)s, from "
            "RETENTION_SECOND_BARS)",
        )
        parser.add_argument(
            "--minutes",
            default=settings.RETENTION_MINUTE_BARS,
            help="keep MinuteSnapshot rows this long (default %(default)s, from "
            "RETENTION_MINUTE_BARS)",
        )
        parser.add_argument(
            "--candles",
            default=settings.RETENTION_TICK_CANDLES,
            help="keep TickCandle100 rows this long (default %(default)s, from "
            "RETENTION_TICK_CANDLES)",
        )
        parser.add_argument(
            "--quotes",
            default=settings.RETENTION_QUOTE_BARS,
            help="keep QuoteSnapshot rows this long (default %(default)s, from "
            "RETENTION_QUOTE_BARS)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=5000,
            help="rows deleted per transaction (default %(default)s)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would go; delete nothing"
        )
        parser.add_argument("--verbose", action="store_true")

    def handle(self, *args, **options):
        try:
            keep = {
                "ticks": parse_duration(options["ticks"]),
                "seconds": parse_duration(options["seconds"]),
                "minutes": parse_duration(options["minutes"]),
                "candles": parse_duration(options["candles"]),
                "quotes": parse_duration(options["quotes"]),
            }
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        self.batch = options["batch_size"]
        self.dry_run = options["dry_run"]
        self.verbose = options["verbose"]
        now = timezone.now()
        results = [
            (
                "OHLCVTick",
                self.purge(OHLCVTick.objects.filter(timestamp__lt=now - keep["ticks"])),
                [],
            ),
            self.expire(SecondSnapshot, now - keep["seconds"]),
            self.expire(MinuteSnapshot, now - keep["minutes"]),
            ("TickCandle100", self.purge_candles(now - keep["candles"]), []),
            self.expire(QuoteSnapshot, now - keep["quotes"]),
        ]
        verb = "would delete" if self.dry_run else "deleted"
        for name, count, dropped in results:
            line = f"{name}: {verb} {count} rows"
            if dropped:
                would = "would be " if self.dry_run else ""
                line += f" ({len(dropped)} partitions {would}dropped whole)"
            self.stdout.write(line)
            if self.verbose:
                for partition in dropped:
                    self.stdout.write(f"  {partition.name}: {partition.rows} rows")

    def expire(self, model, cutoff) -> tuple[str, int, list]:
        """A time-partitioned table (PostgreSQL) loses its whole partitions older
        than the cutoff at once; what is left (the partition the cutoff falls in,
        the default partition) goes in batches, as on an unpartitioned table."""
        dropped = partitions.drop_before(model._meta.db_table, cutoff, self.dry_run)
        old = model.objects.filter(timestamp__lt=cutoff)
        if self.dry_run:
            return model.__name__, old.count(), dropped
        return model.__name__, sum(d.rows for d in dropped) + self.purge(old), dropped

    def purge(self, queryset) -> int:
        if self.dry_run:
            return queryset.count()
        total = 0
        while True:
            ids = list(
                queryset.order_by("pk").values_list("pk", flat=True)[: self.batch]
            )
            if not ids:
                return total
            with transaction.atomic():
                # The queryset's own filter too: on a partitioned table it
                # limits the delete to the partitions it can touch.
                deleted, _ = queryset.filter(pk__in=ids).delete()
            total += deleted
            if self.verbose:
                self.stdout.write(
                    f"  {queryset.model.__name__}: {total} deleted so far"
                )

    def purge_candles(self, cutoff) -> int:
        total = 0
        newest = Ticker.objects.annotate(last=Max("tick_candles__candle_number"))
        for ticker in newest.exclude(last=None):
            queryset = TickCandle100.objects.filter(
                ticker=ticker, completed_at__lt=cutoff, candle_number__lt=ticker.last
            )
            total += self.purge(queryset)
        return total
