"""The web app under the gunicorn settings the deployment uses
(backend/gunicorn_conf.py): open event streams never starve the API, and the
stream past SSE_MAX_CLIENTS is refused at once."""

import os
import subprocess
import sys

import pytest
import requests

from api.models import Ticker
from tests.integration.process import ROOT, database_url, free_port
from tests.integration.test_stream import Client, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web():
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SECRET_KEY": "test-secret-key-for-the-web-server-test-only",
        "ALLOWED_HOSTS": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "SSE_MAX_CLIENTS": "4",  # and so 36 threads
    }
    process = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "gunicorn"),
            "-c",
            "python:backend.gunicorn_conf",
            "backend.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
        ],  # fmt: skip
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/api/health/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(up, 30), process.stdout.read() if process.poll() else ""
        yield url
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "gthread" in output  # gunicorn names its worker class at boot


def test_streams_up_to_the_limit_leave_the_api_answering(web):
    Ticker.objects.create(symbol="AAPL")
    streams = [Client(f"{web}/api/stream/?symbols=AAPL") for _ in range(4)]
    try:
        assert all(s.response.status_code == 200 for s in streams)
        # (A synchronous worker would still be busy with the first stream: the
        # request would time out.)
        response = requests.get(f"{web}/api/symbols/", timeout=10)
        assert response.status_code == 200
        assert response.json()["symbols"][0]["symbol"] == "AAPL"
        refused = requests.get(f"{web}/api/stream/?symbols=AAPL", timeout=10)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "10"
    finally:
        for s in streams:
            s.close()
