from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars
import pytest

from api.market.calendar import (
    early_close_days,
    fx_is_open,
    fx_next_close,
    fx_next_open,
    is_open,
    is_trading_day,
    next_close,
    next_open,
    session_bounds,
)

NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)

# The years the rules are checked against exchange_calendars, and the two years
# checked minute by minute.
CHECKED_YEARS = range(2004, 2031)
MINUTE_YEARS = (2025, 2026)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


def weekday_closures(year: int) -> list[date]:
    days = (date(year, 1, 1) + timedelta(days=n) for n in range(366))
    return [
        d for d in days if d.year == year and d.weekday() < 5 and not is_trading_day(d)
    ]


@pytest.fixture(scope="module")
def xnys() -> exchange_calendars.ExchangeCalendar:
    # Building the calendar is slow; one instance serves the whole module.
    return exchange_calendars.get_calendar(
        "XNYS", start=f"{CHECKED_YEARS[0]}-01-01", end=f"{CHECKED_YEARS[-1]}-12-31"
    )


# --- holidays and early closes, by hand ---------------------------------------


def test_it_closes_on_each_full_holiday_of_2025():
    assert weekday_closures(2025) == [
        date(2025, 1, 1),  # New Year's Day
        date(2025, 1, 9),  # National Day of Mourning, President Carter
        date(2025, 1, 20),  # Martin Luther King Jr. Day
        date(2025, 2, 17),  # Presidents' Day
        date(2025, 4, 18),  # Good Friday
        date(2025, 5, 26),  # Memorial Day
        date(2025, 6, 19),  # Juneteenth
        date(2025, 7, 4),  # Independence Day
        date(2025, 9, 1),  # Labor Day
        date(2025, 11, 27),  # Thanksgiving
        date(2025, 12, 25),  # Christmas
    ]


def test_it_closes_on_each_full_holiday_of_2026():
    assert weekday_closures(2026) == [
        date(2026, 1, 1),  # New Year's Day
        date(2026, 1, 19),  # Martin Luther King Jr. Day
        date(2026, 2, 16),  # Presidents' Day
        date(2026, 4, 3),  # Good Friday
        date(2026, 5, 25),  # Memorial Day
        date(2026, 6, 19),  # Juneteenth
        date(2026, 7, 3),  # Independence Day, observed (July 4 is a Saturday)
        date(2026, 9, 7),  # Labor Day
        date(2026, 11, 26),  # Thanksgiving
        date(2026, 12, 25),  # Christmas
    ]


def test_it_has_no_session_on_a_holiday_or_a_weekend():
    assert session_bounds(date(2026, 1, 19)) is None
    assert session_bounds(date(2026, 7, 3), extended=True) is None
    assert session_bounds(date(2026, 3, 7)) is None  # Saturday
    assert session_bounds(date(2026, 3, 8), extended=True) is None  # Sunday
    assert not is_open(utc(2026, 1, 19, 16, 0))
    assert not is_open(utc(2026, 1, 19, 16, 0), extended=True)


def test_it_lists_the_early_closes_of_2025_and_2026():
    assert early_close_days(2025) == {
        date(2025, 7, 3),
        date(2025, 11, 28),
        date(2025, 12, 24),
    }
    # July 3, 2026 is the observed Independence Day, so no early close then.
    assert early_close_days(2026) == {date(2026, 11, 27), date(2026, 12, 24)}


def test_it_closes_at_13_00_new_york_on_each_early_close_of_2025_and_2026():
    assert session_bounds(date(2025, 7, 3)) == (
        utc(2025, 7, 3, 13, 30),
        utc(2025, 7, 3, 17),
    )
    assert session_bounds(date(2025, 11, 28)) == (
        utc(2025, 11, 28, 14, 30),
        utc(2025, 11, 28, 18),
    )
    assert session_bounds(date(2025, 12, 24)) == (
        utc(2025, 12, 24, 14, 30),
        utc(2025, 12, 24, 18),
    )
    assert session_bounds(date(2026, 11, 27)) == (
        utc(2026, 11, 27, 14, 30),
        utc(2026, 11, 27, 18),
    )
    assert session_bounds(date(2026, 12, 24)) == (
        utc(2026, 12, 24, 14, 30),
        utc(2026, 12, 24, 18),
    )


