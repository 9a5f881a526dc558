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


def by_stream(server) -> dict[str, list[dict]]:
    """The frames the server sent, by the stream of their connection."""
    feeds = {entry.index: entry.feed for entry in server.connection_log}
    out: dict[str, list[dict]] = {}
    for sent in server.sent_frames():
        out.setdefault(feeds[sent.connection], []).append(sent.frame)
    return out


def test_it_collects_trades_and_quotes_side_by_side_on_two_connections():
    with feed(rate=800, seed=23, late_prob=0.02, late_ms=1500, max_trades=4000) as (
        server
    ):
        with collector(server, feed="us,us-quote", metrics_port=0) as app:
            assert set(app.receivers) == {"us", "us-quote"}
            assert wait_until(lambda: received(app) == 4000, 30)
            metrics = scrape(app)
            assert app.shutdown() == 0
        sent = by_stream(server)
    assert sorted(e.feed for e in server.connection_log) == ["us", "us-quote"]
    start = app.aggregator.start_second
    assert len(sent["us"]) > 1000 and len(sent["us-quote"]) > 1000
    assert reference.stored_second_bars() == reference.second_bars(sent["us"], start)
    assert reference.stored_tick_candles() == reference.tick_candles(sent["us"])
    assert reference.stored_quote_bars() == reference.quote_bars(
        sent["us-quote"], start
    )
    for stream in ("us", "us-quote"):
        assert f'collector_stream_connected{{stream="{stream}"}} 1.0' in metrics
        frames = len(sent[stream])
        assert (
            f'collector_stream_frames_received_total{{stream="{stream}"}} '
            f"{float(frames)}" in metrics
        )


def test_a_silent_stream_is_healed_on_its_own_while_the_other_streams():
    # The quote stream authorizes and subscribes, then says nothing: only its
    # connection is judged stale and replaced; trades keep being stored.
    with feed(rate=200, seed=29, silent_feeds=("us-quote",)) as server:
        with collector(
            server, feed="us,us-quote", stale_after=1.0, health_check_interval=0.2
        ) as app:
            trades, quotes = app.receivers["us"], app.receivers["us-quote"]
            assert wait_until(lambda: quotes.stats.reconnects.get("stale", 0) >= 2, 15)
            assert trades.stats.reconnects == {}
            assert trades.stats.trades > 0
            # The collector's health is the worst stream's: not ok.
            verdict = app.verdict()
            assert not verdict.healthy and verdict.state in ("stale", "connecting")
            stored = reference.stored_second_bars
            assert wait_until(lambda: len(stored()) > 3, 10)


def scrape(app) -> str:
    import urllib.request

    port = app.metrics.server_address[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_a_journal_of_two_streams_replays_to_the_same_bars(tmp_path):
    from io import StringIO

    from django.core.management import call_command

    with feed(rate=800, seed=31, late_prob=0.02, late_ms=1500, max_trades=3000) as (
        server
    ):
        with collector(server, feed="us,us-quote", record_dir=tmp_path) as app:
            assert wait_until(lambda: received(app) == 3000, 30)
            assert app.shutdown() == 0
    live = (
        reference.stored_second_bars(),
        reference.stored_tick_candles(),
        reference.stored_quote_bars(),
    )
    assert all(live)
    for model in (SecondSnapshot, TickCandle100, QuoteSnapshot):
        model.objects.all().delete()

    out = StringIO()
    call_command("replay_frames", str(tmp_path), stdout=out)
    assert (
        reference.stored_second_bars(),
        reference.stored_tick_candles(),
        reference.stored_quote_bars(),
    ) == live
    assert "quote bars" in out.getvalue()
