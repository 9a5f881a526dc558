"""The receiver process: a real child process reading a real WebSocket feed on
loopback, seen through the same interface as websocket-client's own socket."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import orjson
import pytest
import websocket

from api.collector.pump import Pump, RemoteSocket
from api.simulator import FeedServer
from tests.integration.proxy import TcpProxy
from tests.integration.test_collector import feed
from tests.waiting import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextlib.contextmanager
def pump() -> Iterator[Pump]:
    p = Pump()
    try:
        yield p
    finally:
        p.close()


def url(server: FeedServer) -> str:
    return server.url + "?api_token=test-key"


def subscribed(p: Pump, server: FeedServer, symbols="AAPL,MSFT") -> RemoteSocket:
    ws = p.create_connection(url(server), timeout=5, skip_utf8_validation=True)
    ws.settimeout(5)
    opcode, data = ws.recv_data(control_frame=True)
    assert json.loads(data) == {"status_code": 200, "message": "Authorized"}
    ws.send(json.dumps({"action": "subscribe", "symbols": symbols}))
    return ws


def read_trades(ws: RemoteSocket, n: int) -> list[dict]:
    trades = []
    while len(trades) < n:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_TEXT:
            trades.append(orjson.loads(data))
    return trades


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): it has exited, its parent has not reaped it.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_frames_arrive_whole_and_in_the_order_sent():
    with feed(rate=2000, seed=3) as server, pump() as p:
        ws = subscribed(p, server)
        got = read_trades(ws, 1500)
        ws.close(timeout=1)
        assert p.pid != os.getpid()
    assert got == server.sent_trades()[:1500]


def test_a_refused_handshake_raises_what_websocket_client_raises():
    with feed(reject_handshake=[403]) as server, pump() as p:
        with pytest.raises(websocket.WebSocketBadStatusException) as caught:
            p.create_connection(url(server), timeout=5)
        assert caught.value.status_code == 403
        # The same process serves the next attempt, which succeeds.
        subscribed(p, server).close(timeout=1)
        assert p.starts == 1


def test_nothing_listening_is_an_oserror():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    with pump() as p, pytest.raises(OSError):
        p.create_connection(f"ws://127.0.0.1:{port}/ws/us", timeout=2)


def test_a_dropped_connection_is_reported_like_websocket_clients():
    with feed(rate=500) as server, pump() as p:
        ws = subscribed(p, server)
        read_trades(ws, 10)
        server.drop_current()
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                ws.recv_data(control_frame=True)
        ws.close(timeout=1)
        # Reconnecting reuses the process and starts clean: Authorized first.
        subscribed(p, server).close(timeout=1)
        assert p.starts == 1
        assert server.connections == 2


def test_a_reset_connection_is_reported_and_the_process_stays():
    with feed(rate=500) as server, pump() as p:
        proxy = TcpProxy("127.0.0.1", server.port).start()
        try:
            via_proxy = f"ws://127.0.0.1:{proxy.port}/ws/us?api_token=test-key"
            ws = p.create_connection(via_proxy, timeout=5)
            ws.settimeout(5)
            ws.recv_data()  # Authorized
            ws.send(json.dumps({"action": "subscribe", "symbols": "AAPL"}))
            read_trades(ws, 5)
            helper = p.pid
            proxy.cut(reset=True)
            with pytest.raises(websocket.WebSocketConnectionClosedException) as caught:
                while True:
                    ws.recv_data(control_frame=True)
            assert "Reset" in str(caught.value) or "reset" in str(caught.value)
            ws.close(timeout=1)
            assert p.pid == helper and alive(helper)
        finally:
            proxy.stop()
        subscribed(p, server).close(timeout=1)
        assert p.starts == 1


def test_frames_of_a_closed_connection_never_leak_into_the_next_one():
    with feed(rate=3000) as server, pump() as p:
        ws = subscribed(p, server)
        read_trades(ws, 5)  # most of what is in flight stays unread
        ws.close(timeout=1)
        subscribed(p, server).close(timeout=1)  # asserts Authorized comes first


def test_a_killed_receiver_process_is_a_dropped_connection_and_is_replaced():
    with feed(rate=500) as server, pump() as p:
        ws = subscribed(p, server)
        read_trades(ws, 5)
        first = p.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                ws.recv_data(control_frame=True)
        ws.close(timeout=1)
        ws = subscribed(p, server)
        assert read_trades(ws, 5)
        assert p.starts == 2 and p.pid != first
        ws.close(timeout=1)


def test_the_receiver_process_ignores_terminal_signals_and_exits_when_told():
    with feed(rate=200) as server:
        p = Pump()
        ws = subscribed(p, server)
        child = p.pid
        os.kill(child, signal.SIGINT)  # Ctrl-C reaches the whole process group
        os.kill(child, signal.SIGTERM)
        assert read_trades(ws, 5)  # still reading: only the parent decides
        ws.close(timeout=1)
        p.close()
        assert wait_until(lambda: not alive(child), 5)


def test_the_receiver_process_exits_when_its_parent_is_killed():
    with feed(rate=200) as server:
        script = textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {ROOT!r})
            from api.collector.pump import Pump
            p = Pump()
            ws = p.create_connection({url(server)!r}, timeout=5)
            print(p.pid, flush=True)
            time.sleep(60)
            """
        )
        parent = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        )
        try:
            child = int(parent.stdout.readline())
            assert alive(child)
            parent.kill()
            parent.wait(5)
            assert wait_until(lambda: not alive(child), 5)
        finally:
            parent.kill()
            parent.stdout.close()


def test_a_ping_sent_through_the_receiver_process_brings_its_pong_back():
    with feed(rate=0.5) as server, pump() as p:
        ws = subscribed(p, server)
        ws.ping()
        ws.settimeout(0.1)
        opcodes = set()
        assert wait_until(lambda: opcodes.add(next_opcode(ws)) or PONG in opcodes, 5)
        ws.close(timeout=1)


PONG = websocket.ABNF.OPCODE_PONG


def next_opcode(ws: RemoteSocket) -> int | None:
    try:
        return ws.recv_data(control_frame=True)[0]
    except websocket.WebSocketTimeoutException:
        return None
