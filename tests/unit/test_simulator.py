"""The EODHD feed simulator, exercised over real sockets with websocket-client,
the same client library the collector uses."""

import json
import math
import time
from datetime import UTC, datetime

import orjson
import pytest
import websocket

from api.simulator import AUTHORIZED, FeedServer
from tests.unit.conftest import CLIENTS

FORBIDDEN = '{"status":403,"message":"Server error"}'
LIMIT = '{"status_code":422,"message":"Symbols limit reached"}'
FAULT = '{"status":500,"message":"Server error"}'
FIXED_NOW = 1_800_000_000.0  # a frozen clock makes `t` checkable


def connect(server: FeedServer, feed: str = "us", token: str = "key"):
    ws = websocket.create_connection(
        f"{server.url_for(feed)}?api_token={token}", timeout=2
    )
    CLIENTS.append(ws)
    return ws


def subscribe(ws, symbols: str) -> None:
    ws.send(json.dumps({"action": "subscribe", "symbols": symbols}))


def receive(ws, n: int) -> list[dict]:
    return [json.loads(ws.recv()) for _ in range(n)]


def receive_until_quiet(ws, quiet: float = 0.3) -> list[str]:
    ws.settimeout(quiet)
    frames = []
    while True:
        try:
            frames.append(ws.recv())
        except websocket.WebSocketTimeoutException:
            return frames


def is_valid_trade(raw: str) -> bool:
    # What a strict collector accepts; orjson refuses NaN and Infinity.
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(frame, dict) or not isinstance(frame.get("s"), str):
        return False
    p, v, t = frame.get("p"), frame.get("v"), frame.get("t")
    numbers = all(isinstance(x, int | float) for x in (p, v, t))
    return numbers and math.isfinite(p) and p > 0 and v >= 0


def test_it_sends_authorized_first_and_no_trade_before_a_subscribe(make_server):
    server = make_server(rate=1000)
    ws = connect(server)

    assert ws.recv() == AUTHORIZED
    assert receive_until_quiet(ws) == []
    assert server.sent_trades() == []
    assert server.connections == 1


def test_it_streams_us_trades_only_for_the_subscribed_symbols(make_server):
    server = make_server(rate=2000, seed=1, fractional_prob=0.2)
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL,MSFT")

    frames = receive(ws, 300)

    assert {f["s"] for f in frames} == {"AAPL", "MSFT"}
    for f in frames:
        assert list(f) == ["s", "p", "c", "v", "dp", "ms", "t"]
        assert isinstance(f["p"], int | float) and f["p"] > 0
        assert all(isinstance(code, int) for code in f["c"])
        assert isinstance(f["v"], int | float) and f["v"] > 0
        assert isinstance(f["dp"], bool)
        assert f["ms"] in ("open", "extended-hours", "closed")
        assert isinstance(f["t"], int)
    assert any(f["c"] == [] for f in frames)
    assert any(f["dp"] for f in frames)
    assert any(f["v"] % 100 == 0 for f in frames)  # round lots
    assert any(f["v"] < 100 for f in frames)  # odd lots
    assert any(isinstance(f["v"], float) for f in frames)  # fractional sizes
    assert server.connection_log[0].symbols == ["AAPL", "MSFT"]


@pytest.mark.parametrize(
    ("at", "status"),
    [
        # Monday 21 September 2026, New York time.
        (datetime(2026, 9, 21, 14, 0, tzinfo=UTC), "open"),  # 10:00
        (datetime(2026, 9, 21, 12, 0, tzinfo=UTC), "extended-hours"),  # 08:00
        (datetime(2026, 9, 21, 21, 0, tzinfo=UTC), "extended-hours"),  # 17:00
        (datetime(2026, 9, 22, 2, 0, tzinfo=UTC), "closed"),  # 22:00
        (datetime(2026, 11, 26, 16, 0, tzinfo=UTC), "closed"),  # Thanksgiving
    ],
)
def test_it_sends_the_market_status_and_conditions_of_the_session(
    make_server, at, status
):
    server = make_server(rate=3000, seed=4, clock=lambda: at.timestamp())
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL")

    frames = receive(ws, 400)

    assert {f["ms"] for f in frames} == {status}
    form_t = sum(12 in f["c"] for f in frames) / len(frames)
    odd_lots = sum(37 in f["c"] for f in frames) / len(frames)
    # Form T is what most prints carry outside regular hours, never inside.
    if status == "open":
        assert form_t == 0
    else:
        assert form_t > 0.5
    assert 0.1 < odd_lots < 0.5  # a large share of prints, as on the real tape


def test_it_streams_crypto_trades_with_numbers_as_strings(make_server):
    server = make_server(rate=1000, seed=2)
    ws = connect(server, feed="crypto")
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "BTC-USD")

    frames = receive(ws, 20)

    for f in frames:
        assert list(f) == ["s", "p", "q", "dc", "dd", "t"]
        assert f["s"] == "BTC-USD"
        assert all(isinstance(f[k], str) for k in ("p", "q", "dc", "dd"))
        assert 50_000 < float(f["p"]) < 150_000
        assert float(f["q"]) > 0


