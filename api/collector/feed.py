"""The receiver: one WebSocket connection to EODHD, parsed trades handed on in
batches. It never touches the database."""

import json
import logging
import math
import queue
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

import websocket

from api.collector.coverage import collector_id
from api.collector.session import SessionGate
from api.market.backoff import Backoff
from api.market.messages import Malformed, Status, Trade, parse_frame
from api.pipeline.messages import Trades, Watch
from api.redact import mask_token
from api.workers.clock import Clock
from api.workers.worker import Worker

logger = logging.getLogger(__name__)

BATCH_SIZE = 256
BATCH_AGE = 0.05  # seconds a partial batch may wait before it is handed on
UNSUBSCRIBE_DRAIN = 2.0  # seconds a removed symbol's in-flight trades are taken
RECV_TIMEOUT = 0.25  # how often the receive loop looks at stop/reconnect requests
# The connection counts as streaming (so one symbol's silence means something)
# while its last trade is at most this old.
STREAMING_WITHIN = 5.0
# Why a connection ends (server statuses add "server status N"): metrics export
# each from the start, at 0.
RECONNECT_REASONS = (
    "auth failed",
    "forbidden",
    "rate limited",
    "handshake failed",
    "connect failed",
    "connection dropped",
    "closed by server",
    "not authorized in time",
    "pong timeout",
    "symbol limit",
    "stale",
    "market closed",
)


@dataclass
class FeedPolicy:
    """How the receiver waits and reconnects. Defaults follow EODHD's behaviour."""

    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    auth_failure_delay: float = 300.0  # HTTP 401, or a 403 status frame: the key
    symbol_limit_delay: float = 30.0  # 422: grows by this much each time
    symbol_limit_cap: float = 300.0
    # HTTP 403 at the handshake: too many connections (a dropped socket holds
    # its slot for a while) or a plan without streaming. Grows like 422.
    forbidden_delay: float = 30.0
    forbidden_cap: float = 300.0
    # HTTP 429 / status 429: too fast. Retry-After when the server says, else
    # growing waits.
    rate_limit_delay: float = 10.0
    rate_limit_cap: float = 300.0
    authorize_timeout: float = 10.0
    connect_timeout: float = 10.0
    ping_interval: float = 20.0
    pong_timeout: float = 15.0
    # A symbol that traded on this connection and has been silent this long
    # while the others stream (EODHD has dropped a ticker from a multi-symbol
    # subscription) is subscribed again; each further try for a symbol still
    # silent waits twice as long, up to symbol_silence_cap. 0: never.
    symbol_silence: float = 120.0
    symbol_silence_cap: float = 1800.0


@dataclass
class FeedStats:
    """Counters written by the receiver thread only; others just read them."""

    connection_attempts: int = 0
    connections: int = 0
    frames: int = 0
    trades: int = 0
    malformed: int = 0
    ignored: int = 0  # trades for symbols not subscribed, quotes
    queue_full: int = 0
    reconnects: dict[str, int] = field(default_factory=dict)
    # Symbols subscribed again after going silent alone, per symbol.
    resubscribes: dict[str, int] = field(default_factory=dict)


RETRY_AFTER_CAP = 3600.0


def retry_after(headers: dict | None) -> float | None:
    """A Retry-After header's delay in seconds (the delta-seconds form; an
    HTTP date or nonsense is ignored), bounded to [1 s, an hour]."""
    if not headers:
        return None
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                seconds = float(str(value).strip())
            except ValueError:
                return None
            if seconds != seconds:  # NaN
                return None
            return min(max(seconds, 1.0), RETRY_AFTER_CAP)
    return None


