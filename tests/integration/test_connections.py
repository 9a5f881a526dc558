"""More symbols than one EODHD connection takes: one process spreads them over
several connections against a simulator that enforces EODHD's limits (50
symbols a socket, a few sockets an account), and stores every bar exactly."""

import signal
import time

import pytest

from api.models import Ticker
from api.simulator import FeedServer, SimOptions
from tests.integration import reference
from tests.integration.process import free_port, start_collector
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SYMBOLS = [f"T{i:03d}" for i in range(120)]


def scrape(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_120_symbols_go_over_3_connections_within_the_accounts_limits(tmp_path):
    options = SimOptions(
        rate=400,
        seed=233,
        jitter_ms=0,
        max_symbols=50,
        max_connections=3,
        account_symbols=150,
        slot_hold=30.0,
    )
    port = free_port()
    with FeedServer(options=options) as server:
        proc = start_collector(
            server,
            "--symbols",
            ",".join(SYMBOLS),
            "--grace",
            "0.5",
            "--spool-dir",
            str(tmp_path),
            "--metrics-port",
            str(port),
        )
        try:
            assert server.wait_for_connections(3, timeout=30)
            assert wait_until(
                lambda: sum(len(r.symbols) for r in server.connection_log) == 120, 15
            )
            time.sleep(6)
            metrics = scrape(port)
            server.set_silent(True)
            time.sleep(1.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
        log = server.connection_log
        refusals = server.refusals()
        sent = server.sent_trades()
    assert proc.returncode == 0, output
    assert refusals == [], refusals
    assert len(log) == 3  # no reconnects, no fourth socket
    assert sorted(len(r.symbols) for r in log) == [20, 50, 50]
    assert sorted(s for r in log for s in r.symbols) == SYMBOLS
    for name in ("us", "us-2", "us-3"):
        assert (
            f'collector_connection_connected{{connection="{name}",stream="us"}} 1.0'
            in (metrics)
        )
    assert 'collector_stream_connected{stream="us"} 1.0' in metrics
    # Every symbol traded and every bar is stored exactly.
    assert {t["s"] for t in sent} == set(SYMBOLS)
    assert Ticker.objects.filter(symbol__in=SYMBOLS).count() == 120
    assert reference.stored_second_bars() == reference.second_bars(sent)
    assert reference.stored_tick_candles() == reference.tick_candles(sent)
