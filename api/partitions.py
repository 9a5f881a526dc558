"""Time-partitioned bar tables on PostgreSQL (docs/partitions.md).

`api_second_snapshot` and `api_quote_second` are partitioned by day,
`api_minute_snapshot` by month, all by range of `timestamp` (UTC bounds), each
with a DEFAULT partition as a safety net: an insert never fails for want of a
partition. The parent keeps the names users rely on (table, unique key on
ticker + timestamp, indexes); its primary key is (id, timestamp), since a
partitioned table's keys must hold the partition column (Django still sees `id`
as the primary key: ids stay unique, drawn from one identity sequence).

Partitions are named `<table>_pYYYYMMDD` (days) or `<table>_pYYYYMM` (months):
the name says the range, so nothing parses PostgreSQL's bound expressions.

`TickCandle100` is not partitioned: its key (ticker, candle_number) holds no
time, and a partitioned unique key must. It grows by hundreds of rows per symbol
and day, not tens of thousands; retention deletes it in batches by its
`completed_at` index.

Everything here is a no-op on other databases (SQLite keeps plain tables).
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import connection as default_connection
from django.db import transaction


@dataclass(frozen=True)
class Scheme:
    table: str
    period: str  # "day" or "month"
    ahead: int  # periods created ahead of the current one
    behind: int = 1  # and behind it (a restart after midnight, late bars)

    @property
    def default(self) -> str:
        return f"{self.table}_default"

    def start_of(self, moment: datetime) -> date:
        day = moment.astimezone(UTC).date()
        return day if self.period == "day" else day.replace(day=1)

    def shift(self, start: date, periods: int) -> date:
        if self.period == "day":
            return start + timedelta(days=periods)
        months = start.year * 12 + start.month - 1 + periods
        return date(months // 12, months % 12 + 1, 1)

    def name(self, start: date) -> str:
        stamp = f"{start:%Y%m%d}" if self.period == "day" else f"{start:%Y%m}"
        return f"{self.table}_p{stamp}"

    def start_from_name(self, name: str) -> date | None:
        match = re.fullmatch(re.escape(self.table) + r"_p(\d{8}|\d{6})", name)
        if match is None:
            return None
        digits = match.group(1)
        if self.period == "day" and len(digits) == 8:
            return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
        if self.period == "month" and len(digits) == 6:
            return date(int(digits[:4]), int(digits[4:]), 1)
        return None


SCHEMES = (
    Scheme("api_second_snapshot", "day", ahead=7),
    Scheme("api_quote_second", "day", ahead=7),
    Scheme("api_minute_snapshot", "month", ahead=2),
)
BY_TABLE = {scheme.table: scheme for scheme in SCHEMES}


def _bound(start: date) -> str:
    return f"{start:%Y-%m-%d} 00:00:00+00"


def supported(connection=default_connection) -> bool:
    return connection.vendor == "postgresql"


def is_partitioned(cursor, table: str) -> bool:
    cursor.execute(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = %s AND c.relnamespace = 'public'::regnamespace",
        [table],
    )
    return cursor.fetchone() is not None


def partitions(cursor, scheme: Scheme) -> dict[date, str]:
    """The scheme's dated partitions: {period start: name}."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        [scheme.table],
    )
    found = {}
    for (name,) in cursor.fetchall():
        start = scheme.start_from_name(name)
        if start is not None:
            found[start] = name
    return found


