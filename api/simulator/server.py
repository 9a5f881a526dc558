"""An EODHD-compatible WebSocket feed simulator, for tests and for demos.

It speaks the wire protocol described in docs/EODHD.md: `/ws/<feed>?api_token=...`,
an `Authorized` frame right after the upgrade, comma-string subscriptions per
socket, one JSON object per text frame, status frames keyed `status` or
`status_code`. On top of that it can misbehave on purpose (drops, silence,
403/422/500, malformed frames, late prints) and records everything it sent so a
test can build its own reference from `sent_trades()`.

It also keeps the tape of every US trade it generates and serves it the way
EODHD's tick history does, over plain HTTP on the same port: `GET
/api/ticks/?s=AAPL&from=..&to=..&limit=..&fmt=json&api_token=..` (see
`FeedServer.api_url` and `_ticks`). With `SimOptions.holes` (or `set_hole()`)
some trades go on the tape but to no connection, so a test can make a stream
with holes and backfill them from the tape. `set_outage()` is the feed's own
outage: every connection drops, handshakes are refused (HTTP 503), and the
market goes on - trades for the symbols that were subscribed keep going on the
tape - until the outage ends; the collector's coverage then records a real gap.

Account-wide limits (off by default) make several sockets of one API token
compete as they do at EODHD: `max_connections` (an upgrade over it gets HTTP
403), `account_symbols` (a subscribe over it gets the 422 frame) and
`slot_hold` (a socket that died keeps its slots for a while). Refusals are
listed by `refusals()`, a token's slots in use by `usage()`.

No Django here: the module is used in-process by tests and by `--demo`.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.sync.server import Server, ServerConnection, serve

from api.market import calendar
from api.market.ticks import DARK_POOL_VENUE, codes_to_letters

logger = logging.getLogger(__name__)

FEEDS = ("us", "us-quote", "forex", "crypto")

AUTHORIZED = '{"status_code":200,"message":"Authorized"}'
# EODHD keys its error frames inconsistently (`status` vs `status_code`): keep that.
STATUS_FRAMES = {
    403: '{"status":403,"message":"Server error"}',
    422: '{"status_code":422,"message":"Symbols limit reached"}',
    429: '{"status":429,"message":"Too Many Requests"}',
    500: '{"status":500,"message":"Server error"}',
}

# Frames a collector must count and skip; built by hand because a JSON encoder
# would refuse NaN or fix the types. `{t}` is the current epoch-ms.
MALFORMED_TEMPLATES = (
    '{{"s":"{s}","p":12',  # truncated JSON
    "not json at all",
    '{{"s":"{s}","p":NaN,"c":[],"v":100,"dp":false,"ms":"open","t":{t}}}',
    '{{"s":"{s}","p":Infinity,"c":[],"v":100,"dp":false,"ms":"open","t":{t}}}',
    '{{"s":"{s}","p":-12.5,"c":[],"v":100,"dp":false,"ms":"open","t":{t}}}',
    '{{"s":"{s}","p":0,"c":[],"v":100,"dp":false,"ms":"open","t":{t}}}',
    '{{"s":"{s}","p":12.5,"c":[],"v":-100,"dp":false,"ms":"open","t":{t}}}',
    '{{"s":"{s}","p":12.5,"c":[],"v":100,"dp":false,"ms":"open"}}',  # no t
    '{{"s":"{s}","p":"n/a","c":[],"v":100,"dp":false,"ms":"open","t":{t}}}',
    '{{"s":"{s}","p":12.5,"c":[],"v":100,"dp":false,"ms":"open","t":"soon"}}',
    '["{s}",12.5,100,{t}]',  # valid JSON, wrong shape
)

# Rough starting prices so demo output looks familiar; others get a stable
# pseudo-random price derived from the symbol.
START_PRICES = {
    "AAPL": 230.0,
    "MSFT": 420.0,
    "TSLA": 250.0,
    "QLD": 105.0,
    "QQQ": 500.0,
    "SPY": 590.0,
    "NVDA": 140.0,
    "BTC-USD": 84588.0,
    "ETH-USD": 3200.0,
    "EURUSD": 1.08,
    "GBPUSD": 1.27,
}
# Symbols the server may push uninvited when `symbols_extra` is on.
EXTRA_SYMBOLS = ("ZVZZT", "AAPL", "MSFT", "TSLA", "BTC-USD")
EXTRA_PROB = 0.03

# US condition codes as EODHD relays them (Polygon's numbering), with weights
# roughly like a liquid stock's tape: 14 intermarket sweep, 41 trade-through
# exempt, 37 odd lot (added below to most prints under 100 shares), 12 form T,
# 2 average price, 7 cash sale, 22 prior reference price, 33 sold out of
# sequence, 15/16 market center official close/open, 38 corrected close.
CONDITION_WEIGHTS = {
    "regular": (
        ((), 40), ((14, 41), 18), ((41,), 8), ((14,), 6), ((2,), 1), ((7,), 0.3),
        ((22,), 0.5), ((33,), 0.5), ((15,), 0.1), ((16,), 0.1), ((38,), 0.05),
    ),
    # Outside regular hours most prints are Form T.
    "extended": (((12,), 60), ((12, 41), 10), ((), 8), ((2,), 1), ((12, 33), 1)),
}  # fmt: skip
CONDITION_SETS = {
    name: tuple(codes for codes, _ in table)
    for name, table in CONDITION_WEIGHTS.items()
}
CONDITION_CUMULATIVE = {
    name: tuple(itertools.accumulate(weight for _, weight in table))
    for name, table in CONDITION_WEIGHTS.items()
}


@dataclass
class SimOptions:
    """What the simulated feed does. Every list is indexed by connection number
    (0 = first accepted upgrade); connections past its end behave normally."""

    rate: float = 50.0  # data frames per second per connection, across its symbols
    seed: int | None = None
    jitter_ms: int = 300  # `t` lags the clock by up to this: out-of-order prints
    late_prob: float = 0.0  # chance a trade is a late print
    late_ms: int = 5000  # how old a late print is (plus some jitter)
    fractional_prob: float = 0.0  # chance of a fractional US trade size
    odd_lot_share: float = 0.3  # share of US trades under 100 shares
    malformed_prob: float = 0.0  # chance a slot carries a malformed frame instead
    drop_after: list[int | None] | None = None  # abrupt TCP drop after N trades
    silence_after: int | None = None  # after N trades per connection: open but mute
    silent_feeds: tuple[str, ...] = ()  # connections to these streams stay mute
    # A status frame per connection: 403 / 429 (before Authorized), 500 (after
    # it), 422 (in answer to the subscribe).
    error_on_connect: list[int | None] | None = None
    max_trades: int | None = None  # total valid trades across connections
    reject_early_subscribe: bool = True  # a message before Authorized: 500 + close
    authorize_delay: float = 0.0  # seconds before Authorized is sent
    symbols_extra: bool = False  # sometimes push a symbol the client didn't ask for
    max_symbols: int = 50
    keep_sent: bool = True  # record frames for sent_trades(); off for long runs
    # `ms` of US trades: "auto" follows the NYSE calendar at the trade's time
    # ("open", "extended-hours", "closed"); a fixed string is sent as is; None
    # omits it (old frames).
    market_status: str | None = "auto"
    reject_bad_token_http: int | None = None  # 401/403 at the handshake, not a frame
    reject_handshake: list[int | None] | None = None  # HTTP status per attempt
    retry_after: float | None = None  # a Retry-After header on each HTTP 429
    clock: Callable[[], float] = time.time  # epoch seconds, for `t`
    # -- the tape and the tick history (GET /api/ticks/) ----------------------
    # US trades whose `t` falls in one of these [start, end) epoch-second spans
    # are generated and put on the tape but sent on no connection (they count
    # in held_trades(), not in sent_trades() or max_trades).
    holes: tuple[tuple[float, float], ...] = ()
    tape_max_rows: int = 500_000  # per symbol; the oldest rows go first
    ticks_page_limit: int = 10_000  # rows per response at most (EODHD: ~10,000)
    # 404 (not published yet) for every symbol (True) or for these symbols.
    ticks_unpublished: bool | tuple[str, ...] = False
    # A forced HTTP status per tick request (0 = first); None: answer normally.
    # A 429 carries Retry-After (retry_after, or 1 when that is None).
    ticks_statuses: list[int | None] | None = None
    # Tick requests (0 = first) whose body is cut in the middle: Content-Length
    # promises the whole body, half of it is sent, then the connection closes.
    ticks_truncate: tuple[int, ...] = ()
    # -- account-wide limits, per API token (None: no limit) -------------------
    # Open connections of one token; an upgrade over it gets HTTP 403 at the
    # handshake (EODHD's "too many connections").
    max_connections: int | None = None
    # Symbols subscribed across one token's connections (a symbol on two
    # sockets counts twice); a subscribe that would go over it is refused whole
    # with the 422 frame and the socket stays up, like `max_symbols`.
    account_symbols: int | None = None
    # Seconds (time.monotonic, not `clock`: a frozen clock must not hold slots
    # forever) that a connection's slot and symbols still count against its
    # token after it ended any way but a close frame from the client: a drop,
    # an outage, a server-side end, a client that vanished. Field reports: the
    # slots of a socket that just died stay taken for up to ~105 s.
    slot_hold: float = 0.0


@dataclass
class ConnectionRecord:
    """What happened on one accepted connection (a snapshot when read)."""

    index: int
    feed: str
    token: str
    opened_at: float  # by the options clock, like the trades' `t`
    closed_at: float | None = None
    symbols: list[str] = field(default_factory=list)  # current subscription
    subscribes: int = 0
    trades_sent: int = 0
    malformed_sent: int = 0
    extras_sent: int = 0
    injected: int = 0
    # client-closed, dropped, server-stopped, bad-token, error-403/422/500,
    # early-subscribe
    ended: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A request refused by a limit."""

    # "connections" (max_connections: HTTP 403 at the handshake), "symbols"
    # (account_symbols: the 422 frame) or "connection-symbols" (max_symbols,
    # the per-connection limit: the 422 frame).
    kind: str
    token: str
    connection: int | None  # the subscribing connection; None at a handshake
    would_be: int  # the count the request would have reached
    limit: int
    at: float  # by the options clock, like ConnectionRecord.opened_at