def test_it_records_exactly_what_the_client_received(make_server):
    server = make_server(rate=3000, seed=3, max_trades=400, late_prob=0.05)
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL,MSFT,TSLA")

    received = [json.loads(raw) for raw in receive_until_quiet(ws)]

    assert len(received) == 400
    assert received == server.sent_trades()
    assert [s.connection for s in server.sent_frames()] == [0] * 400
    assert server.connection_log[0].trades_sent == 400


def test_it_jitters_timestamps_and_emits_late_prints(make_server):
    server = make_server(
        rate=3000,
        seed=4,
        jitter_ms=300,
        late_prob=0.1,
        late_ms=5000,
        max_trades=300,
        clock=lambda: FIXED_NOW,
    )
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL")

    ts = [json.loads(raw)["t"] for raw in receive_until_quiet(ws)]

    now_ms = int(FIXED_NOW * 1000)
    late = [t for t in ts if t < now_ms - 300]
    assert len(ts) == 300
    assert ts != sorted(ts)
    assert all(now_ms - 300 - 7500 <= t <= now_ms for t in ts)
    assert 10 <= len(late) <= 60
    assert all(t <= now_ms - 5000 for t in late)


def test_it_is_deterministic_for_a_seed(make_server):
    def run() -> list[dict]:
        server = make_server(rate=3000, seed=5, max_trades=50, clock=lambda: FIXED_NOW)
        ws = connect(server)
        assert ws.recv() == AUTHORIZED
        subscribe(ws, "AAPL,QLD")
        return receive(ws, 50)

    assert run() == run()


def test_it_drops_without_a_close_frame_and_a_reconnect_starts_fresh(make_server):
    server = make_server(rate=3000, seed=6, drop_after=[40])
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL,MSFT")
    received = receive(ws, 40)

    # A close frame would make recv() return ""; a dropped socket raises.
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()
    assert received == server.sent_trades(connection=0)
    assert server.connection_log[0].ended == "dropped"

    again = connect(server)
    assert again.recv() == AUTHORIZED
    assert receive_until_quiet(again) == []  # no subscription carried over
    subscribe(again, "TSLA")
    assert {f["s"] for f in receive(again, 50)} == {"TSLA"}
    log = server.connection_log
    assert server.connections == 2
    assert (log[0].symbols, log[1].symbols) == (["AAPL", "MSFT"], ["TSLA"])
    assert log[1].ended is None


def test_it_drops_the_current_connection_on_demand(make_server):
    server = make_server(rate=1000)
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL")
    assert server.wait_for_trades(5, timeout=2)

    assert server.drop_current() == 0
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:
            ws.recv()
    assert server.drop_current() is None


def test_it_sends_403_and_closes_for_a_bad_token(make_server):
    server = make_server(valid_tokens={"good"})
    ws = connect(server, token="bad")

    assert ws.recv() == FORBIDDEN
    assert ws.recv() == ""  # then a close frame
    assert server.connection_log[0].ended == "bad-token"


def test_it_can_reject_a_bad_token_at_the_handshake(make_server):
    server = make_server(valid_tokens={"good"}, reject_bad_token_http=401)

    with pytest.raises(websocket.WebSocketBadStatusException) as error:
        connect(server, token="bad")

    assert error.value.status_code == 401
    assert (server.handshake_attempts, server.connections) == (1, 0)
    assert connect(server, token="good").recv() == AUTHORIZED


def test_it_rejects_handshakes_as_scripted_then_accepts(make_server):
    server = make_server(reject_handshake=[403, None])

    with pytest.raises(websocket.WebSocketBadStatusException) as error:
        connect(server)

    assert error.value.status_code == 403
    assert connect(server).recv() == AUTHORIZED
    assert (server.handshake_attempts, server.connections) == (2, 1)


def test_it_answers_404_for_an_unknown_feed(make_server):
    server = make_server()

    with pytest.raises(websocket.WebSocketBadStatusException) as error:
        connect(server, feed="stocks")

    assert error.value.status_code == 404


def test_it_refuses_a_subscription_over_the_symbol_limit(make_server):
    server = make_server(rate=1000, max_symbols=3)
    ws = connect(server)
    assert ws.recv() == AUTHORIZED

    subscribe(ws, "A,B,C,D")
    assert ws.recv() == LIMIT
    assert server.connection_log[0].symbols == []

    subscribe(ws, "AAPL,MSFT")
    assert {f["s"] for f in receive(ws, 30)} <= {"AAPL", "MSFT"}


