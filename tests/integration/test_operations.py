"""Operating the collector: Prometheus metrics, /healthz, logs without secrets."""

import json
import logging
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
            assert "collector_reconnects_total{reason=connection dropped}" not in sample
            assert sample["collector_receiver_process_starts_total"] == 1


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
