"""A PostgreSQL that accepts only TLS with a client certificate, as managed and
corporate clusters do: every connection the collector opens - the ORM's and the
writer lock's alike - is built from the one DATABASE_URL with all its options."""

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal

import psycopg2
import pytest

from api.simulator import FeedServer, SimOptions
from tests.integration import reference
from tests.integration.pgcluster import available, tls_cluster
from tests.integration.process import ROOT, start_collector

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def cluster():
    reason = available()
    if reason:
        pytest.skip(reason)
    with tls_cluster() as built:
        url = built.url()
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        yield built


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def stored_second_bars(url: str) -> dict:
    return {
        (symbol, int(ts.timestamp())): (o, h, low, c, v, n)
        for symbol, ts, o, h, low, c, v, n in rows(
            url,
            "SELECT t.symbol, s.timestamp, s.ohlc_1sec_open, s.ohlc_1sec_high, "
            "s.ohlc_1sec_low, s.ohlc_1sec_close, s.ohlc_1sec_volume, "
            "s.ohlc_1sec_tick_count FROM api_second_snapshot s "
            "JOIN api_ticker t ON t.id = s.ticker_id",
        )
    }


def stored_candles(url: str) -> dict[str, list[int]]:
    numbers = defaultdict(list)
    for symbol, number, volume in rows(
        url,
        "SELECT t.symbol, c.candle_number, c.total_volume FROM api_tick_candle_100 c "
        "JOIN api_ticker t ON t.id = c.ticker_id ORDER BY 1, 2",
    ):
        assert volume > Decimal(0)
        numbers[symbol].append(number)
    return numbers


def test_it_stores_every_bar_and_takes_the_lock_over_tls(cluster):
    url = cluster.url()
    options = SimOptions(rate=300, seed=73, jitter_ms=0, max_trades=4000)
    with FeedServer(options=options) as server:
        proc = start_collector(
            server,
            "--symbols",
            "AAPL,MSFT",
            "--grace",
            "0.5",
            DATABASE_URL=url,
            COLLECTOR_DATA_DIR=str(cluster.directory / "collector"),
        )
        try:
            assert server.wait_for_trades(options.max_trades, timeout=60)
            # The writer lock is held by a TLS session that presented the
            # client certificate: the collector's own, by its application_name.
            lock = cluster.psql(
                "SELECT a.application_name, s.ssl, s.client_dn FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "JOIN pg_stat_ssl s ON s.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted"
            )
            time.sleep(2)  # the last seconds close and are written
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
        sent = server.sent_trades()
    assert proc.returncode == 0, output
    assert "👑 this collector is the writer for AAPL-MSFT" in output, output
    assert "standby" not in output
    assert lock.startswith("eodhd-collector/"), lock
    assert "|t|" in lock and "CN=collector" in lock, lock
    assert stored_second_bars(url) == reference.second_bars(sent)
    expected = reference.tick_candles(sent)
    candles = stored_candles(url)
    for symbol in ("AAPL", "MSFT"):
        count = sum(1 for key in expected if key[0] == symbol)
        assert candles[symbol] == list(range(1, count + 1))


def test_it_fails_in_one_line_when_the_certificate_is_missing(cluster):
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "run_websocket_collector_v2",
            "--symbol",
            "AAPL",
            "--ws-url",
            "ws://127.0.0.1:9/ws/us",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": cluster.url(cert=False),
            "EODHD_API_KEY": "k",
            "COLLECTOR_STARTUP_DB_WAIT_SECONDS": "2",
            "COLLECTOR_DATA_DIR": str(cluster.directory / "collector-nocert"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("CommandError: cannot start: the database is unreachable")
    assert "certificate" in last
    assert "Traceback" not in result.stderr