def feed_url(base: str, stream: str) -> str:
    """The URL of `stream`: `base` with its last path segment replaced."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/").rsplit("/", 1)[0] + "/" + stream
    return urlunsplit(parts._replace(path=path))


def with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"api_token": token})) if q)
    return urlunsplit(parts._replace(query=query))


class _Reconnect(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Receiver(Worker):
    def __init__(
        self,
        *,
        url: str,
        token: str,
        symbols: list[str],
        out: queue.Queue,
        stop: threading.Event,
        gate: SessionGate,
        clock: Clock | None = None,
        policy: FeedPolicy | None = None,
        connect: Callable[..., websocket.WebSocket] | None = None,
        accepts: type = Trade,
        name: str = "receiver",
        stream: str = "us",
    ) -> None:
        super().__init__(name, stop)
        self.stream = stream  # its EODHD stream's name, for coverage
        # What the stream carries: trades (us, crypto) or quotes (us-quote,
        # forex); anything else is counted as ignored.
        self.accepts = accepts
        # websocket.create_connection, or a Pump's, which reads the socket in a
        # process of its own.
        self._connect = connect or websocket.create_connection
        self.url = url
        self.token = token
        self.symbols = list(symbols)
        self._wanted = frozenset(symbols)
        self.out = out
        self.gate = gate
        self.clock = clock or Clock()
        self.policy = policy or FeedPolicy()
        self.stats = FeedStats()
        self.connected = False
        # Monotonic time of the last trade on the current connection; reset on
        # every new connection so a fresh socket is never judged stale.
        self.last_data_at: float | None = None
        # Monotonic time of each symbol's last trade, over all connections.
        self.last_trade_at: dict[str, float] = {}
        self.connected_at: float | None = None
        # Wall-clock time of the last batch of trades handed on: where a
        # connection that went silent stopped observing.
        self.last_data_wall: float | None = None
        self._reconnect_request: str | None = None
        self._backoff = Backoff(
            base=self.policy.backoff_base, cap=self.policy.backoff_cap
        )
        # Refusals in a row per reason whose wait grows with each (reset by a
        # connection that delivers data).
        self._refusals: dict[str, int] = {}
        self._retry_after: float | None = None  # a 429's Retry-After, seconds
        self._delivered = False
        self._last_pong = 0.0
        self.journal = None  # set to a Journal to record every raw frame
        # Per-symbol silence: when a symbol was subscribed again (monotonic),
        # how many times in a row, and since when (wall) its coverage runs.
        self._resubscribed_at: dict[str, float] = {}
        self._resubscribe_tries: dict[str, int] = {}
        self._watched_from: dict[str, float] = {}
        # The symbols asked for by another thread (retarget), applied by the
        # receive loop on the live connection.
        self._target: tuple[str, ...] | None = None
        self._target_set = threading.Event()
        # Until then (monotonic), trades of symbols just unsubscribed are still
        # taken: the server sent them before it saw the unsubscribe.
        self._draining_until: float | None = None

    # Called from other threads -------------------------------------------------

    def request_reconnect(self, reason: str) -> None:
        """Ask the receive loop to drop the socket and reconnect (within ~0.25 s)."""
        self._reconnect_request = reason

    def retarget(self, symbols: list[str]) -> None:
        """From any thread: subscribe to exactly these symbols from now on, on
        the live connection (subscribe/unsubscribe, no reconnect). With none,
        the connection closes until some are given."""
        self._target = tuple(symbols)
        self._target_set.set()

    def seconds_since_data(self) -> float | None:
        if not self.connected or self.last_data_at is None:
            return None
        return self.clock.monotonic() - self.last_data_at

    # The receiver thread --------------------------------------------------------

    def work(self) -> None:
        while not self.stop.is_set():
            if not self.gate.wait_until_open(self.stop):
                return
            self._take_target()
            if not self.symbols:
                # Nothing to subscribe to: no connection (it would hold one of
                # the account's slots) until symbols are given.
                self._target_set.wait(RECV_TIMEOUT)
                continue
            reason, delivered = self._run_connection()
            if self.stop.is_set():
                return
            self.stats.reconnects[reason] = self.stats.reconnects.get(reason, 0) + 1
            delay = self._delay_after(reason, delivered)
            if delay > 0:
                logger.warning("🔄 reconnecting in %.1f s (%s)", delay, reason)
                self.clock.wait(self.stop, delay)

    def _delay_after(self, reason: str, delivered: bool) -> float:
        if delivered:
            # A connection that delivered data resets every backoff.
            self._backoff.reset()
            self._refusals.clear()
        policy = self.policy
        if reason == "market closed":
            return 0.0
        if reason == "auth failed":
            return policy.auth_failure_delay
        growing = {
            "symbol limit": (policy.symbol_limit_delay, policy.symbol_limit_cap),
            "forbidden": (policy.forbidden_delay, policy.forbidden_cap),
            "rate limited": (policy.rate_limit_delay, policy.rate_limit_cap),
        }.get(reason)
        if growing is None:
            return self._backoff.next()
        step, cap = growing
        hits = self._refusals[reason] = self._refusals.get(reason, 0) + 1
        if reason == "rate limited" and self._retry_after is not None:
            asked, self._retry_after = self._retry_after, None
            return min(asked, cap)
        return min(step * hits, cap)

    def _run_connection(self) -> tuple[str, bool]:
        """One connection from connect to close; returns (why it ended, delivered)."""
        self.stats.connection_attempts += 1
        self._reconnect_request = None
        safe_url = mask_token(with_token(self.url, self.token))
        try:
            ws = self._connect(
                with_token(self.url, self.token),
                timeout=self.policy.connect_timeout,
                skip_utf8_validation=True,
                sslopt={"cert_reqs": ssl.CERT_REQUIRED},
                enable_multithread=False,
            )
        except websocket.WebSocketBadStatusException as exc:
            return self._refused(exc, safe_url), False
        except (OSError, websocket.WebSocketException) as exc:
            logger.warning(
                "❌ cannot connect to %s: %s", safe_url, mask_token(str(exc))
            )
            return "connect failed", False

        self.stats.connections += 1
        self._delivered = False
        batch: list[Trade] = []
        watched: float | None = None  # when the subscription began
        ended = "stopped"
        try:
            ws.settimeout(RECV_TIMEOUT)
            self._await_authorized(ws)
            subscribe = {"action": "subscribe", "symbols": ",".join(self.symbols)}
            try:
                ws.send(json.dumps(subscribe))
            except (OSError, websocket.WebSocketException) as exc:
                raise _Reconnect("connection dropped") from exc
            now = self.clock.monotonic()
            self.connected, self.connected_at, self.last_data_at = True, now, now
            self.last_data_wall = watched = self.clock.now()
            self._resubscribed_at.clear()
            self._resubscribe_tries.clear()
            self._watched_from = dict.fromkeys(self.symbols, watched)
            self._watch(Watch(self.stream, tuple(self.symbols), watched))
            logger.info(
                "✅ connected to %s, subscribed to %s",
                safe_url,
                ",".join(self.symbols),
            )
            self._receive(ws, batch)
        except _Reconnect as exc:
            if exc.reason not in ("connection dropped", "closed by server"):
                self._drain(ws, batch)
            ended = exc.reason
            return exc.reason, self._delivered
        finally:
            self.connected = False
            if batch:
                self._hand_on(batch)
            if watched is not None:
                # Silent since the last data: observed only until then.
                at = self.last_data_wall if ended == "stale" else self.clock.now()
                self._watch(Watch(self.stream, tuple(self.symbols), at, True, ended))
            try:
                ws.close(timeout=1)
            except Exception:  # the socket may already be gone
                ws.shutdown()
        return "stopped", False

    def _refused(self, exc: websocket.WebSocketBadStatusException, url: str) -> str:
        """Why the handshake was refused, by EODHD's HTTP status."""
        code = exc.status_code
        if code == 401:
            logger.error(
                "❌ %s refused the key (HTTP 401): check EODHD_API_KEY",
                url,
                extra={"dedupe": "handshake 401"},
            )
            return "auth failed"
        if code == 403:
            logger.error(
                "❌ %s refused the connection (HTTP 403): too many connections for "
                "the account (a dropped socket holds its slot for a while) or a plan "
                "without real-time streaming",
                url,
                extra={"dedupe": "handshake 403"},
            )
            return "forbidden"
        if code == 429:
            self._retry_after = retry_after(getattr(exc, "resp_headers", None))
            logger.warning(
                "❌ %s: too many requests (HTTP 429)%s",
                url,
                ""
                if self._retry_after is None
                else f", retry after {self._retry_after:.0f} s",
                extra={"dedupe": "handshake 429"},
            )
            return "rate limited"
        logger.warning("❌ handshake with %s failed: HTTP %s", url, code)
        return "handshake failed"

    def _await_authorized(self, ws: websocket.WebSocket) -> None:
        deadline = self.clock.monotonic() + self.policy.authorize_timeout
        while self.clock.monotonic() < deadline:
            if self.stop.is_set():
                raise _Reconnect("stopped")
            data = self._recv(ws)
            if data is None:
                continue
            msg = parse_frame(data)
            if isinstance(msg, Status):
                if msg.is_authorized:
                    return
                raise _Reconnect(self._status_reason(msg))
        raise _Reconnect("not authorized in time")

    def _status_reason(self, msg: Status) -> str:
        if msg.code == 429:
            logger.warning(
                "❌ EODHD: too many requests (%s %s)",
                msg.code,
                msg.message,
                extra={"dedupe": "status 429"},
            )
            return "rate limited"
        if msg.code in (401, 403):
            logger.error(
                "❌ EODHD refused the key (%s %s): check EODHD_API_KEY and your plan",
                msg.code,
                msg.message,
            )
            return "auth failed"
        if msg.code == 422:
            logger.error(
                "❌ EODHD: %s (%d symbols requested; slots of a dead socket stay taken "
                "for up to ~2 minutes)",
                msg.message,
                len(self.symbols),
            )
            return "symbol limit"
        logger.warning("❌ EODHD sent status %s: %s", msg.code, msg.message)
        return f"server status {msg.code}"

    def _recv(self, ws: websocket.WebSocket) -> bytes | None:
        """One data frame, or None on timeout or a control frame."""
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return None
        except (OSError, websocket.WebSocketException) as exc:
            raise _Reconnect("connection dropped") from exc
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise _Reconnect("closed by server")
        if opcode == websocket.ABNF.OPCODE_PONG:
            self._last_pong = self.clock.monotonic()
            return None
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            return data
        return None

    def _receive(self, ws: websocket.WebSocket, batch: list[Trade]) -> None:
        """The receive loop; returns only by raising _Reconnect."""
        policy = self.policy
        self._last_pong = self.clock.monotonic()
        ping_due = self.clock.monotonic() + policy.ping_interval
        pong_wait_since: float | None = None
        batch_started = 0.0
        next_check = 0.0
        while True:
            data = self._recv(ws)
            now = self.clock.monotonic()
            if data is not None:
                if not batch:
                    batch_started = now
                self._take(data, now, batch)
            if batch and (
                data is None
                or len(batch) >= BATCH_SIZE
                or now - batch_started >= BATCH_AGE
            ):
                self._hand_on(batch)
                batch.clear()
            if now < next_check:
                continue
            # Housekeeping a few times a second, off the per-frame path.
            next_check = now + RECV_TIMEOUT
            if self.stop.is_set():
                raise _Reconnect("stopped")
            if self._reconnect_request:
                raise _Reconnect(self._reconnect_request)
            if not self.gate.is_open():
                logger.info("🔔 market closed: disconnecting until the next session")
                raise _Reconnect("market closed")
            if self._target is not None:
                self._apply_target(ws)
            if self._draining_until is not None and now >= self._draining_until:
                self._draining_until = None
                self._wanted = frozenset(self.symbols)
            if self.policy.symbol_silence > 0:
                self._resubscribe_silent(ws, now)
            if pong_wait_since is not None and self._last_pong >= pong_wait_since:
                pong_wait_since = None
            if (
                pong_wait_since is not None
                and now - pong_wait_since > policy.pong_timeout
            ):
                raise _Reconnect("pong timeout")
            if now >= ping_due:
                try:
                    ws.ping()
                except (OSError, websocket.WebSocketException) as exc:
                    raise _Reconnect("connection dropped") from exc
                if pong_wait_since is None:
                    pong_wait_since = now
                ping_due = now + policy.ping_interval

    def _take(self, data: bytes, now: float, batch: list[Trade]) -> None:
        """One data frame: recorded, parsed, counted, a wanted trade batched."""
        stats = self.stats
        stats.frames += 1
        if self.journal is not None:
            self.journal.record(data, self.clock.now())
        msg = parse_frame(data)
        if type(msg) is self.accepts:
            if msg.symbol in self._wanted:
                stats.trades += 1
                batch.append(msg)
                self.last_data_at = now
                self.last_trade_at[msg.symbol] = now
                self._delivered = True
            else:
                stats.ignored += 1
        elif isinstance(msg, Malformed):
            stats.malformed += 1
            logger.log(
                logging.WARNING,
                "⚠️ skipped a malformed frame (%s): %s",
                msg.reason,
                mask_token(msg.excerpt),
                extra={"dedupe": "malformed", "reason": msg.reason},
            )
        elif isinstance(msg, Status):
            raise _Reconnect(self._status_reason(msg))
        else:
            stats.ignored += 1

    def _take_target(self) -> tuple[list[str], list[str]]:
        """Adopt the symbols asked for; (added, removed)."""
        target, self._target = self._target, None
        self._target_set.clear()
        if target is None:
            return [], []
        added = [s for s in target if s not in self._wanted]
        removed = [s for s in self.symbols if s not in target]
        self.symbols = list(target)
        self._wanted = frozenset(target)
        return added, removed

    def _apply_target(self, ws) -> None:
        """On the live connection: unsubscribe what was removed, subscribe what
        was added; coverage ends and begins with them."""
        added, removed = self._take_target()
        if not self.symbols:
            raise _Reconnect("no symbols")
        try:
            if removed:
                names = ",".join(removed)
                ws.send(json.dumps({"action": "unsubscribe", "symbols": names}))
            if added:
                names = ",".join(added)
                ws.send(json.dumps({"action": "subscribe", "symbols": names}))
        except (OSError, websocket.WebSocketException) as exc:
            raise _Reconnect("connection dropped") from exc
        wall = self.clock.now()
        if removed:
            self._wanted = self._wanted | frozenset(removed)
            self._draining_until = self.clock.monotonic() + UNSUBSCRIBE_DRAIN
            self._watch(Watch(self.stream, tuple(removed), wall, True, "unsubscribed"))
            for symbol in removed:
                self._watched_from.pop(symbol, None)
                self._resubscribed_at.pop(symbol, None)
                self._resubscribe_tries.pop(symbol, None)
            logger.info("➖ unsubscribed from %s", ",".join(removed))
        if added:
            self._watch(Watch(self.stream, tuple(added), wall))
            self._watched_from.update(dict.fromkeys(added, wall))
            logger.info("➕ subscribed to %s", ",".join(added))

    def _resubscribe_silent(self, ws, now: float) -> None:
        """Subscribe again to each symbol that traded on this connection, then
        went silent while the connection kept streaming. Its coverage ends at
        its last trade (what came after was not observed) and begins again."""
        if self.last_data_at is None:
            return
        # Another symbol traded just now (the last trade of any is recent): a
        # whole quiet connection is the stale check's business, not this.
        recent = now - self.last_data_at
        policy, since = self.policy, self.connected_at
        silent = []
        for symbol in self.symbols:
            last = self.last_trade_at.get(symbol)
            if last is None or since is None or last < since:
                continue  # has not traded on this connection: nothing to judge
            tried = self._resubscribed_at.get(symbol)
            if tried is not None and last > tried:
                self._resubscribed_at.pop(symbol)  # it came back
                self._resubscribe_tries.pop(symbol, None)
                tried = None
            tries = self._resubscribe_tries.get(symbol, 0)
            wait = min(policy.symbol_silence * 2**tries, policy.symbol_silence_cap)
            streaming = recent <= min(STREAMING_WITHIN, wait / 2)
            if streaming and now - max(last, tried or last) > wait:
                silent.append(symbol)
        if not silent:
            return
        names = ",".join(silent)
        try:
            ws.send(json.dumps({"action": "unsubscribe", "symbols": names}))
            ws.send(json.dumps({"action": "subscribe", "symbols": names}))
        except (OSError, websocket.WebSocketException) as exc:
            raise _Reconnect("connection dropped") from exc
        wall = self.clock.now()
        for symbol in silent:
            last_wall = wall - (now - self.last_trade_at[symbol])
            ended = max(last_wall, self._watched_from.get(symbol, last_wall))
            self._watch(Watch(self.stream, (symbol,), ended, True, "symbol silent"))
            self._watch(Watch(self.stream, (symbol,), wall))
            self._watched_from[symbol] = wall
            self._resubscribed_at[symbol] = now
            self._resubscribe_tries[symbol] = self._resubscribe_tries.get(symbol, 0) + 1
            self.stats.resubscribes[symbol] = self.stats.resubscribes.get(symbol, 0) + 1
        logger.warning(
            "🔕 %s silent for %.0f s while the others stream: subscribed again",
            names,
            now - min(self.last_trade_at[s] for s in silent),
            extra={"dedupe": "symbol silent"},
        )

    def _drain(self, ws, batch: list[Trade]) -> None:
        """Before a deliberate close (stop, market close, stale socket): frames
        that already reached this machine are trades like any other. A receiver
        process may hold a batch of them; it hands them over, then closes."""
        finish = getattr(ws, "finish", None)
        if finish is None:
            return  # websocket-client's own socket: nothing is held back
        try:
            for data in finish(timeout=1.0):
                self._take(data, self.clock.monotonic(), batch)
        except _Reconnect:
            pass  # a status frame at the very end: the socket closes anyway

    def _hand_on(self, batch: list[Trade]) -> None:
        """Give a batch to the aggregator; wait (counted, logged) rather than drop."""
        self.last_data_wall = self.clock.now()
        self._put(Trades(list(batch)), len(batch))

    def _watch(self, watch: Watch) -> None:
        """Coverage: to the writer (through the aggregator) and the journal."""
        if self.journal is not None:
            self.journal.mark_watch(watch, collector_id())
        self._put(watch)

    def _put(self, message, items: int = 0) -> None:
        tries_after_stop = 0
        while True:
            try:
                self.out.put(message, timeout=0.5)
                return
            except queue.Full:
                self.stats.queue_full += 1
                logger.log(
                    logging.ERROR,
                    "❌ the aggregator's queue is full; the receiver is waiting",
                    extra={"dedupe": "queue full"},
                )
                if self.stop.is_set():
                    tries_after_stop += 1
                    if tries_after_stop >= 10:
                        # Shutting down and the aggregator is stuck: say what is lost.
                        logger.error("❌ dropping %d trades at shutdown", items)
                        return


