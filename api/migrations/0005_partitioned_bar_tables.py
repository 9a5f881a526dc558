"""On PostgreSQL: the 1-second, quote and 1-minute bar tables become range-
partitioned by `timestamp` (api/partitions.py, docs/partitions.md), keeping
every row, the table names, the unique keys on (ticker, timestamp), the indexes'
and constraints' names and the id sequence. On other databases: nothing (plain
tables).

The conversion copies the table inside the migration's transaction: plan for
it on a large table (about a minute per ten million rows here).
"""

from datetime import UTC, datetime

from django.db import migrations

from api import partitions

TABLES = ("api_second_snapshot", "api_quote_second", "api_minute_snapshot")


def _names(cursor, table: str) -> dict:
    """The old table's constraint and index names, to give the new one."""
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'f')",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)",
        [table],
    )
    return {"constraints": constraints, "indexes": cursor.fetchall()}


def _convert(cursor, table: str, partitioned: bool) -> None:
    names = _names(cursor, table)
    new = f"{table}__new"
    by = ' PARTITION BY RANGE ("timestamp")' if partitioned else ""
    cursor.execute(
        f'CREATE TABLE "{new}" (LIKE "{table}" INCLUDING DEFAULTS INCLUDING IDENTITY '
        f"INCLUDING CONSTRAINTS){by}"
    )
    scheme = partitions.BY_TABLE[table]
    if partitioned:
        cursor.execute(f'CREATE TABLE "{scheme.default}" PARTITION OF "{new}" DEFAULT')
        # A partition for every period holding rows, and the ones around now.
        cursor.execute(f'SELECT min("timestamp"), max("timestamp") FROM "{table}"')
        low, high = cursor.fetchone()
        now = datetime.now(tz=UTC)
        if low is not None:
            start, stop = scheme.start_of(low), scheme.start_of(high)
            while start <= stop:
                _partition(cursor, scheme, new, start)
                start = scheme.shift(start, 1)
        current = scheme.start_of(now)
        for offset in range(-scheme.behind, scheme.ahead + 1):
            _partition(cursor, scheme, new, scheme.shift(current, offset))
    cursor.execute(f'INSERT INTO "{new}" SELECT * FROM "{table}"')
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('\"{new}\"', 'id'), "
        f'COALESCE((SELECT max(id) FROM "{new}"), 0) + 1, false)'
    )
    cursor.execute(f'DROP TABLE "{table}"')
    cursor.execute(f'ALTER TABLE "{new}" RENAME TO "{table}"')
    cursor.execute(
        f"ALTER SEQUENCE {_sequence(cursor, table)} RENAME TO \"{table}_id_seq\""
    )
    # The old table's names are free again: give them to the new one.
    for name, kind, definition in names["constraints"]:
        if kind == "p":
            definition = 'PRIMARY KEY (id, "timestamp")' if partitioned else (
                "PRIMARY KEY (id)"
            )
        cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    for _name, definition in names["indexes"]:
        cursor.execute(definition)  # "CREATE INDEX <name> ON public.<table> ..."


def _sequence(cursor, table: str) -> str:
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [f'"{table}"'])
    return cursor.fetchone()[0]


def _partition(cursor, scheme, parent: str, start) -> None:
    name = scheme.name(start)
    cursor.execute("SELECT to_regclass(%s)", [name])
    if cursor.fetchone()[0] is not None:
        return
    lower = f"{start:%Y-%m-%d} 00:00:00+00"
    upper = f"{scheme.shift(start, 1):%Y-%m-%d} 00:00:00+00"
    cursor.execute(
        f'CREATE TABLE "{name}" PARTITION OF "{parent}" '
        f"FOR VALUES FROM ('{lower}') TO ('{upper}')"
    )


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in TABLES:
            if not partitions.is_partitioned(cursor, table):
                _convert(cursor, table, partitioned=True)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in TABLES:
            if partitions.is_partitioned(cursor, table):
                _convert(cursor, table, partitioned=False)


class Migration(migrations.Migration):
    dependencies = [("api", "0004_quote_second")]

    operations = [migrations.RunPython(forwards, backwards)]
