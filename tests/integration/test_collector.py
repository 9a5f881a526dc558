"""The collector end to end: a real WebSocket feed server on loopback, the real
threads, the real database."""

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest

from django.db import connection

from api.collector.feed import FeedPolicy
from api.collector.runtime import Collector, CollectorConfig
from api.simulator import FeedServer, SimOptions
from tests.integration import reference
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SYMBOLS = ["AAPL", "MSFT", "TSLA"]
FAST = FeedPolicy(
    backoff_base=0.05,
    backoff_cap=0.5,
    auth_failure_delay=1.5,
    symbol_limit_delay=0.6,
    forbidden_delay=0.4,
    rate_limit_delay=0.3,
    authorize_timeout=2.0,
    connect_timeout=2.0,
)


@contextlib.contextmanager
def feed(**options) -> Iterator[FeedServer]:
    server = FeedServer(options=SimOptions(**options)).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def collector(
    server: FeedServer, symbols=SYMBOLS, clock=None, **overrides
) -> Iterator[Collector]:
    config = CollectorConfig(
        symbols=list(symbols),
        ws_url=server.url,
        api_key="test-key",
        skip_market_hours=True,
        grace=0.3,
        policy=FAST,
        health_check_interval=0.2,
        flush_interval=0.2,
        news_enabled=False,
    )
    for name, value in overrides.items():
        setattr(config, name, value)
    app = Collector(config, clock=clock)
    assert app.start()
    try:
        yield app
    finally:
        if not app.stop.is_set() or any(w and w.is_alive() for w in app.workers):
            app.shutdown()


def received(app: Collector) -> int:
    return app.receiver.stats.trades


def assert_bars_match(server: FeedServer, app: Collector) -> None:
    sent = server.sent_trades()
    start = app.aggregator.start_second
    assert reference.stored_second_bars() == reference.second_bars(sent, start)
    assert reference.stored_minute_bars() == reference.minute_bars(sent, start)
    assert reference.stored_tick_candles() == reference.tick_candles(sent)


@pytest.mark.parametrize(
    "receiver_process", [True, False], ids=["helper-process", "thread"]
)
def test_it_stores_exactly_the_bars_of_a_jittery_stream_with_late_prints(
    receiver_process,
):
    with feed(
        rate=2500,
        seed=7,
        jitter_ms=400,
        late_prob=0.03,
        late_ms=1500,
        fractional_prob=0.2,
        max_trades=6000,
    ) as server:
        with collector(server, receiver_process=receiver_process) as app:
            assert wait_until(lambda: received(app) == 6000, 30)
            # The socket is read in a child process, or in this one.
            assert (
                (app.pump.pid not in (None, os.getpid()))
                if receiver_process
                else (app.pump is None)
            )
            assert app.shutdown() == 0
        sent = server.sent_trades()
    assert len(sent) == 6000
    assert app.aggregator.seconds.revisions > 0  # late prints did revise seconds
    assert app.writer.stats.bars_written == len(reference.stored_second_bars())
    assert_bars_match(server, app)
    # 6000 trades over 3 symbols give 60 full 100-trade bars at most, none lost.
    candles = reference.stored_tick_candles()
    assert sum(1 for _ in candles) == sum(
        len([t for t in sent if t["s"] == s]) // 100 for s in SYMBOLS
    )


def test_it_stores_bars_by_the_condition_rules_even_seconds_without_a_price():
    # A thin stream of mostly odd lots: some seconds have no print that may set
    # a price. They are stored with their volume and NULL prices, as the
    # reference (EODHD's table restated) builds them.
    with feed(rate=10, seed=5, odd_lot_share=0.8, max_trades=120) as server:
        with collector(server, symbols=["AAPL", "MSFT"]) as app:
            assert wait_until(lambda: received(app) == 120, 30)
            assert app.shutdown() == 0
    assert_bars_match(server, app)
    stored = reference.stored_second_bars()
    unpriced = [bar for bar in stored.values() if bar[1] is None]
    assert unpriced and all(bar[4] > 0 for bar in unpriced)  # volume kept
    assert app.aggregator.ingest.rules.ineligible > 0


