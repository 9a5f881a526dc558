"""Promise 3: a database outage, a crash or a restart loses nothing.

The collector runs as its own process against PostgreSQL through a TCP proxy the
test controls; the test itself talks to PostgreSQL directly."""

import signal
import time

import pytest

from api.models import SecondSnapshot
from api.simulator import FeedServer, SimOptions
from tests.integration import reference
from tests.integration.process import start_collector
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SYMBOLS = "AAPL,MSFT"


def stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    return output


def test_it_stores_every_bar_exactly_through_a_30s_database_outage(proxy, tmp_path):
    options = SimOptions(rate=150, seed=41, jitter_ms=0, max_trades=150 * 42)
    with FeedServer(options=options) as server:
        proc = start_collector(
            server,
            "--symbols",
            SYMBOLS,
            "--grace",
            "0.5",
            "--spool-dir",
            str(tmp_path),
            db_port=proxy.port,
        )
        try:
            assert wait_until(lambda: SecondSnapshot.objects.count() >= 3, 30)
            proxy.cut()
            time.sleep(30)
            assert proc.poll() is None, "the collector must ride out the outage"
            assert proxy.refused > 0  # it kept trying, through the proxy
            proxy.restore()
            assert server.wait_for_trades(options.max_trades, timeout=60)
            time.sleep(2)  # the last seconds close and are written
        finally:
            output = stop(proc)
        sent = server.sent_trades()
    assert "spool" in output, output
    assert reference.stored_second_bars() == reference.second_bars(sent)
    assert reference.stored_tick_candles() == reference.tick_candles(sent)


def test_it_keeps_every_closed_bar_when_killed_during_an_outage(proxy, tmp_path):
    options = SimOptions(rate=150, seed=43, jitter_ms=0)
    spool = str(tmp_path)
    with FeedServer(options=options) as server:
        args = ("--symbols", SYMBOLS, "--grace", "0.5", "--spool-dir", spool)
        first = start_collector(server, *args, db_port=proxy.port)
        try:
            assert wait_until(lambda: SecondSnapshot.objects.count() >= 3, 30)
            proxy.cut()
            time.sleep(5)
            killed_at = time.time()
            first.kill()  # SIGKILL: no chance to flush anything
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        sent_before_kill = server.sent_trades(connection=0)
        proxy.restore()
        second = start_collector(server, *args, db_port=proxy.port)
        try:
            # The restarted collector writes the spool before anything else.
            assert wait_until(lambda: server.connections >= 2, 30)
            time.sleep(3)
        finally:
            output = stop(second)
    assert "from the spool" in output
    # Every second that had closed (its end + grace + one writer cycle) before
    # the kill is stored, exactly.
    closed = int(killed_at - 2.0)
    expected = {
        key: bar
        for key, bar in reference.second_bars(sent_before_kill).items()
        if key[1] < closed
    }
    stored = reference.stored_second_bars()
    assert len(expected) >= 10
    assert {key: bar for key, bar in stored.items() if key[1] < closed} == expected


def test_it_continues_100_trade_bars_exactly_across_a_restart(tmp_path):
    spool = str(tmp_path)
    options = SimOptions(rate=400, seed=47, jitter_ms=0)
    with FeedServer(options=options) as server:
        args = ("--symbols", SYMBOLS, "--grace", "0.5", "--spool-dir", spool)
        first = start_collector(server, *args)
        try:
            assert server.wait_for_trades(1550, timeout=30)
            # Pause the feed so the collector has read every frame sent.
            server.set_silent(True)
            time.sleep(1.0)
        finally:
            first_output = stop(first)
        assert "saved" in first_output and "partial 100-trade bars" in first_output
        second = start_collector(server, *args)
        try:
            assert server.wait_for_connections(2, timeout=30)
            server.set_silent(False)
            assert wait_until(lambda: server.trades_sent >= 3100, 30)
            server.set_silent(True)
            time.sleep(1.0)
        finally:
            second_output = stop(second)
        sent = server.sent_trades()
    assert "continuing 100-trade bar" in second_output
    assert "open 1-minute bars" in first_output
    # As if the process had never stopped: the candles of the whole stream, and
    # the minute that spans the restart holds the trades of both runs.
    assert reference.stored_tick_candles() == reference.tick_candles(sent)
    assert reference.stored_second_bars() == reference.second_bars(sent)
    assert reference.stored_minute_bars() == reference.minute_bars(sent)
