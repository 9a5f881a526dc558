"""Time-partitioned bar tables on real PostgreSQL: the migration of a populated
table, partition pruning, the default partition as a safety net, retention by
dropping partitions, and an admin that never counts a whole table."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest

from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api import partitions
from api.market.bars import TimeBar
from api.models import SecondSnapshot, Ticker
from api.pipeline.kinds import SECOND
from api.pipeline.store import Store

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TABLE = "api_second_snapshot"


def bar(second: int, price: str = "10.5") -> tuple[TimeBar, None]:
    p = Decimal(price)
    return (
        TimeBar(
            "AAPL", second, p, p, p, p, Decimal(3), 2, p, 0, 0, None, None, False, 2
        ),
        None,
    )


def seconds_at(*moments: datetime) -> list[int]:
    return [int(m.timestamp()) for m in moments]


def where(second: int) -> str:
    """The partition a stored 1-second bar is in."""
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT tableoid::regclass::text FROM "{TABLE}" WHERE "timestamp" = %s',
            [datetime.fromtimestamp(second, tz=UTC)],
        )
        return cursor.fetchone()[0]


def relkind(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s", [table])
        return cursor.fetchone()[0]


def stored() -> list[tuple]:
    return list(
        SecondSnapshot.objects.order_by("timestamp").values_list(
            "id", "ticker__symbol", "timestamp", "ohlc_1sec_close", "ohlc_1sec_volume"
        )
    )


def test_the_migration_partitions_a_populated_table_without_losing_a_row():
    now = timezone.now().replace(microsecond=0)
    call_command("migrate", "api", "0004", verbosity=0)
    try:
        assert relkind(TABLE) == "r"
        aapl = Ticker.objects.create(symbol="AAPL")
        rows = [
            SecondSnapshot(
                ticker=aapl,
                timestamp=now - timedelta(days=days, seconds=s),
                ohlc_1sec_close=Decimal("100.25") + s,
                ohlc_1sec_volume=Decimal("0.0000012345"),
                ohlc_1sec_tick_count=1,
                ohlc_1sec_eligible_count=1,
            )
            for days in (0, 3, 45)
            for s in range(5)
        ]
        SecondSnapshot.objects.bulk_create(rows)
        before = stored()

        call_command("migrate", "api", verbosity=0)

        assert relkind(TABLE) == "p"
        assert stored() == before
        # Every day that held rows has its partition: none went to the default.
        assert partitions.default_rows()[TABLE] == 0
        old = int((now - timedelta(days=45)).timestamp())
        assert where(old) == f"{TABLE}_p{now - timedelta(days=45):%Y%m%d}"
        # The unique key, the upsert and the id sequence carry on.
        second = int(before[-1][2].timestamp())
        Store("eodhd_ws").write({SECOND: [bar(second, "7"), bar(second + 1, "8")]})
        assert SecondSnapshot.objects.get(timestamp=before[-1][2]).ohlc_1sec_close == 7
        assert SecondSnapshot.objects.count() == len(before) + 1
        assert SecondSnapshot.objects.order_by("-id")[0].id > max(r[0] for r in before)

        # And back: a plain table with the same rows.
        call_command("migrate", "api", "0004", verbosity=0)
        assert relkind(TABLE) == "r"
        assert len(stored()) == len(before) + 1
    finally:
        call_command("migrate", "api", verbosity=0)
    assert relkind(TABLE) == "p"


def test_a_read_of_a_window_touches_only_the_partitions_of_that_window():
    now = timezone.now()
    ticker = Ticker.objects.create(symbol="AAPL")
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    window = SecondSnapshot.objects.filter(
        ticker=ticker, timestamp__gte=start, timestamp__lt=start + timedelta(hours=1)
    ).order_by("timestamp")
    plan = window.explain()
    today = f"{TABLE}_p{start:%Y%m%d}"
    assert today in plan
    others = [
        name
        for name in partitions.partitions(
            connection.cursor(), partitions.BY_TABLE[TABLE]
        ).values()
        if name != today
    ]
    assert others and not any(name in plan for name in others)
    assert f"{TABLE}_default" not in plan


def test_a_bar_without_its_partition_is_stored_in_the_default_and_moved_later():
    future = timezone.now() + timedelta(days=60)
    [second] = seconds_at(future)
    outcome = Store("eodhd_ws").write({SECOND: [bar(second)]})
    assert outcome.rejected == []  # never a failed insert
    assert where(second) == f"{TABLE}_default"
    assert partitions.default_rows()[TABLE] == 1
    out = StringIO()
    call_command("check", "--database", "default", stdout=out, stderr=out)
    assert "api.W104" in out.getvalue()

    created = partitions.ensure(now=future, ahead=0)

    assert f"{TABLE}_p{future:%Y%m%d}" in created
    assert where(second) == f"{TABLE}_p{future:%Y%m%d}"
    assert partitions.default_rows()[TABLE] == 0
    out = StringIO()
    call_command("check", "--database", "default", stdout=out, stderr=out)
    assert "api.W104" not in out.getvalue()


def test_retention_drops_whole_partitions_and_deletes_the_rest_in_batches():
    now = timezone.now()
    days = [now - timedelta(days=d) for d in (12, 11, 10, 3, 0)]
    for day in days:
        partitions.ensure(now=day, ahead=0)
    # Two bars a day; the partition 8 days back exists but is empty.
    Store("eodhd_ws").write(
        {SECOND: [bar(s) for d in days for s in seconds_at(d, d - timedelta(hours=1))]}
    )
    cutoff_day = (now - timedelta(days=7)).date()
    doomed = [f"{TABLE}_p{d:%Y%m%d}" for d in days[:3]]
    out = StringIO()
    call_command("cleanup_old_data", "--seconds", "7d", "--dry-run", stdout=out)
    assert "SecondSnapshot: would delete 6 rows" in out.getvalue()
    with connection.cursor() as cursor:
        names = set(partitions.partitions(cursor, partitions.BY_TABLE[TABLE]).values())
    assert set(doomed) <= names  # a dry run drops nothing

    out = StringIO()
    call_command("cleanup_old_data", "--seconds", "7d", "--verbose", stdout=out)

    text = out.getvalue()
    assert "SecondSnapshot: deleted 6 rows" in text
    with connection.cursor() as cursor:
        left = partitions.partitions(cursor, partitions.BY_TABLE[TABLE])
    assert not set(doomed) & set(left.values())
    assert all(start > cutoff_day - timedelta(days=1) for start in left)
    assert SecondSnapshot.objects.count() == 4
    assert "partitions dropped whole" in text


def test_the_admin_never_counts_a_whole_bar_table(admin_client):
    ticker = Ticker.objects.create(symbol="AAPL")
    start = timezone.now() - timedelta(hours=1)
    SecondSnapshot.objects.bulk_create(
        SecondSnapshot(
            ticker=ticker,
            timestamp=start + timedelta(seconds=i),
            ohlc_1sec_volume=1,
            ohlc_1sec_tick_count=1,
            ohlc_1sec_eligible_count=0,
        )
        for i in range(30)
    )
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/api/secondsnapshot/")
    assert page.status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts
    assert all("LIMIT" in sql.upper() for sql in counts if TABLE in sql)
    assert "DISTINCT" not in " ".join(q["sql"] for q in queries).upper()


def test_the_writing_collector_creates_the_coming_partitions_and_watches_defaults():
    from tests.integration.test_collector import collector, feed, wait_until

    scheme = partitions.BY_TABLE[TABLE]
    tomorrow = scheme.name(scheme.shift(scheme.start_of(timezone.now()), 1))
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE "{tomorrow}"')
    with feed(rate=100, seed=3) as server:
        with collector(server, metrics_port=0) as app:
            assert wait_until(lambda: app.default_partition_rows, 15)
            assert app.default_partition_rows == {
                "api_second_snapshot": 0,
                "api_quote_second": 0,
                "api_minute_snapshot": 0,
            }
            from tests.integration.test_quote_streams import scrape

            metrics = scrape(app)
    assert (
        'collector_default_partition_rows{table="api_second_snapshot"} 0.0' in metrics
    )
    with connection.cursor() as cursor:
        assert tomorrow in partitions.partitions(cursor, scheme).values()


def test_retention_drops_a_partition_written_in_the_same_open_transaction():
    """cleanup_old_data called inside a transaction that has just written to a
    doomed partition (a test's, a script's): the rows' deferred foreign-key
    checks are settled first, so PostgreSQL lets the partition go."""
    now = timezone.now()
    old = now - timedelta(days=3)
    partitions.ensure(now=old, ahead=0)
    doomed = f"{TABLE}_p{old:%Y%m%d}"
    with transaction.atomic():
        Store("eodhd_ws").write({SECOND: [bar(s) for s in seconds_at(old)]})
        assert where(seconds_at(old)[0]) == doomed
        dropped = partitions.drop_before(TABLE, now - timedelta(days=1))
        assert doomed in [d.name for d in dropped]
    with connection.cursor() as cursor:
        assert (
            doomed
            not in partitions.partitions(cursor, partitions.BY_TABLE[TABLE]).values()
        )
    assert SecondSnapshot.objects.count() == 0
