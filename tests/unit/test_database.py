"""Error classification, the columns' limits, and the session settings: pure."""

from decimal import Decimal

import pytest

from django.db import DataError, IntegrityError, OperationalError, ProgrammingError

from api.collector.database import SessionSettings, tagged_application_name
from api.pipeline.errors import CallTimeout, ErrorKind, classify
from api.pipeline.store import fits


class _Driver(Exception):
    def __init__(self, pgcode: str) -> None:
        super().__init__(pgcode)
        self.pgcode = pgcode


def wrapped(django_class, pgcode: str) -> Exception:
    """As Django raises them: its class, the driver's error as the cause."""
    exc = django_class("boom")
    exc.__cause__ = _Driver(pgcode)
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (wrapped(DataError, "22003"), ErrorKind.PERMANENT),  # numeric overflow
        (wrapped(DataError, "22008"), ErrorKind.PERMANENT),  # datetime overflow
        (wrapped(IntegrityError, "23503"), ErrorKind.PERMANENT),  # foreign key
        (wrapped(IntegrityError, "23514"), ErrorKind.PERMANENT),  # check
        (wrapped(OperationalError, "57014"), ErrorKind.TRANSIENT),  # statement_timeout
        (wrapped(OperationalError, "55P03"), ErrorKind.TRANSIENT),  # lock_timeout
        (wrapped(OperationalError, "57P01"), ErrorKind.TRANSIENT),  # admin shutdown
        (wrapped(OperationalError, "40001"), ErrorKind.TRANSIENT),  # serialization
        (wrapped(ProgrammingError, "42P01"), ErrorKind.TRANSIENT),  # before migrate
        (OperationalError("server closed the connection"), ErrorKind.TRANSIENT),
        (IntegrityError("UNIQUE constraint failed"), ErrorKind.PERMANENT),  # SQLite
        (CallTimeout("no answer"), ErrorKind.TIMEOUT),
    ],
)
def test_it_tells_the_rows_fault_from_the_moments(exc, kind):
    assert classify(exc) is kind


@pytest.mark.parametrize(
    ("value", "digits", "places", "expected"),
    [
        ("335.95", 24, 10, True),
        ("1E-10", 24, 10, True),
        ("1E-12", 24, 10, False),  # finer than the column: it would be rounded
        ("0.100000000000", 24, 10, True),  # trailing zeros are not digits lost
        ("99999999999999.999999", 20, 6, True),
        ("100000000000000", 20, 6, False),  # one integer digit too many
        ("-400000000000000.0", 20, 6, False),  # a +/-4e14 % glitch change
        ("0", 20, 6, True),
        ("NaN", 20, 6, False),
        ("Infinity", 20, 6, False),
    ],
)
def test_it_knows_what_a_numeric_column_holds_exactly(value, digits, places, expected):
    assert fits(Decimal(value), digits, places) is expected


def test_it_bounds_every_collector_session_on_the_server():
    sql = SessionSettings().statements("eodhd-collector/0123456789abcdef")
    assert sql.startswith("SET application_name = 'eodhd-collector/0123456789abcdef'")
    for setting in (
        "statement_timeout = 5000",
        "lock_timeout = 2000",
        "idle_in_transaction_session_timeout = 10000",
        "idle_session_timeout = 10000",
        "tcp_keepalives_idle = 5",
        "tcp_user_timeout = 10000",
    ):
        assert f"SET {setting}" in sql


def test_it_appends_its_identity_to_the_urls_application_name():
    assert tagged_application_name(None, "ab12") == "eodhd-collector/ab12"
    assert tagged_application_name("desk's app", "ab12") == "desk's app/ab12"
    long = tagged_application_name("x" * 80, "0123456789abcdef")
    assert len(long) == 63 and long.endswith("/0123456789abcdef")
    sql = SessionSettings().statements("desk's app/ab12")
    assert "SET application_name = 'desk''s app/ab12'" in sql  # quoted
