"""NYSE trading calendar: sessions, holidays and early closes.

Pure: every function takes the time or date it reasons about, reads no clock and
does no I/O. Sessions are computed in America/New_York local time and returned
in UTC, so daylight-saving changes need no special handling by callers.

Full holidays come from the maintained `holidays` package (its NYSE calendar),
which also covers the exchange's special closings such as national days of
mourning (2025-01-09 for President Carter) and Hurricane Sandy (2012-10-29/30),
and the NYSE rule that a Saturday New Year's Day is not observed on the Friday
before. `holidays` has no early closes, so they are rules here (see
`early_close_days`).

Extended hours are 04:00-20:00 ET on trading days. On early-close days they end
at 17:00 ET instead: NYSE Arca's late trading session ends four hours after an
early 13:00 close, as it does after a regular 16:00 close.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import count
from zoneinfo import ZoneInfo

import holidays

NEW_YORK = ZoneInfo("America/New_York")

REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)
EXTENDED_OPEN = time(4, 0)
EXTENDED_CLOSE = time(20, 0)
EXTENDED_EARLY_CLOSE = time(17, 0)

_THURSDAY = 3
_SATURDAY = 5


@lru_cache(maxsize=64)
def _full_holidays(year: int) -> frozenset[date]:
    # Building a `holidays` calendar is slow compared to a set lookup; years are
    # few, so cache them.
    calendar = holidays.financial_holidays("NYSE", years=year)
    return frozenset(day for day in calendar if day.year == year)


def _check_date(day: date) -> None:
    # A datetime is a date, but never equal to one: a holiday given as a
    # datetime would silently look like a trading day.
    if isinstance(day, datetime):
        raise TypeError(f"expected a date, got the datetime {day!r}")


def is_trading_day(day: date) -> bool:
    """Whether NYSE holds a session on `day`: a weekday that is no full holiday."""
    _check_date(day)
    return day.weekday() < _SATURDAY and day not in _full_holidays(day.year)


def previous_trading_day(today: date) -> date:
    """The last NYSE trading day before `today`."""
    day = today - timedelta(days=1)
    while not is_trading_day(day):
        day -= timedelta(days=1)
    return day


def _thanksgiving(year: int) -> date:
    november_first = date(year, 11, 1)
    first_thursday = 1 + (_THURSDAY - november_first.weekday()) % 7
    return date(year, 11, first_thursday + 21)


@lru_cache(maxsize=64)
def _early_closes(year: int) -> frozenset[date]:
    # Only trading days can close early: when July 4 or December 25 falls on a
    # Saturday, the Friday before is the observed full holiday instead, and a
    # weekend July 3 or December 24 has no session at all.
    candidates = (
        date(year, 7, 3),
        _thanksgiving(year) + timedelta(days=1),
        date(year, 12, 24),
    )
    return frozenset(day for day in candidates if is_trading_day(day))


def early_close_days(year: int) -> set[date]:
    """The 13:00 ET early closes of `year`.

    The day before Independence Day (July 3), the day after Thanksgiving and
    Christmas Eve, each when it is a trading day. These rules agree with
    exchange_calendars' XNYS for every year from 2004 to 2030 (checked in the
    tests); the exchange can always announce an exceptional early close, which
    no rule can foresee.
    """
    return set(_early_closes(year))


@lru_cache(maxsize=4096)
def session_bounds(
    day: date, *, extended: bool = False
) -> tuple[datetime, datetime] | None:
    """(open, close) in UTC of the session on `day`, or None if NYSE is closed.

    The close is exclusive: the market is open at `open` and closed at `close`.
    """
    if not is_trading_day(day):
        return None
    early = day in _early_closes(day.year)
    if extended:
        opens, closes = EXTENDED_OPEN, EXTENDED_EARLY_CLOSE if early else EXTENDED_CLOSE
    else:
        opens, closes = REGULAR_OPEN, EARLY_CLOSE if early else REGULAR_CLOSE
    # Local wall-clock times, then UTC: none of them falls in the 01:00-03:00
    # window where a daylight-saving change makes local times ambiguous.
    return (
        datetime.combine(day, opens, NEW_YORK).astimezone(UTC),
        datetime.combine(day, closes, NEW_YORK).astimezone(UTC),
    )


def _local_date(at: datetime) -> date:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {at!r}")
    return at.astimezone(NEW_YORK).date()


def _sessions_from(at: datetime, extended: bool) -> Iterator[tuple[datetime, datetime]]:
    # Sessions never cross midnight in New York, so the session that could
    # contain `at` is on its local date; later ones follow day by day.
    first = _local_date(at)
    for offset in count():
        bounds = session_bounds(first + timedelta(days=offset), extended=extended)
        if bounds is not None:
            yield bounds


def is_open(at: datetime, *, extended: bool = False) -> bool:
    """Whether NYSE is in session at the timezone-aware instant `at`."""
    bounds = session_bounds(_local_date(at), extended=extended)
    return bounds is not None and bounds[0] <= at < bounds[1]


def next_open(at: datetime, *, extended: bool = False) -> datetime:
    """The first session open strictly after `at`, in UTC.

    Before the open on a trading day that is the same day's open; during or
    after a session it is the next trading day's.
    """
    return next(opens for opens, _ in _sessions_from(at, extended) if opens > at)


def next_close(at: datetime, *, extended: bool = False) -> datetime:
    """The close of the session open at `at`, else of the next session, in UTC."""
    return next(closes for _, closes in _sessions_from(at, extended) if closes > at)


# Foreign exchange trades around the clock from Sunday 17:00 to Friday 17:00 New
# York time (the Sydney open to the New York close); holidays thin the market but
# do not close it.
FX_ROLL = time(17, 0)
_FRIDAY, _SUNDAY = 4, 6


def _fx_week_bounds(day: date) -> tuple[datetime, datetime]:
    """(open, close) in UTC of the FX week that opens on the Sunday on or
    before `day`."""
    sunday = day - timedelta(days=(day.weekday() - _SUNDAY) % 7)
    opens = datetime.combine(sunday, FX_ROLL, NEW_YORK).astimezone(UTC)
    closes = datetime.combine(sunday + timedelta(days=5), FX_ROLL, NEW_YORK)
    return opens, closes.astimezone(UTC)


def fx_is_open(at: datetime) -> bool:
    """Whether the FX market is open at the timezone-aware instant `at`."""
    opens, closes = _fx_week_bounds(_local_date(at))
    return opens <= at < closes


def fx_next_open(at: datetime) -> datetime:
    """The first FX week open strictly after `at`, in UTC."""
    opens, _ = _fx_week_bounds(_local_date(at))
    if opens > at:
        return opens
    return _fx_week_bounds(_local_date(at) + timedelta(days=7))[0]


def fx_next_close(at: datetime) -> datetime:
    """The close of the FX week open at `at`, else of the next one, in UTC."""
    _, closes = _fx_week_bounds(_local_date(at))
    if closes > at:
        return closes
    return _fx_week_bounds(_local_date(at) + timedelta(days=7))[1]
