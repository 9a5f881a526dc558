"""The collector as users run it: a separate process, stopped by a signal."""

import os
import signal
import subprocess
import sys
import time

import pytest

from api.simulator import FeedServer, SimOptions
from tests.integration import reference
from tests.integration.process import ROOT, database_url, start_collector

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_it_exits_0_within_10s_on_sigterm_with_every_ended_second_stored(tmp_path):
    spool = str(tmp_path)
    server = FeedServer(options=SimOptions(rate=800, seed=21, jitter_ms=0)).start()
    try:
        proc = start_collector(
            server, "--symbols", "AAPL,MSFT", "--grace", "0.5", "--spool-dir", spool
        )
        assert server.wait_for_trades(2500, timeout=30)
        stopped_at = time.time()
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        output, _ = proc.communicate(timeout=20)
        took = time.monotonic() - began
        sent = server.sent_trades()
    finally:
        server.stop()

    assert proc.returncode == 0, output
    assert took < 10
    assert "secret-k3y" not in output
    assert "session statistics" in output
    # Every second that had ended (with a margin for frames still on the wire)
    # is stored exactly as the reference computes it.
    ended = int(stopped_at - 0.3)
    expected = {
        key: bar for key, bar in reference.second_bars(sent).items() if key[1] < ended
    }
    stored = reference.stored_second_bars()
    assert len(expected) >= 3
    assert {k: v for k, v in stored.items() if k[1] < ended} == expected


def test_it_refuses_to_start_without_a_key_with_one_clear_line():
    env = {k: v for k, v in os.environ.items() if k != "EODHD_API_KEY"}
    env["DATABASE_URL"] = database_url()
    result = subprocess.run(
        [sys.executable, "manage.py", "run_websocket_collector_v2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "CommandError: EODHD_API_KEY is not set: put it in the environment or in "
        ".env (or run with --demo)"
    ]
