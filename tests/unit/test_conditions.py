# ruff: noqa: E501  (the published table is kept as written, one row a line)
"""The trade-condition table against an independent restatement of EODHD's
guidelines, and the session a timestamp falls in."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from api.market.conditions import (
    EVERY,
    HIGH_LOW,
    LAST,
    NOT_HIGH_LOW,
    NOT_LAST,
    NOT_VOLUME,
    UPDATES,
    VOLUME,
    Session,
    SessionOf,
    eligibility,
)

# EODHD's table, as published (regular hours / extended hours).
TABLE = {
    (HIGH_LOW, "yes", Session.REGULAR): "0 1 3 4 5 8 9 10 14 22 23 25 27 28 29 30 33 34 36 38",
    (HIGH_LOW, "no", Session.REGULAR): "2 7 12 13 15 16 20 21 37 52 53",
    (HIGH_LOW, "yes", Session.EXTENDED): "0 1 3 4 5 8 9 10 14 22 23 25 27 28 29 30 33 34 36 38 12 13",
    (HIGH_LOW, "no", Session.EXTENDED): "2 7 15 16 20 21 37 52 53",
    (LAST, "yes", Session.REGULAR): "0 1 3 4 8 9 14 23 25 27 28 30 34 36 38",
    (LAST, "no", Session.REGULAR): "2 5 7 10 12 13 15 16 20 21 22 29 33 37 52 53",
    (LAST, "yes", Session.EXTENDED): "0 1 3 4 8 9 14 23 25 27 28 30 34 36 38 12 13",
    (LAST, "no", Session.EXTENDED): "2 5 7 10 15 16 20 21 22 29 33 37 52 53",
    (VOLUME, "yes", Session.REGULAR): "0 1 2 3 4 5 7 8 9 10 12 13 14 20 21 22 23 25 27 28 29 30 33 34 36 37 52 53",
    (VOLUME, "no", Session.REGULAR): "15 16 38",
    (VOLUME, "yes", Session.EXTENDED): "0 1 2 3 4 5 7 8 9 10 12 13 14 20 21 22 23 25 27 28 29 30 33 34 36 37 52 53",
    (VOLUME, "no", Session.EXTENDED): "15 16 38",
}  # fmt: skip


def codes(part: int, verdict: str, session: Session) -> set[int]:
    return {int(c) for c in TABLE[(part, verdict, session)].split()}


def brute(conditions: tuple[int, ...], session: Session) -> int:
    """Every code must allow the part; a code in neither list is a regular sale."""
    allowed = 0
    for part in (HIGH_LOW, LAST, VOLUME):
        if all(code not in codes(part, "no", session) for code in conditions):
            allowed |= part
    return allowed


def test_it_holds_the_published_lists_exactly():
    for session in Session:
        assert NOT_HIGH_LOW[session] == codes(HIGH_LOW, "no", session)
        assert NOT_LAST[session] == codes(LAST, "no", session)
        assert NOT_VOLUME == codes(VOLUME, "no", session)
        for part in (HIGH_LOW, LAST, VOLUME):
            # No code is both allowed and refused.
            assert not codes(part, "yes", session) & codes(part, "no", session)
    assert UPDATES[HIGH_LOW] == codes(HIGH_LOW, "yes", Session.REGULAR)
    assert UPDATES[LAST] == codes(LAST, "yes", Session.REGULAR)
    assert UPDATES[VOLUME] == codes(VOLUME, "yes", Session.REGULAR)


@given(
    st.lists(st.integers(min_value=0, max_value=60), max_size=4).map(tuple),
    st.sampled_from(list(Session)),
)
def test_it_agrees_with_a_brute_force_reading_of_the_table(conditions, session):
    assert eligibility(conditions, session) == brute(conditions, session)


def test_it_reads_the_prints_users_meet():
    regular, extended = Session.REGULAR, Session.EXTENDED
    assert eligibility((), regular) == EVERY  # a regular sale
    assert eligibility((37,), regular) == VOLUME  # odd lot: volume only
    assert eligibility((14, 37, 41), regular) == VOLUME  # as live frames look
    assert eligibility((41,), regular) == EVERY  # unlisted: a regular sale
    assert eligibility((12,), regular) == VOLUME  # Form T in regular hours
    assert eligibility((12,), extended) == EVERY  # Form T where it belongs
    assert eligibility((22,), regular) == HIGH_LOW | VOLUME  # not last
    assert eligibility((15,), regular) == 0  # market-center official: nothing


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


def test_it_tells_the_session_by_the_nyse_calendar():
    session = SessionOf()
    # Tuesday 2026-12-01, New York is UTC-5.
    assert session(at("2026-12-01T09:29:59.999-05:00")) is Session.EXTENDED
    assert session(at("2026-12-01T09:30:00-05:00")) is Session.REGULAR
    assert session(at("2026-12-01T15:59:59.999-05:00")) is Session.REGULAR
    assert session(at("2026-12-01T16:00:00-05:00")) is Session.EXTENDED
    # Early close the day after Thanksgiving (2026-11-27): after 13:00 it is
    # extended hours.
    assert session(at("2026-11-27T12:59:00-05:00")) is Session.REGULAR
    assert session(at("2026-11-27T13:00:00-05:00")) is Session.EXTENDED
    # Outside both sessions (a Saturday; Christmas) the extended column applies.
    assert session(at("2026-11-28T11:00:00-05:00")) is Session.EXTENDED
    assert session(at("2026-12-25T11:00:00-05:00")) is Session.EXTENDED
    # Summer time: 09:30 EDT is 13:30 UTC.
    assert session(at("2026-07-01T13:30:00+00:00")) is Session.REGULAR
    assert session(at("2026-07-01T13:29:59+00:00")) is Session.EXTENDED