def test_it_trades_new_years_eve_when_new_years_day_is_a_saturday(xnys):
    # NYSE does not observe a Saturday New Year's Day on the Friday before.
    assert date(2022, 1, 1).weekday() == 5
    assert is_trading_day(date(2021, 12, 31))
    assert xnys.is_session("2021-12-31")
    assert session_bounds(date(2021, 12, 31)) == (
        utc(2021, 12, 31, 14, 30),
        utc(2021, 12, 31, 21),
    )
    assert next_open(ny(2021, 12, 31, 17)) == utc(2022, 1, 3, 14, 30)


def test_it_closes_on_special_closings_as_exchange_calendars_does(xnys):
    # National days of mourning and Hurricane Sandy: both sources agree.
    for day in (
        date(2007, 1, 2),
        date(2012, 10, 29),
        date(2012, 10, 30),
        date(2018, 12, 5),
        date(2025, 1, 9),
    ):
        assert not is_trading_day(day), day
        assert not xnys.is_session(day.isoformat()), day


def test_it_refuses_a_datetime_where_a_date_is_expected():
    with pytest.raises(TypeError, match="expected a date"):
        is_trading_day(datetime(2026, 1, 19, 12))


# --- daylight saving ------------------------------------------------------------


def test_it_opens_an_hour_earlier_in_utc_after_the_march_switch():
    # Clocks go forward on Sunday 2026-03-08.
    assert session_bounds(date(2026, 3, 6)) == (
        utc(2026, 3, 6, 14, 30),
        utc(2026, 3, 6, 21),
    )
    assert session_bounds(date(2026, 3, 9)) == (
        utc(2026, 3, 9, 13, 30),
        utc(2026, 3, 9, 20),
    )
    assert next_open(ny(2026, 3, 6, 16)) == utc(2026, 3, 9, 13, 30)
    assert not is_open(utc(2026, 3, 9, 13, 29))
    assert is_open(utc(2026, 3, 9, 13, 30))


def test_it_opens_an_hour_later_in_utc_after_the_november_switch():
    # Clocks go back on Sunday 2026-11-01.
    assert session_bounds(date(2026, 10, 30)) == (
        utc(2026, 10, 30, 13, 30),
        utc(2026, 10, 30, 20),
    )
    assert session_bounds(date(2026, 11, 2)) == (
        utc(2026, 11, 2, 14, 30),
        utc(2026, 11, 2, 21),
    )
    assert next_open(ny(2026, 10, 30, 16)) == utc(2026, 11, 2, 14, 30)
    assert not is_open(utc(2026, 11, 2, 14, 29))
    assert is_open(utc(2026, 11, 2, 14, 30))


def test_it_keeps_extended_hours_in_new_york_time_across_the_switch():
    assert session_bounds(date(2026, 3, 6), extended=True) == (
        utc(2026, 3, 6, 9),
        utc(2026, 3, 7, 1),
    )
    assert session_bounds(date(2026, 3, 9), extended=True) == (
        utc(2026, 3, 9, 8),
        utc(2026, 3, 10, 0),
    )


# --- boundaries -----------------------------------------------------------------


def test_it_is_open_from_the_open_inclusive_to_the_close_exclusive():
    assert not is_open(ny(2026, 3, 10, 9, 29))
    assert is_open(ny(2026, 3, 10, 9, 30))
    assert is_open(ny(2026, 3, 10, 15, 59))
    assert not is_open(ny(2026, 3, 10, 16, 0))


def test_it_closes_at_13_00_on_an_early_close():
    assert not is_open(ny(2026, 11, 27, 9, 29))
    assert is_open(ny(2026, 11, 27, 9, 30))
    assert is_open(ny(2026, 11, 27, 12, 59))
    assert not is_open(ny(2026, 11, 27, 13, 0))


def test_it_answers_the_same_for_any_timezone_of_the_same_instant():
    tokyo = ZoneInfo("Asia/Tokyo")
    # 09:30 New York on 2026-03-10 is 22:30 the same day in Tokyo.
    assert is_open(datetime(2026, 3, 10, 22, 30, tzinfo=tokyo))
    assert not is_open(datetime(2026, 3, 10, 22, 29, tzinfo=tokyo))


