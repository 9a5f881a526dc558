"""EODHD API calls: one budget per API key and UTC day, shared by every process
that uses the key through the database (table api_usage), so several collectors
and the backfill never spend more than the account allows together.

`spend()` takes calls from the budget in one conditional UPDATE: either all of
them fit and are counted, or none is. The key is stored as its sha256 digest.
"""

import hashlib
import logging
from datetime import UTC, date, datetime

from django.db import DatabaseError
from django.db.models import F

from api.models import ApiUsage
from api.pipeline.errors import CallTimeout, first_line, is_disconnect

logger = logging.getLogger(__name__)

# How long a collector's thread waits for the budget's answer before going on
# with its own count (the database may be down or silent: a black hole).
ANSWER_WITHIN = 2.0


def digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _today() -> date:
    return datetime.now(tz=UTC).date()


def spend(api_key: str, calls: int, limit: int, day: date | None = None) -> bool:
    """Count `calls` against today's budget of `limit`; False (nothing counted)
    when they do not fit."""
    key, day = digest(api_key), day or _today()
    ApiUsage.objects.bulk_create([ApiUsage(key=key, day=day)], ignore_conflicts=True)
    updated = ApiUsage.objects.filter(
        key=key, day=day, calls__lte=limit - calls
    ).update(calls=F("calls") + calls)
    return updated == 1


def used(api_key: str, day: date | None = None) -> int:
    row = ApiUsage.objects.filter(key=digest(api_key), day=day or _today()).first()
    return row.calls if row else 0


class SharedBudget:
    """The key's daily budget for a long-running thread (the news poller):
    each ask goes through a database lane of its own, bounded in time.

    `__call__(calls)`: True when the calls were counted, False when they do not
    fit today's budget, None when the database did not answer in time (the
    caller then goes on with its own count rather than stop or wait)."""

    def __init__(self, api_key: str, limit: int, lane) -> None:
        self.api_key = api_key
        self.limit = limit
        self.lane = lane
        self.unanswered = 0

    def __call__(self, calls: int) -> bool | None:
        try:
            try:
                return self._ask(calls)
            except DatabaseError as exc:
                if not is_disconnect(exc):
                    raise
                # The session ended while idle (a restart, the server's idle
                # timeout): the lane connects afresh on the next call.
                return self._ask(calls)
        except (DatabaseError, CallTimeout, OSError) as exc:
            self.unanswered += 1
            logger.warning(
                "⚠️ API budget: no answer from the database (%s); counting locally",
                first_line(exc),
                extra={"dedupe": "budget unanswered"},
            )
            return None

    def _ask(self, calls: int) -> bool:
        return self.lane.run(
            spend, self.api_key, calls, self.limit, timeout=ANSWER_WITHIN
        )

    def close(self) -> None:
        self.lane.close(timeout=1.0)
