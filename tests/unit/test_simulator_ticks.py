"""The simulator's tape and tick history: GET /api/ticks/ on the WebSocket's port,
holes in the stream that the tape fills, and the faults a backfill must survive."""

import math
import socket
import threading
from dataclasses import replace
from urllib.parse import urlencode

import orjson
import pytest
import requests
import websocket

from api.market.messages import Trade, parse_frame
from api.market.ticks import (
    Dedupe,
    TickPageError,
    letters_to_codes,
    next_page,
    parse_page,
    request_params,
)
from api.simulator import AUTHORIZED, FeedServer
from tests.unit.conftest import CLIENTS
from tests.waiting import wait_until

# Monday 21 September 2026, 09:33:20 in New York: regular hours.
START = 1_790_000_000.0
LETTERLESS = {41}  # trade-through exempt: a flag, not a sale-condition letter


class StepClock:
    """An options clock that moves `step` seconds per call: every trade gets its
    own `t`, and where a hole falls does not depend on the machine's speed."""

    def __init__(self, start: float, step: float) -> None:
        self._now = start
        self._step = step
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self._now += self._step
            return self._now


def connect(server: FeedServer, symbols: str, token: str = "key"):
    """A subscribed client, past the Authorized frame."""
    ws = websocket.create_connection(f"{server.url}?api_token={token}", timeout=2)
    CLIENTS.append(ws)
    assert ws.recv() == AUTHORIZED
    ws.send(orjson.dumps({"action": "subscribe", "symbols": symbols}).decode())
    return ws


