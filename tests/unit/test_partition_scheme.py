"""The partition naming and calendar arithmetic (no database)."""

from datetime import UTC, date, datetime, timedelta, timezone

from api.partitions import BY_TABLE, Scheme

DAYS = BY_TABLE["api_second_snapshot"]
MONTHS = BY_TABLE["api_minute_snapshot"]


def test_periods_start_at_utc_midnight_and_on_the_first_of_the_month():
    late_new_york = datetime(2026, 12, 31, 22, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert DAYS.start_of(late_new_york) == date(2027, 1, 1)  # 03:30 UTC
    assert MONTHS.start_of(late_new_york) == date(2027, 1, 1)
    assert MONTHS.start_of(datetime(2026, 2, 28, 23, 59, tzinfo=UTC)) == date(
        2026, 2, 1
    )


def test_shifting_crosses_month_and_year_ends():
    assert DAYS.shift(date(2026, 12, 31), 1) == date(2027, 1, 1)
    assert DAYS.shift(date(2028, 3, 1), -1) == date(2028, 2, 29)
    assert MONTHS.shift(date(2026, 11, 1), 2) == date(2027, 1, 1)
    assert MONTHS.shift(date(2026, 1, 1), -1) == date(2025, 12, 1)
    assert MONTHS.shift(date(2026, 1, 1), -13) == date(2024, 12, 1)


def test_a_name_says_its_period_and_only_its_own_names_are_read_back():
    assert DAYS.name(date(2026, 12, 1)) == "api_second_snapshot_p20261201"
    assert MONTHS.name(date(2026, 12, 1)) == "api_minute_snapshot_p202612"
    for scheme, start in ((DAYS, date(2026, 2, 3)), (MONTHS, date(2026, 2, 1))):
        assert scheme.start_from_name(scheme.name(start)) == start
    assert DAYS.start_from_name("api_second_snapshot_default") is None
    assert DAYS.start_from_name("api_second_snapshot_p202612") is None  # a month
    assert MONTHS.start_from_name("api_minute_snapshot_p20261201") is None
    assert Scheme("t", "day", 1).start_from_name("other_p20261201") is None
