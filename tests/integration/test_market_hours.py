"""The collector follows the NYSE session by itself: it disconnects at the close
with every bar written and reconnects at the next open, without churn between."""

import time
from datetime import UTC, datetime

import pytest

from api.models import Coverage
from tests.integration import reference
from tests.integration.clocks import SteerableClock
from tests.integration.test_collector import collector, feed, received, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Friday after Thanksgiving 2026: an early close at 13:00 ET (18:00 UTC). The next
# session opens on Monday 2026-11-30 at 09:30 ET (14:30 UTC).
FRIDAY_CLOSE = datetime(2026, 11, 27, 18, 0, tzinfo=UTC).timestamp()
MONDAY_OPEN = datetime(2026, 11, 30, 14, 30, tzinfo=UTC).timestamp()


def test_it_disconnects_at_the_close_and_reconnects_at_the_next_open():
    clock = SteerableClock(start=FRIDAY_CLOSE - 4)
    with feed(rate=300, seed=37, jitter_ms=200, clock=clock.now) as server:
        with collector(server, skip_market_hours=False, clock=clock) as app:
            assert wait_until(lambda: received(app) > 100, 5)
            first = server.connection_log[0]
            assert first.opened_at < FRIDAY_CLOSE
            # The close: the socket is closed, and every bar is written.
            assert wait_until(lambda: server.connection_log[0].closed_at, 10)
            closed_at = server.connection_log[0].closed_at
            assert FRIDAY_CLOSE <= closed_at < FRIDAY_CLOSE + 2
            assert wait_until(
                lambda: (
                    app.writer.waiting == 0
                    and app.aggregator.seconds.open_seconds() == 0
                ),
                10,
            )
            assert reference.stored_second_bars() == reference.second_bars(
                server.sent_trades(), start_second=app.aggregator.start_second
            )
            # Closed market: no reconnect attempts at all, however long it lasts.
            time.sleep(1.5)
            clock.jump(FRIDAY_CLOSE + 3 * 3600)
            time.sleep(0.5)
            assert app.receiver.stats.connection_attempts == 1
            assert app.receiver.stats.reconnects == {"market closed": 1}
            assert not app.receiver.connected
            # Monday, just before the open: it waits for 09:30 ET, then connects.
            clock.jump(MONDAY_OPEN - 1.0)
            assert wait_until(lambda: server.connections == 2, 10)
            assert MONDAY_OPEN <= server.connection_log[1].opened_at < MONDAY_OPEN + 2
            before = received(app)
            assert wait_until(lambda: received(app) > before + 50, 10)
            assert app.receiver.stats.connection_attempts == 2
            # Coverage: observed until the close, then from the open - the
            # weekend is a gap, not a quiet stretch.
            assert wait_until(
                lambda: Coverage.objects.filter(ticker__symbol="AAPL").count() == 2, 10
            )
            friday, monday = Coverage.objects.filter(ticker__symbol="AAPL").order_by(
                "start"
            )
            assert friday.end_reason == "market_close"
            assert FRIDAY_CLOSE <= friday.end.timestamp() < FRIDAY_CLOSE + 2
            assert MONDAY_OPEN <= monday.start.timestamp() < MONDAY_OPEN + 2