def test_it_stops_streaming_after_an_unsubscribe(make_server):
    server = make_server(rate=1000)
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL,MSFT")
    assert server.wait_for_trades(10, timeout=2)

    ws.send(json.dumps({"action": "unsubscribe", "symbols": "AAPL"}))
    deadline = time.monotonic() + 2
    while server.connection_log[0].symbols != ["MSFT"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    before = len(server.sent_trades())
    assert server.wait_for_trades(before + 30, timeout=2)

    received = receive(ws, before + 30)
    assert {f["s"] for f in received[before:]} == {"MSFT"}
    assert received == server.sent_trades()[: before + 30]


def test_it_sends_500_shortly_after_authorized_when_scripted(make_server):
    server = make_server(rate=1000, error_on_connect=[500])
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    started = time.monotonic()

    assert ws.recv() == FAULT
    assert time.monotonic() - started >= 0.15
    assert ws.recv() == ""
    again = connect(server)
    assert again.recv() == AUTHORIZED
    subscribe(again, "AAPL")
    assert receive(again, 1)[0]["s"] == "AAPL"
    assert [r.ended for r in server.connection_log] == ["error-500", None]


def test_it_sends_403_instead_of_authorized_and_422_after_subscribe(make_server):
    server = make_server(error_on_connect=[403, 422])
    first = connect(server)
    assert first.recv() == FORBIDDEN
    assert first.recv() == ""

    second = connect(server)
    assert second.recv() == AUTHORIZED
    subscribe(second, "AAPL")
    assert second.recv() == LIMIT
    assert second.recv() == ""
    assert server.sent_trades() == []
    assert [r.ended for r in server.connection_log] == ["error-403", "error-422"]


def test_it_goes_silent_after_n_trades_but_answers_pings(make_server):
    server = make_server(rate=2000, silence_after=25)
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL")

    assert len(receive_until_quiet(ws)) == 25
    ws.ping(b"alive")
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert (opcode, frame.data) == (websocket.ABNF.OPCODE_PONG, b"alive")
    assert server.connection_log[0].ended is None


def test_it_can_be_silenced_and_resumed(make_server):
    server = make_server(rate=1000)
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL")
    receive(ws, 5)

    server.set_silent(True)
    receive_until_quiet(ws, quiet=0.1)  # in flight
    assert receive_until_quiet(ws, quiet=0.3) == []
    server.set_silent(False)
    assert len(receive(ws, 5)) == 5


def test_it_interleaves_malformed_frames_kept_out_of_sent_trades(make_server):
    server = make_server(rate=3000, seed=7, malformed_prob=0.2, max_trades=300)
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "AAPL,MSFT")

    raw = receive_until_quiet(ws)

    valid = [orjson.loads(r) for r in raw if is_valid_trade(r)]
    malformed = server.connection_log[0].malformed_sent
    assert valid == server.sent_trades()
    assert len(valid) == 300
    assert len(raw) - len(valid) == malformed
    assert 30 <= malformed <= 130


def test_it_answers_an_early_subscribe_with_500(make_server):
    server = make_server(rate=1000, authorize_delay=0.5)
    ws = connect(server)
    subscribe(ws, "AAPL")

    assert ws.recv() == FAULT
    assert ws.recv() == ""
    assert server.connection_log[0].ended == "early-subscribe"


def test_it_sends_unsubscribed_symbols_only_as_extras(make_server):
    server = make_server(rate=3000, seed=8, symbols_extra=True, max_trades=400)
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    subscribe(ws, "QLD")

    frames = [json.loads(r) for r in receive_until_quiet(ws)]

    extras = [f for f in frames if f["s"] != "QLD"]
    assert len(extras) == server.connection_log[0].extras_sent > 0
    assert [f for f in frames if f["s"] == "QLD"] == server.sent_trades()


def test_it_injects_raw_frames_outside_sent_trades(make_server):
    server = make_server()
    ws = connect(server)
    assert ws.recv() == AUTHORIZED
    assert server.wait_for_connections(1, timeout=1)

    assert server.inject('{"s":"AAPL","p":"oops"}')
    assert server.inject(b"\x00\x01", connection=0)

    assert ws.recv() == '{"s":"AAPL","p":"oops"}'
    assert ws.recv() == b"\x00\x01"
    assert server.sent_trades() == []
    assert not server.inject("x", connection=5)


def test_it_serves_concurrent_connections_and_stops_promptly(make_server):
    server = make_server(rate=500)
    clients = [connect(server) for _ in range(3)]
    for number, ws in enumerate(clients):
        assert ws.recv() == AUTHORIZED
        subscribe(ws, ["AAPL", "MSFT", "TSLA"][number])
    assert server.wait_for_trades(30, timeout=2)

    started = time.monotonic()
    server.stop()

    assert time.monotonic() - started < 1.0
    assert {s.connection for s in server.sent_frames()} == {0, 1, 2}
    assert [r.ended for r in server.connection_log] == ["server-stopped"] * 3
