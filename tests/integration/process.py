"""Running the collector as users do: a separate process on the test database."""

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from django.db import connection

from api.simulator import FeedServer

ROOT = Path(__file__).resolve().parents[2]


def database_url(port: int | None = None) -> str:
    """The URL of the test database (optionally through another port, such as a
    proxy's), for a child process to share it."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    host = s["HOST"] or "127.0.0.1"
    return f"postgres://{auth}@{host}:{port or s['PORT'] or 5432}/{s['NAME']}"


# Every collector process a test started, so that none outlives its test.
STARTED: list[subprocess.Popen] = []


def start_collector(
    server: FeedServer, *args: str, db_port: int | None = None, **env: str
) -> subprocess.Popen:
    environ = {
        **os.environ,
        "DATABASE_URL": database_url(db_port),
        "EODHD_API_KEY": "secret-k3y",
        # Reconnect to the database quickly once it is back.
        "CONN_MAX_AGE": "0",
        **env,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_websocket_collector_v2",
            "--ws-url",
            server.url,
            "--skip-market-hours",
            "--no-news",
            *args,
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    STARTED.append(proc)
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthz(port: int) -> tuple[int, dict]:
    """(HTTP status, JSON body) of a collector's /healthz; (0, {}) if it does
    not answer."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}
