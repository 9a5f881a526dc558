"""The receiver against a scripted socket: no thread, no network. One connection
is run from connect to its end, and what it hands on is checked."""

import json
import queue
import threading
from decimal import Decimal

import websocket

from api.collector.feed import FeedPolicy, Receiver, retry_after
from api.collector.session import SessionGate
from api.pipeline.messages import Trades, Watch

TEXT = websocket.ABNF.OPCODE_TEXT
PONG = websocket.ABNF.OPCODE_PONG


class ScriptedSocket:
    """Plays frames in order; then ends the way the script says."""

    def __init__(self, frames: list, end: Exception | None = None) -> None:
        self.frames = list(frames)
        self.end = end or websocket.WebSocketConnectionClosedException("gone")
        self.sent: list[str] = []
        self.closed = False

    def settimeout(self, seconds: float) -> None:
        self.timeout = seconds

    def recv_data(self, control_frame: bool = False):
        if not self.frames:
            raise self.end
        frame = self.frames.pop(0)
        if isinstance(frame, tuple):
            return frame
        data = frame if isinstance(frame, bytes) else json.dumps(frame).encode()
        return TEXT, data

    def send(self, text: str) -> None:
        self.sent.append(text)

    def ping(self) -> None:
        pass

    def close(self, timeout: float = 1) -> None:
        self.closed = True

    def shutdown(self) -> None:
        self.closed = True


AUTHORIZED = {"status_code": 200, "message": "Authorized"}


T = 1_796_000_000_000  # epoch ms


def trade(symbol: str, price, t: int, size=100) -> dict:
    return {"s": symbol, "p": price, "v": size, "c": [], "t": T + t, "dp": False}


def receiver(sock: ScriptedSocket) -> tuple[Receiver, queue.Queue, list]:
    out: queue.Queue = queue.Queue()
    urls = []

    def connect(url, **kwargs):
        urls.append(url)
        return sock

    r = Receiver(
        url="wss://feed.example/ws/us",
        token="s3cret",
        symbols=["AAPL", "MSFT"],
        out=out,
        stop=threading.Event(),
        gate=SessionGate(always_open=True),
        policy=FeedPolicy(authorize_timeout=2.0),
        connect=connect,
    )
    return r, out, urls


def handed_on(out: queue.Queue, watches: list | None = None) -> list:
    """The trades handed on; coverage marks (Watch) go to `watches`."""
    trades = []
    while not out.empty():
        message = out.get_nowait()
        if isinstance(message, Watch):
            if watches is not None:
                watches.append(message)
            continue
        assert isinstance(message, Trades)
        trades += message.trades
    return trades


def test_it_subscribes_after_authorized_and_hands_on_wanted_trades_in_order():
    sock = ScriptedSocket(
        [
            AUTHORIZED,
            trade("AAPL", 150.25, 1_000),
            trade("TSLA", 200, 1_001),  # not subscribed
            b"{not json",
            trade("MSFT", "301.5", 999, size=0.5),
            (PONG, b""),
        ]
    )
    r, out, urls = receiver(sock)
    reason, delivered = r._run_connection()
    assert (reason, delivered) == ("connection dropped", True)
    assert urls == ["wss://feed.example/ws/us?api_token=s3cret"]
    assert [json.loads(m) for m in sock.sent] == [
        {"action": "subscribe", "symbols": "AAPL,MSFT"}
    ]
    watches: list = []
    got = handed_on(out, watches)
    assert [(t.symbol, t.price, t.size, t.ts_ms) for t in got] == [
        ("AAPL", Decimal("150.25"), Decimal(100), T + 1_000),
        ("MSFT", Decimal("301.5"), Decimal("0.5"), T + 999),
    ]
    # Coverage: the subscription began after the subscribe and ended with the
    # connection, in order with the trades.
    begin, end = watches
    assert (begin.stream, begin.symbols, begin.ending) == (
        "us",
        ("AAPL", "MSFT"),
        False,
    )
    assert (end.ending, end.reason) == (True, "connection dropped")
    assert begin.at <= end.at
    stats = r.stats
    assert (stats.frames, stats.trades, stats.malformed, stats.ignored) == (4, 2, 1, 1)
    assert sock.closed and not r.connected