@dataclass(frozen=True)
class TokenUsage:
    """What counts against one token's account-wide limits right now."""

    connections: int  # open (or being opened) plus held
    symbols: int  # subscribed on open connections plus held
    held_connections: int  # ended connections still within slot_hold
    held_symbols: int


@dataclass(frozen=True)
class _Hold:
    """The slots of an ended connection, taken until `until` (monotonic)."""

    token: str
    connection: int
    symbols: int
    until: float


@dataclass(frozen=True)
class SentFrame:
    connection: int
    frame: dict


@dataclass(frozen=True)
class TapeRow:
    """One US trade on the tape, as the tick history serves it."""

    symbol: str
    ts: int  # the frame's `t`
    price: float | int  # the frame's `p`
    shares: float | int  # the frame's `v`
    mkt: str  # a venue letter; "D" (FINRA TRF) for the frame's dark-pool prints
    sl: str  # the frame's codes as sale-condition letters (api.market.ticks)
    seq: int  # per symbol, from 1, in generation order
    conditions: tuple[int, ...]  # the codes the frame carried
    held: bool  # generated in a hole: sent on no connection
    sub_mkt: str = ""


@dataclass
class TickRequest:
    """One GET /api/ticks/ request and its answer."""

    index: int
    query: dict[str, str]
    status: int | None = None
    rows: int = 0
    truncated: bool = False