class Streams:
    """Several receivers (connections of one or more EODHD streams) seen as
    one feed, for the figures that add up: counters are summed, "connected"
    needs every connection with symbols, the time since data is the worst one's.
    Read-only; per-connection figures are on each receiver (`by_stream`, by
    connection name)."""

    def __init__(self, receivers: dict[str, Receiver]) -> None:
        self.by_stream = receivers

    @property
    def stats(self) -> FeedStats:
        total = FeedStats()
        for r in self.by_stream.values():
            s = r.stats
            total.connection_attempts += s.connection_attempts
            total.connections += s.connections
            total.frames += s.frames
            total.trades += s.trades
            total.malformed += s.malformed
            total.ignored += s.ignored
            total.queue_full += s.queue_full
            for reason, n in s.reconnects.items():
                total.reconnects[reason] = total.reconnects.get(reason, 0) + n
            for symbol, n in s.resubscribes.items():
                total.resubscribes[symbol] = total.resubscribes.get(symbol, 0) + n
        return total

    @property
    def connected(self) -> bool:
        live = self._active()
        return bool(live) and all(r.connected for r in live)

    def _active(self) -> list[Receiver]:
        """The connections with symbols to collect (an idle one has none)."""
        return [r for r in list(self.by_stream.values()) if r.symbols]

    @property
    def connected_at(self) -> float | None:
        times = [r.connected_at for r in self._active()]
        return None if not times or None in times else max(times)

    @property
    def symbols(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.by_stream.values():
            seen.update(dict.fromkeys(r.symbols))
        return list(seen)

    @property
    def last_trade_at(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for r in self.by_stream.values():
            for symbol, at in list(r.last_trade_at.items()):
                if at > merged.get(symbol, -math.inf):
                    merged[symbol] = at
        return merged

    def seconds_since_data(self) -> float | None:
        ages = [r.seconds_since_data() for r in self._active()]
        return None if not ages or None in ages else max(ages)
