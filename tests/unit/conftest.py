"""Fixtures of the simulator's unit tests (test_simulator, test_simulator_ticks)."""

from collections.abc import Iterator

import pytest
import websocket

from api.simulator import FeedServer, SimOptions

# Clients a test opened: hung up before the servers stop.
CLIENTS: list[websocket.WebSocket] = []


@pytest.fixture
def make_server() -> Iterator:
    servers: list[FeedServer] = []

    def start(valid_tokens: set[str] | None = None, **options) -> FeedServer:
        server = FeedServer(options=SimOptions(**options), valid_tokens=valid_tokens)
        servers.append(server.start())
        return server

    yield start
    # Hang up first: a client that never answers the close frame makes stop()
    # wait out the server's close timeout.
    while CLIENTS:
        CLIENTS.pop().shutdown()
    for server in servers:
        server.stop()