def test_it_tells_a_refused_key_from_a_symbol_limit_from_a_server_error():
    cases = [
        ({"status": 403, "message": "Server error"}, "auth failed"),
        ({"status_code": 422, "message": "Symbols limit reached"}, "symbol limit"),
        ({"status": 500, "message": "Server error"}, "server status 500"),
    ]
    for status, expected in cases:
        r, out, _ = receiver(ScriptedSocket([status]))
        assert r._run_connection() == (expected, False)
        assert out.empty()
    # The same frames after Authorized end the connection too, with the same
    # reasons, and what came before is still handed on.
    r, out, _ = receiver(ScriptedSocket([AUTHORIZED, trade("AAPL", 1, 5), cases[2][0]]))
    assert r._run_connection() == ("server status 500", True)
    assert len(handed_on(out)) == 1


def refusing(status: int, headers: dict | None = None) -> Receiver:
    def connect(url, **kwargs):
        raise websocket.WebSocketBadStatusException(
            f"Handshake status {status}", status, resp_headers=headers
        )

    return Receiver(
        url="wss://feed.example/ws/us",
        token="s3cret",
        symbols=["AAPL"],
        out=queue.Queue(),
        stop=threading.Event(),
        gate=SessionGate(always_open=True),
        policy=FeedPolicy(),
        connect=connect,
    )


def test_it_answers_each_handshake_status_eodhd_uses_on_purpose(caplog):
    policy = FeedPolicy()
    # 401: the key is wrong. One loud line, a long wait.
    r = refusing(401)
    assert r._run_connection() == ("auth failed", False)
    assert r._delay_after("auth failed", False) == policy.auth_failure_delay
    assert "check EODHD_API_KEY" in caplog.text
    assert "s3cret" not in caplog.text
    # 403: too many connections (or the plan): waits that grow, capped.
    r = refusing(403)
    assert r._run_connection() == ("forbidden", False)
    waits = [r._delay_after("forbidden", False) for _ in range(12)]
    assert waits[:3] == [30.0, 60.0, 90.0]
    assert waits[-1] == policy.forbidden_cap
    # 429 without Retry-After: growing waits; with it: what the server asked.
    r = refusing(429)
    assert r._run_connection() == ("rate limited", False)
    assert [r._delay_after("rate limited", False) for _ in range(2)] == [10.0, 20.0]
    r = refusing(429, {"retry-after": "42"})
    assert r._run_connection() == ("rate limited", False)
    assert r._delay_after("rate limited", False) == 42.0
    # Anything else: the usual backoff.
    r = refusing(502)
    assert r._run_connection() == ("handshake failed", False)
    assert 0 < r._delay_after("handshake failed", False) <= policy.backoff_base


def test_it_reads_retry_after_as_seconds_and_ignores_the_rest():
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after": " 2.5 "}) == 2.5
    assert retry_after({"retry-after": "0"}) == 1.0  # never a tight loop
    assert retry_after({"retry-after": "86400"}) == 3600.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}) is None
    assert retry_after({"retry-after": "nan"}) is None
    assert retry_after({"content-type": "text/plain"}) is None
    assert retry_after(None) is None


def test_a_429_status_frame_slows_down_like_the_handshake_status():
    r, out, _ = receiver(ScriptedSocket([{"status": 429, "message": "Too Many"}]))
    assert r._run_connection() == ("rate limited", False)
    assert r._delay_after("rate limited", False) == r.policy.rate_limit_delay


def test_it_waits_before_reconnecting_as_each_reason_asks():
    r, _, _ = receiver(ScriptedSocket([]))
    policy = r.policy
    assert r._delay_after("auth failed", False) == policy.auth_failure_delay
    first = r._delay_after("symbol limit", False)
    second = r._delay_after("symbol limit", False)
    assert (first, second) == (policy.symbol_limit_delay, 2 * policy.symbol_limit_delay)
    assert r._delay_after("market closed", False) == 0.0
    grown = [r._delay_after("connection dropped", False) for _ in range(6)]
    assert all(0 < d <= policy.backoff_cap for d in grown)
    assert grown[-1] > grown[0]
    # A connection that delivered data starts every wait afresh.
    assert r._delay_after("connection dropped", True) <= policy.backoff_base
    assert r._delay_after("symbol limit", False) == policy.symbol_limit_delay