def test_it_opens_extended_hours_from_04_00_to_20_00():
    assert not is_open(ny(2026, 3, 10, 3, 59), extended=True)
    assert is_open(ny(2026, 3, 10, 4, 0), extended=True)
    assert is_open(ny(2026, 3, 10, 19, 59), extended=True)
    assert not is_open(ny(2026, 3, 10, 20, 0), extended=True)
    # Outside the regular session, only extended hours are open.
    assert not is_open(ny(2026, 3, 10, 8, 0))
    assert is_open(ny(2026, 3, 10, 8, 0), extended=True)


def test_it_ends_extended_hours_at_17_00_on_an_early_close():
    assert session_bounds(date(2026, 11, 27), extended=True) == (
        utc(2026, 11, 27, 9),
        utc(2026, 11, 27, 22),
    )
    assert is_open(ny(2026, 11, 27, 16, 59), extended=True)
    assert not is_open(ny(2026, 11, 27, 17, 0), extended=True)


def test_it_refuses_a_naive_datetime():
    naive = datetime(2026, 3, 10, 15, 0)
    for function in (is_open, next_open, next_close):
        with pytest.raises(ValueError, match="timezone-aware"):
            function(naive)


# --- next_open and next_close -----------------------------------------------------


def test_it_finds_monday_open_from_a_friday_evening():
    assert next_open(ny(2026, 3, 13, 18, 0)) == utc(2026, 3, 16, 13, 30)


def test_it_skips_a_monday_holiday_to_tuesday():
    assert next_open(ny(2026, 1, 16, 18, 0)) == utc(2026, 1, 20, 14, 30)


def test_it_returns_the_same_days_open_before_the_open():
    assert next_open(ny(2026, 3, 10, 0, 0)) == utc(2026, 3, 10, 13, 30)
    assert next_open(ny(2026, 3, 10, 9, 29)) == utc(2026, 3, 10, 13, 30)


def test_it_returns_the_next_days_open_at_or_after_the_open():
    assert next_open(ny(2026, 3, 10, 9, 30)) == utc(2026, 3, 11, 13, 30)
    assert next_open(ny(2026, 3, 10, 12, 0)) == utc(2026, 3, 11, 13, 30)


def test_it_finds_the_extended_open_and_close():
    assert next_open(ny(2026, 3, 13, 20, 0), extended=True) == utc(2026, 3, 16, 8)
    assert next_open(ny(2026, 3, 16, 3, 0), extended=True) == utc(2026, 3, 16, 8)
    assert next_close(ny(2026, 3, 16, 17, 0), extended=True) == utc(2026, 3, 17, 0)
    assert next_close(ny(2026, 11, 27, 14, 0), extended=True) == utc(2026, 11, 27, 22)


def test_it_returns_the_close_of_the_current_session():
    assert next_close(ny(2026, 3, 10, 9, 30)) == utc(2026, 3, 10, 20)
    assert next_close(ny(2026, 3, 10, 15, 59)) == utc(2026, 3, 10, 20)
    assert next_close(ny(2026, 11, 27, 10, 0)) == utc(2026, 11, 27, 18)


def test_it_returns_the_close_of_the_next_session_when_closed():
    assert next_close(ny(2026, 3, 10, 8, 0)) == utc(2026, 3, 10, 20)
    # At the close the session is over: the next one is Wednesday's.
    assert next_close(ny(2026, 3, 10, 16, 0)) == utc(2026, 3, 11, 20)
    assert next_close(ny(2026, 3, 14, 12, 0)) == utc(2026, 3, 16, 20)
    assert next_close(ny(2026, 11, 26, 12, 0)) == utc(2026, 11, 27, 18)


def test_it_returns_utc_datetimes():
    opens = next_open(ny(2026, 3, 10, 12, 0))
    closes = next_close(ny(2026, 3, 10, 12, 0))
    assert (opens.tzinfo, closes.tzinfo) == (UTC, UTC)


# --- cross-checks against exchange_calendars ----------------------------------------


