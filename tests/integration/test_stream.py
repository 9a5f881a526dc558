"""Pushed updates over Server-Sent Events, across processes: a collector
process commits bars, PostgreSQL's NOTIFY wakes the web process, the stream
carries them - and a client that reconnects resumes where it stopped."""

import json
import threading
import time

import pytest
import requests

from api import stream as push
from api.models import SecondSnapshot
from api.simulator import FeedServer, SimOptions
from tests.integration.process import start_collector

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class Client:
    """An SSE client in a thread: the events it received, parsed."""

    def __init__(self, url: str, headers: dict | None = None) -> None:
        self.response = requests.get(url, stream=True, timeout=30, headers=headers)
        self.events: list[dict] = []
        self.comments: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        current: dict = {}
        try:
            for raw in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                if raw == "":
                    if "data" in current:
                        self.events.append(current)
                    current = {}
                elif raw.startswith(":"):
                    self.comments.append(raw)
                else:
                    name, _, value = raw.partition(": ")
                    current[name] = value
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed by the test

    def close(self) -> None:
        self.response.close()


@pytest.fixture(autouse=True)
def hub_stopped():
    """No stream outlives its test (nor its database connections)."""
    yield
    hub = push.hub()
    for sub in list(hub._subscribers):
        hub.unsubscribe(sub)
    assert wait_until(lambda: hub._thread is None, 5)


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_bars_a_collector_process_commits_arrive_and_a_client_resumes(live_server):
    url = f"{live_server.url}/api/stream/?symbols=AAPL,MSFT"
    client = Client(url)
    assert client.response.headers["Content-Type"].startswith("text/event-stream")
    wakeups = push.hub().wakeups
    server = FeedServer(options=SimOptions(rate=200, seed=13)).start()
    collector = start_collector(server, "--symbols", "AAPL,MSFT", "--grace", "0.5")
    try:
        assert wait_until(
            lambda: (
                {json.loads(e["data"])["symbol"] for e in client.events}
                == {"AAPL", "MSFT"}
                and len(client.events) >= 10
            ),
            30,
        ), client.events[:3]
        client.close()
        seen = list(client.events)
        # Woken by the collector's NOTIFY, not by polling alone.
        assert push.hub().wakeups > wakeups
        # Each event is a stored bar as the read API shows it.
        event = json.loads(seen[-1]["data"])
        row = SecondSnapshot.objects.get(
            ticker__symbol=event["symbol"], timestamp=event["timestamp"]
        )
        assert event["tick_count"] == row.ohlc_1sec_tick_count
        assert seen[-1]["event"] == "second"

        # Reconnect after the last event seen: the bars stored meanwhile come
        # first, none of those already seen is lost.
        time.sleep(2)
        resumed = Client(url, headers={"Last-Event-ID": seen[-1]["id"]})
        assert wait_until(lambda: len(resumed.events) >= 3, 20)
        resumed.close()
        first = resumed.events[0]
        assert int(first["id"]) >= int(seen[-1]["id"])
        ids = [int(e["id"]) for e in resumed.events]
        assert ids == sorted(ids)
    finally:
        collector.terminate()
        collector.wait(15)
        server.stop()
        client.close()


def test_a_quiet_stream_sends_heartbeats(live_server, monkeypatch):
    monkeypatch.setattr(push, "HEARTBEAT", 0.3)
    client = Client(f"{live_server.url}/api/stream/?symbols=QLD")
    assert wait_until(lambda: len(client.comments) >= 2, 10)
    client.close()
    assert client.comments[0] == ": keepalive"


def test_bad_streams_are_refused_and_the_number_of_streams_is_bounded(
    live_server, monkeypatch
):
    base = f"{live_server.url}/api/stream/"
    assert requests.get(base, timeout=5).status_code == 400  # no symbols
    assert (
        requests.get(base + "?symbols=AAPL&kinds=ticks", timeout=5).status_code == 400
    )
    assert requests.get(base + "?symbols=AAPL&x=1", timeout=5).status_code == 400
    bad_id = requests.get(
        base + "?symbols=AAPL", headers={"Last-Event-ID": "abc"}, timeout=5
    )
    assert bad_id.status_code == 400
    monkeypatch.setattr(push.hub(), "max_clients", 1)
    first = Client(base + "?symbols=AAPL")
    assert wait_until(lambda: len(push.hub()._subscribers) == 1, 5)
    busy = requests.get(base + "?symbols=AAPL", timeout=5)
    first.close()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "10"
