"""Starting and stopping as an operator meets it: a start that cannot succeed
says why in one line and leaves nothing running; every stop signal saves what
must be saved."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from api.simulator import FeedServer, SimOptions
from tests.integration import reference
from tests.integration.process import ROOT, database_url, free_port, start_collector

pytestmark = pytest.mark.postgres


def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    environ = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "EODHD_API_KEY": "k",
        **env,
    }
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "run_websocket_collector_v2",
            "--ws-url",
            "ws://127.0.0.1:9/ws/us",
            "--skip-market-hours",
            "--no-news",
            *args,
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "Error" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.django_db
def test_it_says_in_one_line_that_the_spool_path_cannot_be_used(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    line = error_line(run("--spool-dir", str(blocker)))
    assert line.startswith("CommandError: cannot start: the spool directory")
    assert str(blocker) in line and "cannot be used" in line


@pytest.mark.django_db
def test_it_says_in_one_line_that_the_metrics_port_is_taken(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run("--metrics-port", str(port), "--spool-dir", str(tmp_path))
    line = error_line(result)
    assert line == (
        f"CommandError: cannot start: cannot serve metrics on 127.0.0.1:{port}: "
        "Address already in use"
    )
    # Nothing half-started: the spool directory is free for the next run.
    assert "collector starting" in result.stderr
    assert "connected" not in result.stderr


def test_it_gives_up_on_an_unreachable_database_with_one_line(tmp_path):
    closed = free_port()  # nothing listens there
    result = run(
        "--spool-dir",
        str(tmp_path),
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed}/nowhere",
        COLLECTOR_STARTUP_DB_WAIT_SECONDS="2",
    )
    line = error_line(result)
    assert line.startswith("CommandError: cannot start: the database is unreachable")
    assert line.endswith("gave up after 2 s")


@pytest.mark.django_db(transaction=True)
def test_it_shuts_down_on_sighup_like_sigterm_with_every_ended_second_stored(
    tmp_path,
):
    with FeedServer(options=SimOptions(rate=600, seed=97, jitter_ms=0)) as server:
        proc = start_collector(
            server, "--symbols", "AAPL", "--grace", "0.5", "--spool-dir", str(tmp_path)
        )
        assert server.wait_for_trades(1800, timeout=30)
        stopped_at = time.time()
        proc.send_signal(signal.SIGHUP)
        output, _ = proc.communicate(timeout=20)
        sent = server.sent_trades()
    assert proc.returncode == 0, output
    assert "SIGHUP received: shutting down" in output
    assert "saved" in output and "partial 100-trade bars" in output
    # What it keeps on disk is its user's alone.
    kept = [tmp_path, *tmp_path.rglob("*")]
    assert len(kept) >= 4  # the lock, the identity, the spool, the partial bars
    for path in kept:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0 or path == tmp_path, f"{path}: {oct(mode)}"
    ended = int(stopped_at - 0.3)
    expected = {
        key: bar for key, bar in reference.second_bars(sent).items() if key[1] < ended
    }
    stored = reference.stored_second_bars()
    assert len(expected) >= 2
    assert {k: v for k, v in stored.items() if k[1] < ended} == expected


# The collector may create its ticker before it stops: the tables are emptied after.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("after", [0.1, 0.3, 0.35, 0.5, 0.8])
def test_it_stops_quietly_on_sigint_during_startup(after, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_websocket_collector_v2", "--demo"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "COLLECTOR_DATA_DIR": str(tmp_path),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()  # never leave a collector running on the test database
        _, err = proc.communicate()
        raise AssertionError(f"still running 30 s after SIGINT:\n{err}") from None
    assert proc.returncode == 0, err
    # A KeyboardInterrupt raised inside a finaliser is printed and ignored, and
    # the process would run on: the signal must only ever set the stop flag.
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