class PriceBook:
    """Random-walk prices per symbol, shared by all connections so a reconnect
    continues where the last socket stopped. Callers pass their own Random so
    one connection's output is reproducible for a given seed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._open: dict[str, float] = {}
        self._digits: dict[str, int] = {}

    def step(self, symbol: str, rng: random.Random) -> tuple[float, float]:
        """Advance the walk; returns (price, session open)."""
        with self._lock:
            price = self._last.get(symbol)
            if price is None:
                price = START_PRICES.get(symbol) or random.Random(symbol).uniform(
                    20.0, 400.0
                )
                self._open[symbol] = price
                # Cent ticks for stocks and coins; FX-like prices get 5 digits.
                self._digits[symbol] = 2 if price >= 10 else 5
            digits = self._digits[symbol]
            price = round(price * math.exp(rng.gauss(0.0, 0.0004)), digits)
            self._last[symbol] = price
            return price, self._open[symbol]


def _status(t_ms: int) -> str:
    """What EODHD's `ms` says at this time, by the NYSE calendar."""
    return _status_of_half_hour(t_ms // 1_800_000)


@functools.lru_cache(maxsize=256)
def _status_of_half_hour(slot: int) -> str:
    # Every session boundary falls on a half hour (see api.market.conditions).
    at = datetime.fromtimestamp(slot * 1800, tz=UTC)
    if calendar.is_open(at, extended=False):
        return "open"
    if calendar.is_open(at, extended=True):
        return "extended-hours"
    return "closed"


def _number(value: float) -> float | int:
    # The real feed writes integral prices without a fraction (`"p":141`).
    return int(value) if float(value).is_integer() else value


def _decimal_text(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class FrameFactory:
    """Builds realistic data frames for each feed."""

    def __init__(self, options: SimOptions, prices: PriceBook) -> None:
        self.options = options
        self.prices = prices
        # symbol -> the bad price its prints carry for now (a glitch burst); the
        # walk goes on underneath.
        self.glitches: dict[str, float] = {}

    def _t(self, rng: random.Random) -> int:
        opts = self.options
        t = int(opts.clock() * 1000) - rng.randint(0, max(opts.jitter_ms, 0))
        if opts.late_prob and rng.random() < opts.late_prob:
            t -= opts.late_ms + rng.randint(0, max(opts.late_ms // 2, 0))
        return t

    def frame(self, feed: str, symbol: str, rng: random.Random) -> dict:
        price, session_open = self.prices.step(symbol, rng)
        price = self.glitches.get(symbol, price)
        if feed == "crypto":
            return self._crypto(symbol, price, session_open, rng)
        if feed == "forex":
            return self._forex(symbol, price, session_open, rng)
        if feed == "us-quote":
            return self._quote(symbol, price, rng)
        return self._us_trade(symbol, price, rng)

    def _us_trade(self, symbol: str, price: float, rng: random.Random) -> dict:
        opts = self.options
        roll = rng.random()
        if opts.fractional_prob and rng.random() < opts.fractional_prob:
            size: float | int = round(rng.uniform(0.0001, 5.0), 4)
        elif roll >= opts.odd_lot_share:
            size = 100 * rng.choice((1, 1, 1, 2, 2, 3, 5, 10))
        else:
            size = rng.randint(1, 99)
        t = self._t(rng)
        status = _status(t)
        table = "regular" if status == "open" else "extended"
        conditions = list(
            rng.choices(CONDITION_SETS[table], cum_weights=CONDITION_CUMULATIVE[table])[
                0
            ]
        )
        if size < 100 and 37 not in conditions and rng.random() < 0.9:
            conditions.append(37)  # odd lots usually carry the odd-lot code
        frame: dict = {
            "s": symbol,
            "p": _number(price),
            "c": sorted(conditions),
            "v": size,
            "dp": rng.random() < 0.12,
        }
        if opts.market_status == "auto":
            frame["ms"] = status
        elif opts.market_status is not None:
            frame["ms"] = opts.market_status
        frame["t"] = t
        return frame

    def _crypto(
        self, symbol: str, price: float, session_open: float, rng: random.Random
    ) -> dict:
        digits = 2 if price >= 100 else 5
        diff = price - session_open
        return {
            "s": symbol,
            "p": _decimal_text(price, digits),
            "q": _decimal_text(rng.choice((0.001, 0.002, 0.01, 0.05, 0.1, 1.0)), 6),
            "dc": _decimal_text(diff / session_open * 100, 4),
            "dd": _decimal_text(diff, 4),
            "t": self._t(rng),
        }

    def _forex(
        self, symbol: str, price: float, session_open: float, rng: random.Random
    ) -> dict:
        diff = price - session_open
        return {
            "s": symbol,
            "a": round(price + 0.00001 * rng.randint(0, 3), 5),
            "b": round(price, 5),
            "dc": _decimal_text(diff / session_open * 100, 4),
            "dd": _decimal_text(diff, 5),
            "ppms": False,
            "t": self._t(rng),
        }

    def _quote(self, symbol: str, price: float, rng: random.Random) -> dict:
        half_spread = max(0.01, round(price * 0.0002, 2))
        roll = rng.random()
        if roll < 0.01:
            half_spread = -half_spread  # crossed, as consolidated quotes can be
        elif roll < 0.03:
            half_spread = 0  # locked
        return {
            "s": symbol,
            "ap": _number(round(price + half_spread, 3)),
            # A zero size now and then: a venue's side just emptied.
            "as": 0 if rng.random() < 0.02 else 100 * rng.randint(1, 10),
            "bp": _number(round(price - half_spread, 3)),
            "bs": 100 * rng.randint(1, 10),
            "t": self._t(rng),
        }

    def malformed(self, symbol: str, rng: random.Random) -> str:
        template = rng.choice(MALFORMED_TEMPLATES)
        return template.format(s=symbol, t=int(self.options.clock() * 1000))


# Venue letters for lit prints on the tape (dark-pool prints are "D").
VENUES = ("Q", "Q", "Q", "N", "P", "Z", "K", "V", "X", "Y", "J", "A", "B", "H", "U")


@functools.lru_cache(maxsize=256)
def _letters(codes: tuple[int, ...]) -> str:
    return codes_to_letters(codes)


def _tape_order(row: TapeRow) -> tuple[int, int]:
    return row.ts, row.seq


def _json_response(status: int, payload: object) -> Response:
    body = orjson.dumps(payload)
    status = HTTPStatus(status)
    headers = Headers(
        [
            ("Date", formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def _per_connection(values: list[int | None] | None, index: int) -> int | None:
    if values is None or index >= len(values):
        return None
    return values[index]


class _Live:
    """Runtime state of one open connection."""

    def __init__(
        self, ws: ServerConnection, record: ConnectionRecord, seed: int | None
    ) -> None:
        self.ws = ws
        self.record = record
        self.rng = random.Random(None if seed is None else f"{seed}:{record.index}")
        self.symbols: list[str] = []  # guarded by FeedServer._lock
        self.wake = threading.Event()
        self.done = threading.Event()
        self.sender: threading.Thread | None = None


class FeedServer:
    """A threaded EODHD-like feed on `host:port` (port 0 picks a free one)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        options: SimOptions | None = None,
        valid_tokens: set[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.options = options or SimOptions()
        self.valid_tokens = valid_tokens
        self._factory = FrameFactory(self.options, PriceBook())
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._records: list[ConnectionRecord] = []
        self._live: dict[int, _Live] = {}
        self._sent: list[SentFrame] = []
        self._trades = 0  # valid trades sent, also when keep_sent is off
        self._reserved = 0  # trades being sent right now, for max_trades
        self._handshakes = 0
        self._silent = False
        self._hole = False  # set_hole(): trades go on the tape only
        # The tape: symbol -> rows; a per-symbol sequence number; its own Random
        # (venues) so the connections' seeded output stays what it was.
        self._tape: dict[str, deque[TapeRow]] = {}
        self._tape_seq: dict[str, int] = {}
        self._tape_rng = random.Random(
            None if self.options.seed is None else f"{self.options.seed}:tape"
        )
        self._held: list[SentFrame] = []
        self._held_count = 0
        # set_outage(): the tape goes on for these symbols, nothing is accepted.
        self._outage: threading.Event | None = None
        self._outage_thread: threading.Thread | None = None
        self._tick_log: list[TickRequest] = []
        # Account-wide limits: upgrades let through by _process_request whose
        # handler has not registered them yet (they already count, or two quick
        # upgrades could both pass), the slots of dead connections, refusals.
        self._pending: dict[ServerConnection, str] = {}
        self._holds: list[_Hold] = []
        self._refusals: list[Refusal] = []
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> FeedServer:
        self._server = serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            ping_interval=None,  # EODHD sends no heartbeat; it only answers pings
            close_timeout=0.3,  # keeps stop() prompt with clients that never reply
            server_header=None,
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="eodhd-sim", daemon=True
        )
        self._thread.start()
        logger.info("EODHD simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self.set_outage(False)
        with self._lock:
            lives = list(self._live.values())
        for live in lives:
            live.wake.set()
        self._server.shutdown()  # closes open sockets with 1001, joins handlers
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._server = None
        logger.info("EODHD simulator stopped")

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.url_for("us")

    def url_for(self, feed: str) -> str:
        return f"ws://{self.host}:{self.port}/ws/{feed}"

    @property
    def api_url(self) -> str:
        """The base of the HTTP API, like https://eodhd.com/api: the tick
        history is `{api_url}/ticks/`."""
        return f"http://{self.host}:{self.port}/api"

    # -- observation (thread-safe) ---------------------------------------------

    @property
    def connections(self) -> int:
        """Accepted upgrades so far."""
        with self._lock:
            return len(self._records)

    @property
    def handshake_attempts(self) -> int:
        """Every HTTP upgrade request, including the ones rejected."""
        with self._lock:
            return self._handshakes

    @property
    def trades_sent(self) -> int:
        """Valid data frames sent so far, across connections."""
        with self._lock:
            return self._trades

    @property
    def connection_log(self) -> list[ConnectionRecord]:
        with self._lock:
            return [replace(r, symbols=list(r.symbols)) for r in self._records]

    def sent_trades(self, connection: int | None = None) -> list[dict]:
        """Every valid data frame whose send succeeded, in send order."""
        with self._lock:
            return [
                s.frame
                for s in self._sent
                if connection is None or s.connection == connection
            ]

    def sent_frames(self) -> list[SentFrame]:
        """Like sent_trades(), with the connection index of each frame."""
        with self._lock:
            return list(self._sent)

    def wait_for_trades(self, n: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._trades >= n, timeout)

    def wait_for_connections(self, n: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._records) >= n, timeout)

    @property
    def trades_held(self) -> int:
        """US trades generated in a hole: on the tape, sent nowhere."""
        with self._lock:
            return self._held_count

    def held_trades(self, connection: int | None = None) -> list[dict]:
        """The frames generated in holes (kept when keep_sent is on), in order."""
        with self._lock:
            return [
                s.frame
                for s in self._held
                if connection is None or s.connection == connection
            ]

    def tape(self, symbol: str | None = None) -> list[TapeRow]:
        """The tape (every US trade generated, sent or held), by (ts, seq)."""
        with self._lock:
            if symbol is None:
                rows = [row for rows in self._tape.values() for row in rows]
            else:
                rows = list(self._tape.get(symbol, ()))
        rows.sort(key=_tape_order)
        return rows

    @property
    def ticks_requests(self) -> int:
        """Tick-history requests answered so far, whatever the answer (the API
        calls a client spent)."""
        with self._lock:
            return len(self._tick_log)

    def tick_requests(self) -> list[TickRequest]:
        """What each tick-history request asked and got, in order."""
        with self._lock:
            return [replace(r, query=dict(r.query)) for r in self._tick_log]

    def refusals(self) -> list[Refusal]:
        """Every upgrade or subscribe refused by a limit, in order."""
        with self._lock:
            return list(self._refusals)

    def usage(self, token: str) -> TokenUsage:
        """The slots `token` has taken now, as the limits count them."""
        with self._lock:
            return self._usage(token)

    # -- control -------------------------------------------------------------

    def set_glitch(self, symbol: str, price: float | None) -> None:
        """From now on `symbol`'s prints carry `price` (None: the real walk
        again) - a burst of bad prints, as real feeds sometimes send."""
        if price is None:
            self._factory.glitches.pop(symbol, None)
        else:
            self._factory.glitches[symbol] = price

    def set_hole(self, flag: bool) -> None:
        """From now on (until set_hole(False)) US trades go on the tape but are
        sent on no connection - an outage the tick history can fill."""
        with self._lock:
            self._hole = flag

    def set_outage(self, flag: bool) -> None:
        """The feed goes down (True): every open connection is cut, handshakes
        get HTTP 503, and trades for the US symbols subscribed at that moment go
        on being made - on the tape only - at the usual rate. False: it is back."""
        if not flag:
            with self._lock:
                stop, thread = self._outage, self._outage_thread
                self._outage = self._outage_thread = None
            if stop is not None:
                stop.set()
            if thread is not None:
                thread.join(timeout=5)
            return
        with self._lock:
            if self._outage is not None:
                return
            stop = self._outage = threading.Event()
            lives = [v for v in self._live.values() if v.record.ended is None]
            symbols = sorted(
                {s for v in lives if v.record.feed == "us" for s in v.symbols}
            )
        for live in lives:
            self._abort(live, "outage")
        thread = threading.Thread(
            target=self._outage_loop,
            args=(stop, symbols),
            name="eodhd-sim-outage",
            daemon=True,
        )
        with self._lock:
            self._outage_thread = thread
        thread.start()

    def _outage_loop(self, stop: threading.Event, symbols: list[str]) -> None:
        """Trades during an outage: made as a connection would make them, put
        on the tape, sent nowhere."""
        if not symbols or self.options.rate <= 0:
            return
        seed = self.options.seed
        rng = random.Random(None if seed is None else f"{seed}:outage:{symbols}")
        interval = 1.0 / self.options.rate
        while not stop.wait(interval) and not self._stopping.is_set():
            frame = self._factory.frame("us", rng.choice(symbols), rng)
            self._put_on_tape(-1, frame, hold=True)

    def record_tape(
        self, symbols: list[str], start: float, end: float, rate: float
    ) -> int:
        """Put `rate` trades a second (across `symbols`) on the tape for
        [start, end) epoch seconds, as if the market had traded then while no
        one listened: a past day for the tick history to serve, at once. The
        trades are made as a connection makes them (prices walk on, conditions,
        sizes, venues); the number put on the tape."""
        if not symbols or rate <= 0 or end <= start:
            return 0
        seed = self.options.seed
        rng = random.Random(None if seed is None else f"{seed}:tape:{start}")
        at = start
        factory = FrameFactory(
            replace(self.options, clock=lambda: at, jitter_ms=0, late_prob=0.0),
            self._factory.prices,
        )
        count = 0
        start_ms, end_ms = round(start * 1000), round(end * 1000)
        t_ms = start_ms
        while t_ms < end_ms:
            at = t_ms / 1000
            frame = factory.frame("us", rng.choice(symbols), rng)
            frame["t"] = t_ms  # exact: `at` in float seconds may round down
            self._put_on_tape(-1, frame, hold=True)
            count += 1
            t_ms = start_ms + round(count * 1000 / rate)
        return count

    def forget_symbol(self, symbol: str) -> int:
        """Drop `symbol` from every open connection's subscription without a
        word, as EODHD has been seen to do; a new subscribe brings it back.
        The number of connections it was dropped from."""
        dropped = 0
        with self._lock:
            for live in self._live.values():
                if symbol in live.symbols:
                    live.symbols = [s for s in live.symbols if s != symbol]
                    live.record.symbols = list(live.symbols)
                    dropped += 1
        return dropped

    def set_silent(self, flag: bool) -> None:
        """Stop (or resume) data on every connection; sockets stay open."""
        with self._lock:
            self._silent = flag
            lives = list(self._live.values())
        for live in lives:
            live.wake.set()

    def drop_current(self) -> int | None:
        """Drop the newest open connection abruptly; returns its index."""
        live = self._target(None)
        if live is None:
            return None
        self._abort(live, "dropped")
        return live.record.index

    def drop(self, connection: int) -> bool:
        live = self._target(connection)
        if live is None:
            return False
        self._abort(live, "dropped")
        return True

    def inject(self, frame: str | bytes, connection: int | None = None) -> bool:
        """Send a raw frame (str: text, bytes: binary) to the newest or the given
        open connection. Not recorded in sent_trades()."""
        live = self._target(connection)
        if live is None:
            return False
        try:
            live.ws.send(frame)
        except (ConnectionClosed, OSError):
            return False
        with self._lock:
            live.record.injected += 1
        return True

    # -- internals -------------------------------------------------------------

    def _target(self, connection: int | None) -> _Live | None:
        with self._lock:
            # A connection already being dropped or closed is no longer a target.
            open_ = {i: v for i, v in self._live.items() if v.record.ended is None}
            if connection is not None:
                return open_.get(connection)
            return open_[max(open_)] if open_ else None

    def _token_ok(self, token: str) -> bool:
        if self.valid_tokens is None:
            return bool(token)
        return token in self.valid_tokens

    def _process_request(
        self, ws: ServerConnection, request: Request
    ) -> Response | None:
        if urlsplit(request.path).path.startswith("/api/"):
            # Plain HTTP on the WebSocket's port: websockets calls this hook for
            # any request, Upgrade header or not, and sends back the Response
            # it returns (then closes the connection).
            return self._api(request)
        with self._lock:
            attempt = self._handshakes
            self._handshakes += 1
            down = self._outage is not None
        if down:
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Outage\n")
        forced = _per_connection(self.options.reject_handshake, attempt)
        if forced is not None:
            response = ws.respond(forced, "Rejected by the simulator\n")
            if forced == 429 and self.options.retry_after is not None:
                response.headers["Retry-After"] = str(self.options.retry_after)
            return response
        feed, token = _parse_path(request.path)
        if feed not in FEEDS:
            return ws.respond(HTTPStatus.NOT_FOUND, "Unknown feed\n")
        status = self.options.reject_bad_token_http
        if status is not None and not self._token_ok(token):
            return ws.respond(status, "Unauthorized\n")
        limit = self.options.max_connections
        if limit is None:
            return None
        with self._lock:
            in_use = self._usage(token).connections
            if in_use >= limit:
                self._refuse("connections", token, None, in_use + 1, limit)
                refused = True
            else:
                # Counted from now: the handler registers it a moment later.
                self._pending[ws] = token
                refused = False
        if refused:
            return ws.respond(HTTPStatus.FORBIDDEN, "Too many connections\n")
        return None

    def _usage(self, token: str) -> TokenUsage:
        """`token`'s slots: pending upgrades, open connections, live holds.
        Call with the lock held."""
        # An upgrade whose handshake failed never reaches the handler; its
        # socket closes, and that ends its reservation.
        for ws in [w for w, t in self._pending.items() if w.state is State.CLOSED]:
            del self._pending[ws]
        now = time.monotonic()
        self._holds = [h for h in self._holds if h.until > now]
        held = [h for h in self._holds if h.token == token]
        lives = [v for v in self._live.values() if v.record.token == token]
        pending = sum(1 for t in self._pending.values() if t == token)
        held_symbols = sum(h.symbols for h in held)
        return TokenUsage(
            connections=pending + len(lives) + len(held),
            symbols=sum(len(v.symbols) for v in lives) + held_symbols,
            held_connections=len(held),
            held_symbols=held_symbols,
        )

    def _refuse(
        self, kind: str, token: str, connection: int | None, would_be: int, limit: int
    ) -> None:
        """Records a refusal (call with the lock held)."""
        self._refusals.append(
            Refusal(kind, token, connection, would_be, limit, self.options.clock())
        )
        logger.info(
            "refused (%s limit %s): connection %s would reach %s",
            kind,
            limit,
            connection,
            would_be,
        )

    def _handle(self, ws: ServerConnection) -> None:
        feed, token = _parse_path(ws.request.path if ws.request else "")
        with self._changed:
            self._pending.pop(ws, None)  # counted as live from here on
            record = ConnectionRecord(
                index=len(self._records),
                feed=feed,
                token=token,
                opened_at=self.options.clock(),
            )
            self._records.append(record)
            live = _Live(ws, record, self.options.seed)
            self._live[record.index] = live
            self._changed.notify_all()
        logger.info("connection %s opened on /ws/%s", record.index, feed)
        try:
            self._converse(live)
        except ConnectionClosed:
            pass
        finally:
            live.done.set()
            live.wake.set()
            if live.sender is not None:
                live.sender.join(timeout=2)
            with self._changed:
                # Read before `ended` is set: a close frame from the client
                # while the server had not ended the connection.
                clean = record.ended is None and ws.protocol.close_rcvd is not None
                if record.ended is None:
                    record.ended = (
                        "server-stopped" if self._stopping.is_set() else "client-closed"
                    )
                    clean = clean and not self._stopping.is_set()
                record.closed_at = self.options.clock()
                self._live.pop(record.index, None)
                if not clean and self.options.slot_hold > 0:
                    self._holds.append(
                        _Hold(
                            token=record.token,
                            connection=record.index,
                            symbols=len(live.symbols),
                            until=time.monotonic() + self.options.slot_hold,
                        )
                    )
                self._changed.notify_all()
            logger.info(
                "connection %s ended (%s) after %s trades",
                record.index,
                record.ended,
                record.trades_sent,
            )

    def _converse(self, live: _Live) -> None:
        """One connection, from the upgrade to its end (runs in the handler)."""
        opts = self.options
        ws, record = live.ws, live.record
        if not self._token_ok(record.token):
            self._end(live, "bad-token", STATUS_FRAMES[403])
            return
        error = _per_connection(opts.error_on_connect, record.index)
        if error == 429:
            self._end(live, "error-429", STATUS_FRAMES[429])
            return
        if error == 403:
            self._end(live, "error-403", STATUS_FRAMES[403])
            return
        early = None
        if opts.authorize_delay > 0:
            try:
                early = ws.recv(timeout=opts.authorize_delay)
            except TimeoutError:
                early = None
            if early is not None and opts.reject_early_subscribe:
                self._end(live, "early-subscribe", STATUS_FRAMES[500])
                return
        ws.send(AUTHORIZED)
        if error == 500:
            # The real feed faults a moment after authorising.
            if not self._stopping.wait(0.2):
                self._end(live, "error-500", STATUS_FRAMES[500])
            return
        live.sender = threading.Thread(
            target=self._send_loop,
            args=(live,),
            name=f"eodhd-sim-send-{record.index}",
            daemon=True,
        )
        live.sender.start()
        if early is not None and self._on_message(live, early, error):
            return
        for message in ws:
            if self._on_message(live, message, error):
                return

    def _end(self, live: _Live, reason: str, status_frame: str) -> None:
        with self._lock:
            live.record.ended = reason
        try:
            live.ws.send(status_frame)
        except (ConnectionClosed, OSError):
            pass
        # Returning from the handler then closes the socket with a close frame.

    def _on_message(self, live: _Live, message: str | bytes, error: int | None) -> bool:
        """Handles one client message; True ends the connection."""
        try:
            data = orjson.loads(message)
            action = data["action"]
            symbols = [s.strip() for s in str(data["symbols"]).split(",") if s.strip()]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.debug("connection %s: ignoring %r", live.record.index, message)
            return False
        if action == "subscribe" and error == 422:
            self._end(live, "error-422", STATUS_FRAMES[422])
            return True
        with self._lock:
            current = set(live.symbols)
            if action == "subscribe":
                wanted = self._allowed(live, current | set(symbols))
                live.record.subscribes += 1
            elif action == "unsubscribe":
                wanted = current - set(symbols)
            else:
                return False
            if wanted is not None:
                live.symbols = sorted(wanted)
                live.record.symbols = list(live.symbols)
        if wanted is None:
            # Over the limit: the whole request is refused, the socket stays up.
            live.ws.send(STATUS_FRAMES[422])
        live.wake.set()
        return False

    def _allowed(self, live: _Live, wanted: set[str]) -> set[str] | None:
        """`wanted` if a subscription to it is within the limits, else None
        (the refusal recorded). Call with the lock held."""
        opts, record = self.options, live.record
        if len(wanted) > opts.max_symbols:
            self._refuse(
                "connection-symbols",
                record.token,
                record.index,
                len(wanted),
                opts.max_symbols,
            )
            return None
        if opts.account_symbols is None:
            return wanted
        # The token's total with this connection's part replaced by `wanted`.
        total = self._usage(record.token).symbols - len(live.symbols) + len(wanted)
        if total > opts.account_symbols:
            self._refuse(
                "symbols", record.token, record.index, total, opts.account_symbols
            )
            return None
        return wanted

    def _may_send(self, live: _Live) -> bool:
        opts = self.options
        with self._lock:
            if not live.symbols or self._silent:
                return False
            if live.record.feed in opts.silent_feeds:
                return False
            if opts.silence_after is not None:
                if live.record.trades_sent >= opts.silence_after:
                    return False
            if opts.max_trades is not None:
                if self._trades + self._reserved >= opts.max_trades:
                    return False
            return True

    def _send_loop(self, live: _Live) -> None:
        interval = 1.0 / self.options.rate if self.options.rate > 0 else None
        next_at = time.monotonic()
        while not live.done.is_set() and not self._stopping.is_set():
            live.wake.clear()  # cleared first, so a set() from now on is not lost
            if interval is None or not self._may_send(live):
                live.wake.wait(0.5)
                next_at = time.monotonic()
                continue
            now = time.monotonic()
            if now < next_at:
                live.wake.wait(next_at - now)
                continue
            # Catch up after a slow wake, but never burst more than ~0.2 s worth.
            next_at = max(next_at + interval, now - 0.2)
            if not self._send_one(live):
                return

    def _send_one(self, live: _Live) -> bool:
        """Sends one slot's frame; False when the socket is gone."""
        opts, rng, record = self.options, live.rng, live.record
        with self._lock:
            symbols = list(live.symbols)
        if not symbols:
            return True
        if opts.malformed_prob and rng.random() < opts.malformed_prob:
            text = self._factory.malformed(rng.choice(symbols), rng)
            if not self._send_text(live, text):
                return False
            with self._lock:
                record.malformed_sent += 1
            return True
        if opts.symbols_extra and rng.random() < EXTRA_PROB:
            others = [s for s in EXTRA_SYMBOLS if s not in symbols]
            if others:
                frame = self._factory.frame(record.feed, rng.choice(others), rng)
                if self._on_tape(record, frame):
                    return True  # held: on the tape only
                if not self._send_text(live, orjson.dumps(frame).decode()):
                    return False
                with self._lock:
                    record.extras_sent += 1
                return True
        frame = self._factory.frame(record.feed, rng.choice(symbols), rng)
        if self._on_tape(record, frame):
            return True  # held: on the tape only
        with self._lock:
            self._reserved += 1
        sent = self._send_text(live, orjson.dumps(frame).decode())
        with self._changed:
            self._reserved -= 1
            if sent:
                record.trades_sent += 1
                self._trades += 1
                if opts.keep_sent:
                    self._sent.append(SentFrame(record.index, frame))
                self._changed.notify_all()
            count = record.trades_sent
        if not sent:
            return False
        if count == _per_connection(opts.drop_after, record.index):
            self._abort(live, "dropped")
            return False
        return True

    def _on_tape(self, record: ConnectionRecord, frame: dict) -> bool:
        """Puts a US trade on the tape; True when it is held (in a hole): the
        caller then sends it nowhere. Other feeds' frames are not trades."""
        if record.feed != "us":
            return False
        return self._put_on_tape(record.index, frame)

    def _put_on_tape(self, connection: int, frame: dict, hold: bool = False) -> bool:
        symbol, t = frame["s"], frame["t"]
        letters = _letters(tuple(frame["c"]))
        in_hole = any(
            start * 1000 <= t < end * 1000 for start, end in self.options.holes
        )
        with self._changed:
            held = hold or in_hole or self._hole
            seq = self._tape_seq.get(symbol, 0) + 1
            self._tape_seq[symbol] = seq
            rows = self._tape.get(symbol)
            if rows is None:
                rows = deque(maxlen=max(1, self.options.tape_max_rows))
                self._tape[symbol] = rows
            venue = DARK_POOL_VENUE if frame["dp"] else self._tape_rng.choice(VENUES)
            rows.append(
                TapeRow(
                    symbol=symbol,
                    ts=t,
                    price=frame["p"],
                    shares=frame["v"],
                    mkt=venue,
                    sl=letters,
                    seq=seq,
                    conditions=tuple(frame["c"]),
                    held=held,
                )
            )
            if held:
                self._held_count += 1
                if self.options.keep_sent:
                    self._held.append(SentFrame(connection, frame))
                self._changed.notify_all()
        return held

    # -- the HTTP API (tick history) -------------------------------------------

    def _api(self, request: Request) -> Response:
        """Answers a plain HTTP request under /api/ (runs in the handshake)."""
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != "/api/ticks":
            return _json_response(HTTPStatus.NOT_FOUND, {"error": "Not found"})
        if request.method != "GET":
            return _json_response(
                HTTPStatus.METHOD_NOT_ALLOWED, {"error": "Method not allowed"}
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            index = len(self._tick_log)
            entry = TickRequest(index=index, query=query)
            self._tick_log.append(entry)  # counted now, completed below
        response, rows = self._ticks(index, query)
        truncated = index in self.options.ticks_truncate and response.status_code == 200
        if truncated:
            # The headers promise the whole body; half of it goes out, then
            # websockets closes the connection.
            response.body = response.body[: len(response.body) // 2]
        with self._lock:
            entry.status = response.status_code
            entry.rows = rows
            entry.truncated = truncated
        return response

    def _ticks(self, index: int, query: dict[str, str]) -> tuple[Response, int]:
        """GET /api/ticks/: the tape rows of `s` with from <= ts/1000 < to."""
        opts = self.options
        forced = _per_connection(opts.ticks_statuses, index)
        if forced is not None:
            response = _json_response(
                forced, {"error": HTTPStatus(forced).phrase, "code": forced}
            )
            if forced == HTTPStatus.TOO_MANY_REQUESTS:
                after = opts.retry_after if opts.retry_after is not None else 1
                response.headers["Retry-After"] = f"{after:g}"
            return response, 0
        if not self._token_ok(query.get("api_token", "")):
            return _json_response(
                HTTPStatus.UNAUTHORIZED, {"error": "Unauthenticated"}
            ), 0
        symbol = query.get("s", "").strip().upper().removesuffix(".US")
        problem = None
        try:
            from_s = int(query["from"])
            to_s = int(query["to"])
            limit = int(query.get("limit", opts.ticks_page_limit))
        except (KeyError, ValueError):
            problem = "from and to (epoch seconds) and limit must be integers"
        else:
            if not symbol:
                problem = "s (the symbol) is required"
            elif limit <= 0:
                problem = "limit must be positive"
            elif query.get("fmt", "json") != "json":
                problem = "only fmt=json is served"
        if problem is not None:
            return _json_response(
                HTTPStatus.UNPROCESSABLE_ENTITY, {"error": problem}
            ), 0
        unpublished = opts.ticks_unpublished
        if unpublished is True or (
            not isinstance(unpublished, bool)
            and symbol in {s.upper().removesuffix(".US") for s in unpublished}
        ):
            return _json_response(
                HTTPStatus.NOT_FOUND,
                {"error": f"No tick data for {symbol}.US yet", "code": 404},
            ), 0
        limit = min(limit, opts.ticks_page_limit)
        start, end = from_s * 1000, to_s * 1000
        with self._lock:
            rows = [r for r in self._tape.get(symbol, ()) if start <= r.ts < end]
        rows.sort(key=_tape_order)
        del rows[limit:]
        body = {
            "ts": [r.ts for r in rows],
            "price": [r.price for r in rows],
            "shares": [r.shares for r in rows],
            "mkt": [r.mkt for r in rows],
            "sl": [r.sl for r in rows],
            "seq": [r.seq for r in rows],
            "sub_mkt": [r.sub_mkt for r in rows],
        }
        return _json_response(HTTPStatus.OK, body), len(rows)

    def _send_text(self, live: _Live, text: str) -> bool:
        try:
            live.ws.send(text)
        except (ConnectionClosed, OSError):
            return False
        return True

    def _abort(self, live: _Live, reason: str) -> None:
        """Cut the TCP connection without a close frame, like a network drop.

        shutdown() rather than an RST: bytes already handed to the kernel still
        reach the client, so everything in sent_trades() was really delivered."""
        with self._lock:
            if live.record.ended is None:
                live.record.ended = reason
        try:
            live.ws.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        live.wake.set()


def _parse_path(path: str) -> tuple[str, str]:
    """'/ws/us?api_token=K' -> ('us', 'K'); feed is '' for any other path."""
    parts = urlsplit(path)
    segments = parts.path.strip("/").split("/")
    feed = segments[1] if len(segments) == 2 and segments[0] == "ws" else ""
    token = parse_qs(parts.query).get("api_token", [""])[0]
    return feed, token