def receive_until_quiet(ws, quiet: float = 0.3) -> list[dict]:
    ws.settimeout(quiet)
    frames = []
    while True:
        try:
            frames.append(orjson.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            return frames


def get_ticks(server, symbol, from_s, to_s, limit=10_000, token="key", **extra):
    params = request_params(symbol, from_s, to_s, limit) | {"api_token": token}
    return requests.get(f"{server.api_url}/ticks/", params=params | extra, timeout=10)


def fetch_range(server, symbol, from_s, to_s, limit):
    """Pages through [from_s, to_s) the way a backfill would."""
    dedupe, trades, pages = Dedupe(), [], 0
    start = from_s
    while True:
        response = get_ticks(server, symbol + ".US", start, to_s, limit)
        assert response.status_code == 200, response.text
        pages += 1
        page = parse_page(response.content, symbol)
        assert page.skipped == 0 and not page.unknown_letters
        assert all(start * 1000 <= ts < to_s * 1000 for ts, _ in page.keys)
        trades += dedupe.add_page(page)
        step = next_page(start, to_s, page.rows, limit, page.last_ts_ms)
        assert not step.stuck
        if step.done:
            return trades, pages, dedupe
        dedupe.advance(step.from_s * 1000)
        start = step.from_s


def as_tape_trade(frame: dict) -> Trade:
    """What the tick history should give back for a frame: the same Trade, minus
    the codes no letter carries and the `ms` status the history does not have."""
    trade = parse_frame(orjson.dumps(frame))
    codes = tuple(c for c in trade.conditions if c not in LETTERLESS)
    return replace(trade, conditions=codes, market_status=None)


def in_holes(t: int, holes) -> bool:
    return any(start * 1000 <= t < end * 1000 for start, end in holes)


def test_holes_are_on_the_tape_and_the_tick_history_backfills_them(make_server):
    holes = ((START + 2.0, START + 3.2), (START + 5.0, START + 5.6))
    server = make_server(
        rate=3000,
        seed=31,
        jitter_ms=0,
        max_trades=400,
        clock=StepClock(START, 0.02),  # 50 trades a second of `t`
        holes=holes,
        ticks_page_limit=40,
    )
    ws = connect(server, "AAPL,MSFT")

    received = receive_until_quiet(ws)

    # The stream: 400 trades, none in a hole; the held ones all in holes.
    held = server.held_trades()
    assert len(received) == 400 and received == server.sent_trades()
    assert not any(in_holes(f["t"], holes) for f in received)
    assert len(held) == server.trades_held > 60
    assert all(in_holes(f["t"], holes) for f in held)
    # The tape: every trade generated, sent or held, once.
    tape = server.tape()
    assert sorted(r.ts for r in tape) == sorted(f["t"] for f in received + held)
    assert [r.ts for r in tape if r.held] == sorted(f["t"] for f in held)

    for symbol in ("AAPL", "MSFT"):
        frames = [f for f in received + held if f["s"] == symbol]
        expected = sorted(map(as_tape_trade, frames), key=lambda t: t.ts_ms)
        first = math.floor(min(f["t"] for f in frames) / 1000)
        last = math.floor(max(f["t"] for f in frames) / 1000)
        before = server.ticks_requests

        # The whole range, 40 rows a page: exactly the stream plus the holes.
        fetched, pages, dedupe = fetch_range(server, symbol, first, last + 1, 40)

        assert fetched == expected
        assert server.ticks_requests - before == pages > len(frames) // 40
        assert dedupe.duplicates > 0  # pages restart inside their last second
        # Backfilling only the holes gives back exactly what the stream missed.
        for start, end in holes:
            found, _, _ = fetch_range(
                server, symbol, math.floor(start), math.ceil(end), 40
            )
            missing = [t for t in found if start * 1000 <= t.ts_ms < end * 1000]
            assert missing == [
                as_tape_trade(f)
                for f in sorted(held, key=lambda f: f["t"])
                if f["s"] == symbol and start * 1000 <= f["t"] < end * 1000
            ]
            assert missing


def test_the_tapes_letters_read_back_as_the_codes_sent(make_server):
    server = make_server(
        rate=3000, seed=32, jitter_ms=0, max_trades=600, clock=StepClock(START, 0.001)
    )
    ws = connect(server, "AAPL")
    received = receive_until_quiet(ws)
    assert len(received) == 600

    rows = server.tape("AAPL")

    assert [r.ts for r in rows] == sorted(f["t"] for f in received)
    by_t = {f["t"]: f for f in received}
    for row in rows:
        frame = by_t[row.ts]
        assert row.conditions == tuple(frame["c"])
        assert letters_to_codes(row.sl) == tuple(
            c for c in frame["c"] if c not in LETTERLESS
        )
        assert len(row.sl) == 4 and row.sl[0] in "@CNR"
        assert (row.mkt == "D") == frame["dp"]
        assert (row.price, row.shares) == (frame["p"], frame["v"])
    assert [r.seq for r in sorted(rows, key=lambda r: r.seq)] == list(
        range(1, len(rows) + 1)
    )
    letters = {c for r in rows for c in r.sl}
    assert {"@", "F", "I"} <= letters  # sweeps and odd lots are common
    assert any(r.mkt == "D" for r in rows) and any(r.mkt != "D" for r in rows)


def test_set_hole_keeps_trades_off_the_stream_and_on_the_tape(make_server):
    server = make_server(rate=2000, seed=33, jitter_ms=0, max_trades=30)
    server.set_hole(True)
    ws = connect(server, "AAPL")

    assert wait_until(lambda: server.trades_held >= 50, timeout=5)
    assert receive_until_quiet(ws, quiet=0.2) == []
    assert server.trades_sent == 0
    server.set_hole(False)  # held trades do not count toward max_trades
    received = receive_until_quiet(ws)

    rows = server.tape("AAPL")
    assert len(received) == server.trades_sent == 30
    assert sum(r.held for r in rows) == server.trades_held >= 50
    assert sorted(r.ts for r in rows if not r.held) == sorted(f["t"] for f in received)


def test_a_second_busier_than_the_page_limit_is_detected(make_server):
    # 1,000 trades a second of `t`, 30 rows a page: one second fills a page.
    server = make_server(
        rate=3000,
        seed=34,
        jitter_ms=0,
        clock=StepClock(START, 0.001),
        ticks_page_limit=30,
    )
    server.set_hole(True)
    connect(server, "AAPL")
    assert wait_until(lambda: server.trades_held >= 200, timeout=5)
    server.set_silent(True)  # the tape stops growing

    first = math.floor(server.tape("AAPL")[0].ts / 1000)
    page = parse_page(get_ticks(server, "AAPL", first, first + 5, 30).content, "AAPL")
    step = next_page(first, first + 5, page.rows, 30, page.last_ts_ms)

    assert page.rows == 30 and page.last_ts_ms // 1000 == first
    assert step.stuck and step.from_s == first + 1


def test_the_page_is_capped_sorted_and_takes_the_us_suffix(make_server):
    server = make_server(
        rate=3000,
        seed=35,
        jitter_ms=300,  # out of order on the wire
        clock=StepClock(START, 0.01),
        ticks_page_limit=25,
    )
    server.set_hole(True)
    connect(server, "AAPL")
    assert wait_until(lambda: server.trades_held >= 100, timeout=5)
    server.set_silent(True)  # the tape stops growing

    plain = get_ticks(server, "AAPL", int(START) - 5, int(START) + 60, limit=1000)
    suffixed = get_ticks(server, "aapl.us", int(START) - 5, int(START) + 60, 1000)
    smaller = get_ticks(server, "AAPL", int(START) - 5, int(START) + 60, limit=7)

    body = plain.json()
    assert plain.status_code == 200
    assert plain.headers["Content-Type"] == "application/json"
    assert set(body) == {"ts", "price", "shares", "mkt", "sl", "seq", "sub_mkt"}
    assert len(body["ts"]) == 25  # min(limit, ticks_page_limit)
    assert list(zip(body["ts"], body["seq"], strict=True)) == sorted(
        zip(body["ts"], body["seq"], strict=True)
    )
    assert suffixed.json() == body
    assert smaller.json()["ts"] == body["ts"][:7]
    assert [r.rows for r in server.tick_requests()] == [25, 25, 7]


def test_to_is_exclusive_and_from_inclusive(make_server):
    server = make_server(rate=3000, seed=36, jitter_ms=0, clock=StepClock(START, 0.1))
    server.set_hole(True)
    connect(server, "AAPL")
    assert wait_until(lambda: server.trades_held >= 40, timeout=5)
    server.set_silent(True)  # the tape stops growing
    rows = server.tape("AAPL")
    second = rows[len(rows) // 2].ts // 1000

    inside = get_ticks(server, "AAPL", second, second + 1).json()["ts"]
    before = get_ticks(server, "AAPL", second - 1, second).json()["ts"]

    assert inside == [r.ts for r in rows if r.ts // 1000 == second]
    assert inside and before
    assert all(t // 1000 == second - 1 for t in before)


def test_bad_or_missing_tokens_get_401(make_server):
    server = make_server(valid_tokens={"good"})

    assert get_ticks(server, "AAPL", 0, 10, token="bad").status_code == 401
    missing = requests.get(
        f"{server.api_url}/ticks/", params={"s": "AAPL", "from": 0, "to": 10}
    )
    assert missing.status_code == 401
    assert missing.json() == {"error": "Unauthenticated"}
    good = get_ticks(server, "AAPL", 0, 10, token="good")
    assert good.status_code == 200
    assert parse_page(good.content, "AAPL").rows == 0  # nothing on the tape yet
    assert server.ticks_requests == 3
    assert server.handshake_attempts == 0  # HTTP requests are no handshakes


def test_unpublished_ticks_are_404_with_a_json_error(make_server):
    server = make_server(ticks_unpublished=("MSFT.US",))

    for symbol in ("MSFT", "msft.us"):
        response = get_ticks(server, symbol, 0, 10)
        assert response.status_code == 404
        assert "error" in response.json()
    assert get_ticks(server, "AAPL", 0, 10).status_code == 200

    server.options.ticks_unpublished = True  # read per request: a test may flip it
    assert get_ticks(server, "AAPL", 0, 10).status_code == 404
    server.options.ticks_unpublished = False
    assert get_ticks(server, "MSFT", 0, 10).status_code == 200


def test_scripted_statuses_come_first_with_retry_after_on_429(make_server):
    server = make_server(ticks_statuses=[429, None, 500])

    answers = [get_ticks(server, "AAPL", 0, 10) for _ in range(4)]

    assert [a.status_code for a in answers] == [429, 200, 500, 200]
    assert answers[0].headers["Retry-After"] == "1"
    assert "Retry-After" not in answers[2].headers
    assert server.ticks_requests == 4
    assert [r.status for r in server.tick_requests()] == [429, 200, 500, 200]

    slower = make_server(ticks_statuses=[429], retry_after=2.5)
    assert get_ticks(slower, "AAPL", 0, 10).headers["Retry-After"] == "2.5"


def test_a_truncated_page_breaks_mid_body(make_server):
    server = make_server(
        rate=3000,
        seed=37,
        jitter_ms=0,
        clock=StepClock(START, 0.01),
        ticks_truncate=(1, 3),
    )
    server.set_hole(True)
    connect(server, "AAPL")
    assert wait_until(lambda: server.trades_held >= 50, timeout=5)
    server.set_silent(True)  # the tape stops growing
    span = (int(START) - 5, int(START) + 60)

    whole = get_ticks(server, "AAPL", *span)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get_ticks(server, "AAPL", *span)
    again = get_ticks(server, "AAPL", *span)
    # What arrives on the wire for a truncated page: a promise, half a body, EOF.
    query = urlencode(request_params("AAPL", *span) | {"api_token": "key"})
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(f"GET /api/ticks/?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk

    assert whole.status_code == again.status_code == 200
    assert whole.content == again.content
    assert parse_page(whole.content, "AAPL").rows >= 50
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert f"Content-Length: {len(whole.content)}".encode() in head
    assert body == whole.content[: len(whole.content) // 2]
    with pytest.raises(TickPageError):
        parse_page(body, "AAPL")
    assert [r.truncated for r in server.tick_requests()] == [False, True, False, True]


def test_bad_requests_get_422_and_other_paths_404(make_server):
    server = make_server()
    base = f"{server.api_url}/ticks/"

    no_range = requests.get(base, params={"s": "AAPL", "api_token": "k"})
    bad_from = requests.get(
        base, params={"s": "AAPL", "from": "x", "to": 1, "api_token": "k"}
    )
    csv = get_ticks(server, "AAPL", 0, 10, fmt="csv")
    zero = get_ticks(server, "AAPL", 0, 10, limit=0)
    other = requests.get(f"{server.api_url}/eod/AAPL.US", params={"api_token": "k"})

    assert [r.status_code for r in (no_range, bad_from, csv, zero)] == [422] * 4
    assert other.status_code == 404
    assert server.ticks_requests == 4


def test_the_websocket_still_works_beside_the_http_api(make_server):
    server = make_server(rate=1000, seed=38)
    assert get_ticks(server, "AAPL", 0, 10).status_code == 200

    ws = connect(server, "AAPL")
    frames = [orjson.loads(ws.recv()) for _ in range(5)]
    plain = requests.get(f"http://{server.host}:{server.port}/ws/us?api_token=k")

    assert {f["s"] for f in frames} == {"AAPL"}
    assert plain.status_code == 426  # a WebSocket path without Upgrade, as before
    assert server.connections == 1
    assert server.ticks_requests == 1


def test_an_outage_cuts_every_connection_refuses_handshakes_and_the_market_goes_on(
    make_server,
):
    server = make_server(rate=500, seed=34, jitter_ms=0)
    ws = connect(server, "AAPL,MSFT")
    assert wait_until(lambda: server.trades_sent >= 20, timeout=5)
    server.set_outage(True)
    with pytest.raises((websocket.WebSocketException, OSError)):
        while True:  # what was sent before the cut, then the end of the stream
            if not ws.recv():
                raise websocket.WebSocketConnectionClosedException("closed")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{server.url}?api_token=key", timeout=2)
    assert refused.value.status_code == 503
    held = server.trades_held
    assert wait_until(lambda: server.trades_held >= held + 50, timeout=5)
    sent = server.trades_sent
    server.set_outage(False)
    rows = server.tape()
    assert {r.symbol for r in rows if r.held} == {"AAPL", "MSFT"}
    assert server.trades_sent == sent  # nothing went out during the outage
    # Back: a new connection is accepted and streams again.
    again = connect(server, "AAPL")
    assert orjson.loads(again.recv())["s"] == "AAPL"


def test_record_tape_puts_a_past_market_on_the_tape_at_an_exact_rate(make_server):
    server = make_server(seed=35)
    assert server.record_tape(["AAPL", "MSFT"], START, START + 10, rate=25) == 250
    rows = server.tape()
    assert len(rows) == 250 and all(r.held for r in rows)
    per_second = {}
    for row in rows:
        per_second[row.ts // 1000] = per_second.get(row.ts // 1000, 0) + 1
    assert per_second == {int(START) + s: 25 for s in range(10)}
    body = get_ticks(server, "AAPL", int(START), int(START) + 10).json()
    assert len(body["ts"]) == sum(r.symbol == "AAPL" for r in rows)