@pytest.mark.parametrize(
    "receiver_process", [True, False], ids=["helper-process", "thread"]
)
def test_it_reconnects_after_drops_and_keeps_every_trade_sent_after(
    receiver_process,
):
    with feed(rate=2000, seed=3, drop_after=[700, 700], max_trades=2500) as server:
        with collector(server, receiver_process=receiver_process) as app:
            assert wait_until(lambda: received(app) == 2500, 30)
            assert app.shutdown() == 0
        log = server.connection_log
    assert server.connections == 3
    assert app.receiver.stats.reconnects.get("connection dropped") == 2
    # Each new socket subscribed again: every connection streamed trades.
    assert [entry.trades_sent for entry in log] == [700, 700, 1100]
    assert_bars_match(server, app)


def test_it_reconnects_a_silent_connection_within_stale_after_plus_10s():
    with feed(rate=500, seed=5, silence_after=100) as server:
        with collector(server, stale_after=1.0) as app:
            assert wait_until(lambda: received(app) >= 100, 10)
            silent_since = time.monotonic()
            assert wait_until(lambda: server.connections >= 2, 1.0 + 10)
            reconnect_after = time.monotonic() - silent_since
            assert wait_until(lambda: received(app) >= 200, 10)
            assert app.monitor.stale_reconnects >= 1
            assert app.receiver.stats.reconnects.get("stale", 0) >= 1
    assert 1.0 <= reconnect_after <= 11.0


def test_a_hung_receiver_process_is_replaced_after_the_stale_limit():
    with feed(rate=300, seed=13) as server:
        with collector(server, stale_after=1.0) as app:
            assert wait_until(lambda: received(app) >= 50, 10)
            hung = app.pump.pid
            os.kill(hung, signal.SIGSTOP)  # alive but answering nothing
            try:
                # Stale after 1 s, then up to 6 s for the close it never confirms.
                assert wait_until(lambda: app.pump.starts == 2, 20)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(hung, signal.SIGKILL)
            before = received(app)
            assert wait_until(lambda: received(app) >= before + 50, 10)
            assert app.pump.pid != hung
            assert app.receiver.stats.reconnects.get("stale", 0) >= 1


def test_it_does_not_judge_a_fresh_connection_stale():
    with feed(rate=200, seed=9) as server:
        with collector(server, stale_after=2.0) as app:
            time.sleep(1.5)
            assert app.monitor.stale_reconnects == 0
            assert server.connections == 1


def test_it_waits_long_after_an_auth_failure_instead_of_looping():
    with feed(rate=100, error_on_connect=[403, None]) as server:
        with collector(server) as app:
            time.sleep(1.0)
            assert server.connections == 1  # still waiting out the 1.5 s
            assert wait_until(lambda: received(app) > 0, 5)
    assert server.connections == 2
    assert app.receiver.stats.reconnects == {"auth failed": 1}


@pytest.mark.parametrize(
    "receiver_process", [True, False], ids=["helper-process", "thread"]
)
def test_it_answers_http_401_403_and_429_at_the_handshake_each_its_way(
    receiver_process,
):
    # Real upgrades refused by the server: 401 (bad key), 403 twice (too many
    # connections), 429 with Retry-After: 1, then a connection that streams.
    with feed(
        rate=100, reject_handshake=[401, 403, 403, 429, None], retry_after=1
    ) as server:
        started = time.monotonic()
        with collector(server, receiver_process=receiver_process) as app:
            assert wait_until(lambda: received(app) > 0, 15)
            waited = time.monotonic() - started
        assert server.handshake_attempts == 5
    # 1.5 s after the 401, 0.4 and 0.8 s after the 403s, 1 s as the 429 asked.
    assert waited >= 1.5 + 0.4 + 0.8 + 1.0
    assert app.receiver.stats.reconnects == {
        "auth failed": 1,
        "forbidden": 2,
        "rate limited": 1,
    }


