"""Operating the collector: Prometheus metrics, /healthz, logs without secrets."""

import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_collector import collector, feed, received, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metrics(port: int) -> dict[str, float]:
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if sample.labels:
                key += (
                    "{"
                    + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    + "}"
                )
            values[key] = sample.value
    return values


def test_it_serves_prometheus_counters_that_match_what_the_feed_sent():
    with feed(rate=2000, seed=23, malformed_prob=0.02, max_trades=2000) as server:
        with collector(server, metrics_port=0) as app:
            port = app.metrics.port
            assert wait_until(lambda: received(app) == 2000, 30)
            assert wait_until(lambda: app.writer.stats.bars_written > 0, 10)
            sample = metrics(port)
            malformed = sum(e.malformed_sent for e in server.connection_log)
            assert sample["collector_trades_accepted_total"] == 2000
            assert sample["collector_malformed_frames_total"] == malformed
            assert sample["collector_frames_received_total"] == 2000 + malformed
            assert sample["collector_connected"] == 1
            assert (
                sample["collector_bars_written_total{kind=second}"]
                == app.writer.stats.bars_written
            )
            assert sample["collector_commit_delay_seconds_count"] == (
                app.writer.stats.bars_written
            )
            assert sample["collector_symbol_bars_written_total{symbol=AAPL}"] > 0
            # Reasons are exported from the start, at 0: rate() works at once.
            assert sample["collector_reconnects_total{reason=connection dropped}"] == 0
            assert sample["collector_db_errors_total{kind=timeout}"] == 0
            assert sample["collector_receiver_process_starts_total"] == 1
            # When each symbol's last trade came, as Unix time.
            now = time.time()
            for symbol in ("AAPL", "MSFT", "TSLA"):
                at = sample[
                    f"collector_symbol_last_trade_timestamp_seconds{{symbol={symbol}}}"
                ]
                assert now - 30 < at <= now + 1
            # The standard series, and what runs.
            assert sample["process_cpu_seconds_total"] > 0
            assert sample["process_resident_memory_bytes"] > 10e6
            build = [k for k in sample if k.startswith("collector_build_info{")]
            assert len(build) == 1 and "version=0.1.0" in build[0]
            assert "python_info{" in "".join(sample)
            assert sample["collector_health{severity=ok,state=ok}"] == 1
            connected = sample["collector_connected_since_timestamp_seconds"]
            assert now - 60 < connected <= now


def test_it_flips_healthz_to_503_when_the_feed_goes_silent_and_back_after():
    with feed(rate=300, seed=29) as server:
        with collector(server, metrics_port=0, stale_after=1.0) as app:
            url = f"http://127.0.0.1:{app.metrics.port}/healthz"
            assert wait_until(lambda: received(app) > 20, 10)
            assert wait_until(lambda: get(url)[0] == 200, 5)
            server.set_silent(True)
            seen = {}

            def unhealthy() -> bool:
                status, body = get(url)
                if status == 503:
                    seen.update(json.loads(body))
                return status == 503

            assert wait_until(unhealthy, 10)
            # The monitor forces a reconnect; the new socket is silent too.
            assert wait_until(lambda: app.receiver.stats.reconnects.get("stale"), 10)
            server.set_silent(False)
            assert wait_until(lambda: get(url)[0] == 200, 10)
    assert seen["status"] == "unhealthy"
    assert seen["state"] in {"stale", "connecting"}


def test_it_never_logs_the_api_token(caplog):
    with caplog.at_level(logging.DEBUG):
        with feed(rate=500, seed=31, drop_after=[50], malformed_prob=0.05) as server:
            with collector(server, api_key="TOPSECRET-123") as app:
                assert wait_until(lambda: received(app) >= 150, 15)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "connected to ws://127.0.0.1" in text
    assert "api_token=***" in text
    assert "TOPSECRET-123" not in text


def test_it_keeps_answering_health_checks_through_a_flood_of_idle_connections():
    def health(port: int) -> int:
        try:
            return get(f"http://127.0.0.1:{port}/healthz")[0]
        except OSError:  # refused or closed while the slots are taken
            return 0

    with feed(rate=200, seed=37) as server:
        with collector(server, metrics_port=0) as app:
            port = app.metrics.port
            assert wait_until(lambda: received(app) > 20, 10)
            before = len(os.listdir("/proc/self/fd"))
            idle = []
            try:
                for _ in range(140):  # connect, send nothing, keep it open
                    idle.append(socket.create_connection(("127.0.0.1", port)))
                during = len(os.listdir("/proc/self/fd"))
                began = time.monotonic()
                assert wait_until(lambda: health(port) == 200, 15)
                took = time.monotonic() - began
            finally:
                for sock in idle:
                    sock.close()
            assert app.metrics.rejected > 100
            # The test's own 140 sockets, plus at most the server's slots.
            assert during - before <= 140 + app.metrics.MAX_CONNECTIONS + 8
            assert app.writer.stats.db_errors == {}  # the database never starved
            assert app.writer.stats.bars_written > 0
    print(f"/healthz answered {took:.1f} s into a flood of 140 idle connections")
    assert took < 10
