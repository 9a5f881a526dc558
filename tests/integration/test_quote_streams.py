"""The collector on EODHD's quote streams (us-quote, forex) against the
simulator: 1-second quote bars, exactly as the brute force builds them from the
frames the server sent, in their own table."""

import pytest

from api.models import QuoteSnapshot, SecondSnapshot, TickCandle100
from tests.integration import reference
from tests.integration.test_collector import collector, feed, received, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("stream", "symbols"),
    [("us-quote", ["AAPL", "MSFT"]), ("forex", ["EURUSD", "GBPUSD"])],
)
def test_it_stores_exactly_the_quote_bars_of_a_stream(stream, symbols):
    with feed(
        rate=1500, seed=21, jitter_ms=300, late_prob=0.03, late_ms=1500,
        max_trades=4000,
    ) as server:  # fmt: skip
        with collector(
            server, symbols=symbols, feed=stream, ws_url=server.url_for(stream)
        ) as app:
            assert wait_until(lambda: received(app) == 4000, 30)
            assert app.shutdown() == 0
        sent = server.sent_trades()
    assert len(sent) == 4000
    start = app.aggregator.start_second
    stored = reference.stored_quote_bars()
    assert stored == reference.quote_bars(sent, start)
    assert app.writer.stats.bars_written == len(stored)
    assert app.aggregator.seconds.revisions > 0  # late quotes revised seconds
    # Odd shapes are counted, never in the way.
    counts = list(stored.values())
    if stream == "us-quote":
        assert sum(c[14] for c in counts) > 0  # crossed
        assert sum(c[16] for c in counts) > 0  # zero sizes
    assert sum(c[15] for c in counts) > 0  # locked
    # Quote streams build quote bars only.
    assert not SecondSnapshot.objects.exists()
    assert not TickCandle100.objects.exists()
    assert QuoteSnapshot.objects.filter(source="eodhd_ws").count() == len(stored)