def test_it_slows_down_after_a_429_status_frame():
    with feed(rate=100, error_on_connect=[429, None]) as server:
        with collector(server) as app:
            assert wait_until(lambda: received(app) > 0, 10)
        opened = [entry.opened_at for entry in server.connection_log]
        assert [entry.ended for entry in server.connection_log][:1] == ["error-429"]
    assert opened[1] - opened[0] >= 0.3
    assert app.receiver.stats.reconnects == {"rate limited": 1}


def test_it_waits_longer_after_each_symbol_limit_refusal():
    with feed(rate=100, error_on_connect=[422, 422, None]) as server:
        with collector(server) as app:
            assert wait_until(lambda: received(app) > 0, 10)
        opened = [entry.opened_at for entry in server.connection_log]
    assert len(opened) == 3
    # 0.6 s after the first refusal, 1.2 s after the second.
    assert opened[1] - opened[0] >= 0.6
    assert opened[2] - opened[1] >= 1.2


def test_it_backs_off_exponentially_after_server_errors():
    with feed(rate=100, error_on_connect=[500, 500, 500, None]) as server:
        with collector(server) as app:
            assert wait_until(lambda: received(app) > 0, 10)
            attempts = app.receiver.stats.connection_attempts
    assert attempts == 4
    assert app.receiver.stats.reconnects.get("server status 500") == 3


def test_it_counts_and_skips_malformed_frames_and_keeps_the_good_bars_exact():
    with feed(rate=2000, seed=11, malformed_prob=0.05, max_trades=3000) as server:
        with collector(server) as app:
            assert wait_until(lambda: received(app) == 3000, 30)
            assert app.shutdown() == 0
        malformed_sent = sum(e.malformed_sent for e in server.connection_log)
    assert malformed_sent > 50
    assert app.receiver.stats.malformed == malformed_sent
    assert_bars_match(server, app)


def test_it_ignores_trades_for_symbols_it_did_not_subscribe_to():
    with feed(rate=1000, seed=13, symbols_extra=True, max_trades=1500) as server:
        with collector(server) as app:
            assert wait_until(lambda: received(app) == 1500, 30)
            app.shutdown()
    assert app.receiver.stats.ignored > 0
    stored = {symbol for symbol, _ in reference.stored_second_bars()}
    assert stored <= set(SYMBOLS)
    assert_bars_match(server, app)


@pytest.mark.postgres
def test_it_survives_its_database_connection_being_killed():
    with feed(rate=1500, seed=17, max_trades=6000) as server:
        with collector(server) as app:
            killed = 0
            for _ in range(3):
                assert wait_until(lambda: app.writer.stats.flushes > 0, 10)
                time.sleep(0.7)
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                    killed += cursor.fetchone()[0]
            assert wait_until(lambda: received(app) == 6000, 30)
            assert app.shutdown() == 0
    assert killed >= 1
    assert_bars_match(server, app)


def test_it_stops_with_a_non_zero_exit_when_a_worker_crashes(monkeypatch, caplog):
    from api.collector.aggregator import Aggregator

    def broken(self, batch, out):
        raise RuntimeError("bug in the aggregator")

    monkeypatch.setattr(Aggregator, "take", broken)
    with feed(rate=200, seed=61) as server:
        with collector(server) as app:
            assert app.stop.wait(10), "a crashed worker must stop the collector"
            assert app.shutdown() == 1
    assert isinstance(app.aggregator.failure, RuntimeError)
    assert "aggregator crashed; stopping the collector" in caplog.text
    assert "bug in the aggregator" in caplog.text


def test_it_collects_the_crypto_feed_with_string_prices_and_quantities():
    with feed(rate=1500, seed=67, max_trades=2000) as server:
        crypto = server.url_for("crypto")
        with collector(server, symbols=["BTC-USD", "ETH-USD"], ws_url=crypto) as app:
            assert wait_until(lambda: received(app) == 2000, 30)
            assert app.shutdown() == 0
    sent = server.sent_trades()
    assert isinstance(sent[0]["p"], str) and isinstance(sent[0]["q"], str)
    assert any("." in trade["q"] for trade in sent)  # fractional quantities
    assert_bars_match(server, app)