def test_it_agrees_with_xnys_on_every_trading_day(xnys):
    sessions = {ts.date() for ts in xnys.sessions}
    day = date(CHECKED_YEARS[0], 1, 1)
    disagreements = []
    while day.year <= CHECKED_YEARS[-1]:
        if is_trading_day(day) != (day in sessions):
            disagreements.append(day)
        day += timedelta(days=1)
    assert disagreements == []
    assert len(sessions) > 250 * len(CHECKED_YEARS)


def test_it_agrees_with_xnys_on_every_early_close(xnys):
    xnys_early = {ts.date() for ts in xnys.early_closes}
    for year in CHECKED_YEARS:
        expected = {day for day in xnys_early if day.year == year}
        assert early_close_days(year) == expected, year
    assert len(xnys_early) > 2 * len(CHECKED_YEARS)


def test_it_agrees_with_xnys_on_every_session_open_and_close(xnys):
    schedule = xnys.schedule
    ours = {ts.date(): session_bounds(ts.date()) for ts in schedule.index}
    theirs = {
        ts.date(): (opens.to_pydatetime(), closes.to_pydatetime())
        for ts, opens, closes in zip(
            schedule.index, schedule["open"], schedule["close"], strict=True
        )
    }
    assert ours == theirs


def test_it_agrees_with_xnys_minute_by_minute_for_2025_and_2026(xnys):
    schedule = xnys.schedule.loc[f"{MINUTE_YEARS[0]}" : f"{MINUTE_YEARS[-1]}"]
    # XNYS open minutes as minutes since the epoch: [open, close) per session.
    xnys_open = set()
    for opens, closes in zip(schedule["open"], schedule["close"], strict=True):
        xnys_open.update(
            range(int(opens.timestamp()) // 60, int(closes.timestamp()) // 60)
        )

    at = ny(MINUTE_YEARS[0], 1, 1).astimezone(UTC)
    end = ny(MINUTE_YEARS[-1] + 1, 1, 1).astimezone(UTC)
    minute = int(at.timestamp()) // 60
    disagreements = []
    checked = open_minutes = 0
    while at < end:
        ours = is_open(at)
        if ours != (minute in xnys_open):
            disagreements.append(at)
        open_minutes += ours
        checked += 1
        at += MINUTE
        minute += 1

    assert disagreements == []
    assert checked == (365 + 365) * 24 * 60
    assert open_minutes == len(xnys_open)
    # 501 sessions less 5 early closes' lost 3 hours.
    assert open_minutes == 501 * 390 - 5 * 180


# -- The FX week (forex): Sunday 17:00 to Friday 17:00 New York ---------------


@pytest.mark.parametrize(
    ("at", "open_"),
    [
        (ny(2026, 11, 27, 16, 59), True),  # Friday afternoon
        (ny(2026, 11, 27, 17, 0), False),  # the New York close
        (ny(2026, 11, 28, 12, 0), False),  # Saturday
        (ny(2026, 11, 29, 16, 59), False),  # Sunday before the open
        (ny(2026, 11, 29, 17, 0), True),  # the Sydney open
        (ny(2026, 11, 26, 12, 0), True),  # Thanksgiving: thin, not closed
        (ny(2026, 3, 8, 17, 30), True),  # the Sunday clocks go forward
    ],
)
def test_the_fx_week_runs_from_sunday_to_friday_evening_in_new_york(at, open_):
    assert fx_is_open(at.astimezone(UTC)) is open_


def test_the_fx_week_opens_and_closes_at_17_new_york_across_clock_changes():
    saturday = ny(2026, 11, 28, 12, 0).astimezone(UTC)
    assert fx_next_open(saturday) == ny(2026, 11, 29, 17, 0).astimezone(UTC)
    assert fx_next_close(saturday) == ny(2026, 12, 4, 17, 0).astimezone(UTC)
    monday = ny(2026, 11, 30, 9, 0).astimezone(UTC)
    assert fx_next_close(monday) == ny(2026, 12, 4, 17, 0).astimezone(UTC)
    assert fx_next_open(monday) == ny(2026, 12, 6, 17, 0).astimezone(UTC)
    # 1 November 2026: clocks go back at 02:00; the open is still 17:00 local.
    assert fx_next_open(ny(2026, 10, 31, 12, 0)) == ny(2026, 11, 1, 17, 0)
    assert fx_next_open(ny(2026, 10, 31, 12, 0)).astimezone(UTC).hour == 22
