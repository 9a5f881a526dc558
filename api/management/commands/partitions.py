"""python manage.py partitions — create the coming partitions of the
time-partitioned bar tables and report their state (PostgreSQL; see
api/partitions.py and docs/partitions.md).

The collector does the same every hour while it is the writer; run this from
cron or a systemd timer as well when no collector may run for a while (a
weekend, a holiday), or after restoring old data. Rows that landed in a default
partition (written while their partition was missing) are moved into the
partition created for them. Exit status 1 with --check when a default partition
still holds rows.
"""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from api import partitions


class Command(BaseCommand):
    help = "Create the coming partitions of the bar tables; report defaults."

    def add_arguments(self, parser):
        parser.add_argument(
            "--ahead",
            type=int,
            help="periods to create ahead (default: 7 days; 2 months for minute bars)",
        )
        parser.add_argument(
            "--at",
            help="act as if now were this ISO 8601 time (UTC if no offset): create "
            "the partitions around it, e.g. before loading old data",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="exit 1 when a default partition holds rows",
        )

    def handle(self, *args, **options):
        if not partitions.supported():
            self.stdout.write(
                f"{connection.vendor}: bar tables are plain tables; nothing to do"
            )
            return
        if options["ahead"] is not None and options["ahead"] < 0:
            raise CommandError("--ahead must not be negative")
        now = None
        if options["at"]:
            try:
                now = datetime.fromisoformat(options["at"])
            except ValueError:
                raise CommandError(f"--at {options['at']!r} is not ISO 8601") from None
            if now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
        created = partitions.ensure(now, ahead=options["ahead"])
        defaults = partitions.default_rows()
        with connection.cursor() as cursor:
            for scheme in partitions.SCHEMES:
                if not partitions.is_partitioned(cursor, scheme.table):
                    self.stdout.write(f"{scheme.table}: not partitioned")
                    continue
                have = sorted(partitions.partitions(cursor, scheme))
                mine = [name for name in created if name.startswith(scheme.table)]
                span = f"{have[0]} … {have[-1]}" if have else "none"
                self.stdout.write(
                    f"{scheme.table}: {len(have)} {scheme.period} partitions ({span}), "
                    f"created {len(mine)}, default partition "
                    f"{defaults.get(scheme.table, 0)} rows"
                )
        if options["check"] and any(defaults.values()):
            raise CommandError(
                "rows are in a default partition: see above (run without --check "
                "after creating their partitions with --at)"
            )
