"""EODHD API calls: one budget per API key and UTC day, shared by every process
that uses the key through the database (table api_usage), so several collectors
and the backfill never spend more than the account allows together.

`spend()` takes calls from the budget in one conditional UPDATE: either all of
them fit and are counted, or none is. The key is stored as its sha256 digest.
"""

import hashlib
from datetime import UTC, date, datetime

from django.db.models import F

from api.models import ApiUsage


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