def create(cursor, scheme: Scheme, start: date) -> str:
    """Create the partition for the period starting at `start`. Rows of that
    period already in the default partition (written while it was missing) are
    moved into it, in the same transaction."""
    name = scheme.name(start)
    lower, upper = _bound(start), _bound(scheme.shift(start, 1))
    table, default = scheme.table, scheme.default
    cursor.execute(
        f'SELECT 1 FROM "{default}" WHERE "timestamp" >= %s AND "timestamp" < %s '
        "LIMIT 1",
        [lower, upper],
    )
    if cursor.fetchone() is None:
        cursor.execute(
            f'CREATE TABLE "{name}" PARTITION OF "{table}" '
            f"FOR VALUES FROM ('{lower}') TO ('{upper}')"
        )
        return name
    # The default partition holds rows of this period: PostgreSQL would refuse
    # the new partition. Detach the default, create, move, re-attach.
    cursor.execute(f'ALTER TABLE "{table}" DETACH PARTITION "{default}"')
    cursor.execute(
        f'CREATE TABLE "{name}" PARTITION OF "{table}" '
        f"FOR VALUES FROM ('{lower}') TO ('{upper}')"
    )
    where = '"timestamp" >= %s AND "timestamp" < %s'
    cursor.execute(
        f'INSERT INTO "{name}" SELECT * FROM "{default}" WHERE {where}', [lower, upper]
    )
    cursor.execute(f'DELETE FROM "{default}" WHERE {where}', [lower, upper])
    cursor.execute(f'ALTER TABLE "{table}" ATTACH PARTITION "{default}" DEFAULT')
    return name


def ensure(
    now: datetime | None = None, connection=default_connection, ahead: int | None = None
) -> list[str]:
    """Create the partitions from `behind` periods before now to `ahead` after,
    for every partitioned table; the names created. Idempotent, atomic per
    partition."""
    if not supported(connection):
        return []
    now = now or datetime.now(tz=UTC)
    created = []
    with connection.cursor() as cursor:
        for scheme in SCHEMES:
            if not is_partitioned(cursor, scheme.table):
                continue
            have = partitions(cursor, scheme)
            current = scheme.start_of(now)
            periods = range(
                -scheme.behind, (scheme.ahead if ahead is None else ahead) + 1
            )
            for offset in periods:
                start = scheme.shift(current, offset)
                if start not in have:
                    created.append(_create_atomic(scheme, start, connection))
    return created


def _create_atomic(scheme: Scheme, start: date, connection) -> str:
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            return create(cursor, scheme, start)


def default_rows(connection=default_connection) -> dict[str, int]:
    """Rows waiting in each default partition (0 when all is well)."""
    if not supported(connection):
        return {}
    out = {}
    with connection.cursor() as cursor:
        for scheme in SCHEMES:
            if not is_partitioned(cursor, scheme.table):
                continue
            cursor.execute(f'SELECT count(*) FROM "{scheme.default}"')
            out[scheme.table] = cursor.fetchone()[0]
    return out


@dataclass
class Dropped:
    name: str
    rows: int  # counted before the drop (exact: a dry run reports the same)


def droppable(cursor, scheme: Scheme, cutoff: datetime) -> list[tuple[date, str]]:
    """Partitions whose whole range ends at or before `cutoff`, oldest first."""
    return sorted(
        (start, name)
        for start, name in partitions(cursor, scheme).items()
        if datetime.combine(scheme.shift(start, 1), datetime.min.time(), UTC) <= cutoff
    )


def drop_before(
    table: str, cutoff: datetime, dry_run: bool = False, connection=default_connection
) -> list[Dropped]:
    """Detach and drop every partition of `table` older than `cutoff` (its
    range ends at or before it). Rows of a partition only partly older, and of
    the default partition, are left to batched deletes."""
    scheme = BY_TABLE.get(table)
    if scheme is None or not supported(connection):
        return []
    dropped = []
    with connection.cursor() as cursor:
        if not is_partitioned(cursor, table):
            return []
        for _, name in droppable(cursor, scheme, cutoff):
            cursor.execute(f'SELECT count(*) FROM "{name}"')
            rows = cursor.fetchone()[0]
            if not dry_run:
                with transaction.atomic(using=connection.alias):
                    # Rows written earlier in an enclosing transaction leave
                    # deferred foreign-key checks pending on the partition,
                    # and PostgreSQL refuses to drop it until they have run.
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    cursor.execute(f'ALTER TABLE "{table}" DETACH PARTITION "{name}"')
                    cursor.execute(f'DROP TABLE "{name}"')
            dropped.append(Dropped(name, rows))
    return dropped
