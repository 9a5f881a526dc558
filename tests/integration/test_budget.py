"""One EODHD budget per API key and day, shared through the database by every
process on the key (api/budget.py): collectors' news polling and backfill_gaps
spend from the same count; a database that does not answer never stalls them."""

import threading
from datetime import date

import pytest

from api import budget
from api.budget import SharedBudget
from api.collector.database import DatabaseLane
from api.models import ApiUsage
from api.pipeline.errors import CallTimeout

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "a-key-shared-by-three-processes"


def test_every_spender_on_a_key_draws_from_one_count():
    lanes = [DatabaseLane(name=f"budget-{i}", timeout=2.0) for i in range(3)]
    budgets = [SharedBudget(KEY, 100, lane) for lane in lanes]
    try:
        results = []

        def spend_many(b):
            for _ in range(10):
                results.append(b(5))

        threads = [threading.Thread(target=spend_many, args=(b,)) for b in budgets]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        # 30 asks of 5 against 100: exactly 20 fit, whatever the interleaving.
        assert results.count(True) == 20 and results.count(False) == 10
        assert budget.used(KEY) == 100
        # Another key has its own count; the key itself is never stored.
        assert budget.spend("another-key", 5, 100)
        assert not ApiUsage.objects.filter(key=KEY).exists()
        assert ApiUsage.objects.get(key=budget.digest(KEY)).calls == 100
    finally:
        for b in budgets:
            b.close()


def test_a_new_day_has_a_new_budget():
    assert budget.spend(KEY, 100, 100, day=date(2026, 3, 2))
    assert not budget.spend(KEY, 1, 100, day=date(2026, 3, 2))
    assert budget.spend(KEY, 1, 100, day=date(2026, 3, 3))


class SilentLane:
    """A lane whose database never answers in time (a black hole)."""

    def __init__(self):
        self.calls = 0

    def run(self, *args, **kwargs):
        self.calls += 1
        raise CallTimeout("no answer from the database within 2.0 s")

    def close(self, timeout=1.0):
        return


def test_no_answer_is_none_not_a_stall_nor_a_refusal():
    lane = SilentLane()
    shared = SharedBudget(KEY, 100, lane)
    assert shared(5) is None
    assert (lane.calls, shared.unanswered) == (1, 1)
