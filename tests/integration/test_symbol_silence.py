"""A symbol dropped from a live subscription while the others stream (EODHD has
been known to do this) is noticed, subscribed again on the same connection, and
its coverage shows the time it was not observed - which backfill_gaps can then
fill. A whole quiet connection is the stale check's business, not this one's."""

import pytest

from api.collector.feed import FeedPolicy
from api.models import Coverage, EndReason
from tests.integration.test_collector import FAST, collector, feed, received
from tests.integration.test_operations import metrics
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

QUICK = FeedPolicy(**{**FAST.__dict__, "symbol_silence": 1.0})


def intervals(symbol: str) -> list[Coverage]:
    return list(Coverage.objects.filter(ticker__symbol=symbol).order_by("start"))


def test_a_symbol_dropped_silently_is_subscribed_again_and_its_gap_recorded():
    with feed(rate=300, seed=51, jitter_ms=0) as server:
        with collector(server, policy=QUICK, metrics_port=0) as app:
            assert wait_until(lambda: received(app) >= 300, 15)
            assert server.forget_symbol("MSFT") == 1
            assert wait_until(lambda: app.receiver.stats.resubscribes, 10)
            assert app.receiver.stats.resubscribes == {"MSFT": 1}
            # On the same connection: no reconnect.
            assert wait_until(lambda: "MSFT" in server.connection_log[0].symbols, 5)
            assert len(server.connection_log) == 1
            before = sum(1 for t in server.sent_trades() if t["s"] == "MSFT")
            assert wait_until(
                lambda: (
                    sum(1 for t in server.sent_trades() if t["s"] == "MSFT")
                    > before + 20
                ),
                10,
            )
            sample = metrics(app.metrics.port)
            assert sample["collector_symbol_resubscribes_total{symbol=MSFT}"] == 1
            assert sample["collector_symbol_resubscribes_total{symbol=AAPL}"] == 0
            assert app.shutdown() == 0
        msft, aapl = intervals("MSFT"), intervals("AAPL")
    assert [r.end_reason for r in aapl] == [EndReason.SHUTDOWN]
    assert [(r.end_reason, r.detail) for r in msft] == [
        (EndReason.STALE, "symbol silent"),
        (EndReason.SHUTDOWN, "stopped"),
    ]
    first, second = msft
    gap = (second.start - first.end).total_seconds()
    assert 1.0 < gap < 5.0  # from its last trade to the new subscribe
    # Its last trade before the drop is where the first interval ends.
    sent = [t["t"] / 1000 for t in server.sent_trades() if t["s"] == "MSFT"]
    last_before = max(t for t in sent if t <= first.end.timestamp() + 0.01)
    assert first.end.timestamp() - last_before < 0.3


def test_a_whole_quiet_connection_is_not_one_silent_symbol():
    with feed(rate=300, seed=52, jitter_ms=0) as server:
        with collector(server, policy=QUICK, stale_after=30.0) as app:
            assert wait_until(lambda: received(app) >= 300, 15)
            server.set_silent(True)
            assert not wait_until(lambda: app.receiver.stats.resubscribes, 3.0)
            server.set_silent(False)
            assert app.shutdown() == 0
    assert app.receiver.stats.resubscribes == {}
