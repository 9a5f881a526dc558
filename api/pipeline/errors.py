"""What can go wrong between a bar and its row, and which failures are whose:
a pure classification, so that retry policy is one small function."""

import enum

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"  # the database or the link: retry later
    PERMANENT = "permanent"  # this data: retrying the same rows fails the same way
    TIMEOUT = "timeout"  # no answer within the bound: the call was abandoned


class CallTimeout(Exception):
    """A database call did not return within its bound and was abandoned."""


class LockLost(Exception):
    """The session that held the writer lock is gone; nothing was written."""


class Unstorable(ValueError):
    """A bar that its columns cannot hold as it is."""


# SQLSTATE classes that say "this row", not "this moment": data exceptions (22)
# and integrity constraint violations (23).
_PERMANENT_CLASSES = ("22", "23")


def classify(exc: BaseException) -> ErrorKind:
    """Transient (retry) or permanent (isolate the rows) - a pure function of the
    exception and its SQLSTATE."""
    if isinstance(exc, CallTimeout):
        return ErrorKind.TIMEOUT
    code = getattr(exc, "pgcode", None) or getattr(
        getattr(exc, "__cause__", None), "pgcode", None
    )
    if code:
        return (
            ErrorKind.PERMANENT
            if code[:2] in _PERMANENT_CLASSES
            else ErrorKind.TRANSIENT
        )
    if isinstance(exc, DataError | IntegrityError):
        return ErrorKind.PERMANENT
    # Connection failures, timeouts, a missing table before migrate: none of them
    # is the rows' fault, and all of them can end.
    return ErrorKind.TRANSIENT


def is_disconnect(exc: BaseException) -> bool:
    """The connection cannot be trusted after this error: discard it."""
    return isinstance(exc, OperationalError | InterfaceError | CallTimeout) or (
        isinstance(exc, DatabaseError) and classify(exc) is ErrorKind.TRANSIENT
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
