"""The simulator's account-wide limits (per API token): connections refused
with HTTP 403 at the handshake, symbols refused with the 422 frame across a
token's sockets, and the slots of a socket that died held for a while."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import websocket

from api.simulator import AUTHORIZED, FeedServer
from api.simulator.server import TokenUsage
from tests.unit.conftest import CLIENTS
from tests.waiting import wait_until

LIMIT = '{"status_code":422,"message":"Symbols limit reached"}'
FIFTY = ",".join(f"S{n:02}" for n in range(50))
TEN = ",".join(f"T{n}" for n in range(10))


def connect(server: FeedServer, token: str = "key"):
    ws = websocket.create_connection(f"{server.url}?api_token={token}", timeout=2)
    CLIENTS.append(ws)
    assert ws.recv() == AUTHORIZED
    return ws


def send(ws, action: str, symbols: str) -> None:
    ws.send(json.dumps({"action": action, "symbols": symbols}))


def subscribed(server: FeedServer, connection: int, count: int) -> bool:
    """Waits until the connection's subscription holds `count` symbols."""
    return wait_until(
        lambda: len(server.connection_log[connection].symbols) == count, 2
    )


def frames_until(ws, text: str) -> list[str]:
    """The frames received before `text` (which must come within the timeout)."""
    before = []
    while (frame := ws.recv()) != text:
        before.append(frame)
    return before


def kinds(server: FeedServer) -> list[str]:
    return [r.kind for r in server.refusals()]


def test_an_upgrade_over_max_connections_gets_403_at_the_handshake(make_server):
    server = make_server(max_connections=2)
    connect(server)
    connect(server)

    with pytest.raises(websocket.WebSocketBadStatusException) as error:
        connect(server)

    assert error.value.status_code == 403
    assert (server.handshake_attempts, server.connections) == (3, 2)
    [refusal] = server.refusals()
    assert (refusal.kind, refusal.token, refusal.connection) == (
        "connections",
        "key",
        None,
    )
    assert (refusal.would_be, refusal.limit) == (3, 2)
    # The limit is per token: another key has its own slots.
    connect(server, token="other")
    assert server.usage("key").connections == 2
    assert server.usage("other").connections == 1


def test_simultaneous_upgrades_never_exceed_max_connections(make_server):
    # An upgrade counts from its handshake on, before its handler runs.
    server = make_server(max_connections=2)

    def attempt(_) -> int:
        try:
            connect(server)
        except websocket.WebSocketBadStatusException as error:
            return error.status_code
        return 101

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(attempt, range(8)))

    assert statuses == [101, 101] + [403] * 6
    assert server.connections == 2
    assert kinds(server) == ["connections"] * 6


def test_a_clean_close_frees_the_connection_slot_at_once(make_server):
    server = make_server(max_connections=1, slot_hold=30.0)
    first = connect(server)

    first.close()  # a close frame: nothing is held

    assert wait_until(lambda: server.usage("key").connections == 0, 1)
    connect(server)
    assert kinds(server) == []
    assert server.connection_log[0].ended == "client-closed"


def test_account_symbols_count_across_the_tokens_connections(make_server):
    server = make_server(rate=200, account_symbols=60)
    first, second = connect(server), connect(server)
    send(first, "subscribe", FIFTY)
    assert subscribed(server, 0, 50)
    send(second, "subscribe", TEN)
    assert subscribed(server, 1, 10)

    send(second, "subscribe", "AAPL")

    frames_until(second, LIMIT)  # refused whole, the socket stays up
    later = {json.loads(second.recv())["s"] for _ in range(20)}
    assert later <= set(TEN.split(","))
    log = server.connection_log
    assert (len(log[0].symbols), log[1].symbols) == (50, sorted(TEN.split(",")))
    assert server.usage("key") == TokenUsage(2, 60, 0, 0)
    [refusal] = server.refusals()
    assert (refusal.kind, refusal.connection, refusal.would_be, refusal.limit) == (
        "symbols",
        1,
        61,
        60,
    )
    # Another token's symbols are not counted against this one.
    other = connect(server, token="other")
    send(other, "subscribe", FIFTY)
    assert subscribed(server, 2, 50)


def test_the_per_connection_limit_still_refuses_first(make_server):
    server = make_server(account_symbols=100)
    ws = connect(server)

    send(ws, "subscribe", FIFTY + ",AAPL")

    assert ws.recv() == LIMIT
    assert kinds(server) == ["connection-symbols"]
    assert server.refusals()[0].would_be == 51
    assert server.usage("key").symbols == 0


def test_an_unsubscribe_frees_symbol_slots(make_server):
    server = make_server(rate=50, account_symbols=60)
    first, second = connect(server), connect(server)
    send(first, "subscribe", FIFTY)
    send(second, "subscribe", TEN)
    assert subscribed(server, 0, 50) and subscribed(server, 1, 10)
    send(second, "subscribe", "AAPL")
    frames_until(second, LIMIT)

    send(first, "unsubscribe", "S00,S01")
    assert subscribed(server, 0, 48)
    send(second, "subscribe", "AAPL,MSFT")

    assert subscribed(server, 1, 12)
    assert server.usage("key").symbols == 60
    assert kinds(server) == ["symbols"]


def test_a_dropped_connection_holds_its_slots_until_slot_hold_passes(make_server):
    server = make_server(rate=50, max_connections=2, account_symbols=5, slot_hold=1.0)
    first, second = connect(server), connect(server)
    send(first, "subscribe", "A,B,C,D,E")
    assert subscribed(server, 0, 5)

    dropped_at = time.monotonic()
    assert server.drop(0)
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        frames_until(first, "")
    assert wait_until(lambda: server.usage("key").held_connections == 1, 1)

    # Still taken: the connection slot and the symbols of the dead socket.
    assert server.usage("key") == TokenUsage(2, 5, 1, 5)
    with pytest.raises(websocket.WebSocketBadStatusException) as error:
        connect(server)
    assert error.value.status_code == 403
    send(second, "subscribe", "AAPL")
    assert second.recv() == LIMIT
    assert kinds(server) == ["connections", "symbols"]

    assert wait_until(lambda: server.usage("key").held_connections == 0, 2)
    assert time.monotonic() - dropped_at >= 1.0
    assert server.usage("key") == TokenUsage(1, 0, 0, 0)
    connect(server)
    send(second, "subscribe", "AAPL")
    assert subscribed(server, 1, 1)
    assert kinds(server) == ["connections", "symbols"]


def test_a_client_gone_without_a_close_frame_holds_its_slots(make_server):
    server = make_server(max_connections=1, slot_hold=1.0)
    first = connect(server)
    send(first, "subscribe", "AAPL")
    assert subscribed(server, 0, 1)
    CLIENTS.remove(first)

    first.shutdown()  # the TCP connection closes, no close frame

    assert wait_until(lambda: server.usage("key").held_connections == 1, 1)
    assert server.usage("key") == TokenUsage(1, 1, 1, 1)
    with pytest.raises(websocket.WebSocketBadStatusException) as error:
        connect(server)
    assert error.value.status_code == 403
    assert wait_until(lambda: server.usage("key").connections == 0, 2)
    connect(server)


def test_without_limits_nothing_is_refused_or_held(make_server):
    server = make_server(rate=50)
    clients = [connect(server) for _ in range(4)]
    for ws in clients:
        send(ws, "subscribe", FIFTY)
    for number in range(4):
        assert subscribed(server, number, 50)
    assert server.drop(0)

    assert wait_until(lambda: server.usage("key").connections == 3, 1)
    assert server.usage("key") == TokenUsage(3, 150, 0, 0)
    assert server.refusals() == []
