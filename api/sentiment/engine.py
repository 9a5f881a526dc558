"""The sentiment workers: one computes every symbol's scores every second from
in-memory state and publishes them; one polls the news API. Neither ever makes a
bar wait, and no score is chained through database rows."""

import logging
import queue
import threading
from collections import deque
from datetime import UTC, datetime

from api.pipeline.messages import Closes, Trades
from api.redact import mask_token
from api.sentiment.flow import FlowWindow
from api.sentiment.holder import LatestScores
from api.sentiment.news import ArticleStore, NewsClient
from api.sentiment.scoring import (
    Scores,
    TechnicalSmoother,
    composite,
    news_score,
    technical_momentum,
)
from api.workers.clock import Clock
from api.workers.worker import Worker

logger = logging.getLogger(__name__)

CLOSES_KEPT = 120  # seconds of 1-second closes per symbol (momentum needs 30)
WINDOW = 30.0  # seconds of closes behind the momentum
DAY_SECONDS = 86_400.0


class _SymbolState:
    def __init__(self) -> None:
        self.closes: deque[tuple[float, float]] = deque(maxlen=CLOSES_KEPT)
        self.smoother = TechnicalSmoother()
        self.momentum_at: float | None = None  # when momentum was last known
        self.flow = FlowWindow()


class SharedArticles:
    """The article store behind a lock: the poller writes, the engine reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._store = ArticleStore()

    def merge(self, symbol: str, articles) -> int:
        with self._lock:
            return self._store.merge(symbol, articles)

    def articles(self, symbol: str, now: float) -> list:
        with self._lock:
            return list(self._store.articles(symbol, now))


class SentimentEngine(Worker):
    def __init__(
        self,
        *,
        inbox: queue.Queue,
        scores: LatestScores,
        symbols: list[str],
        stop: threading.Event,
        articles: SharedArticles,
        clock: Clock | None = None,
        weights: tuple[float, float, float] = (0.45, 0.30, 0.25),
        interval: float = 1.0,
        verbose: bool = False,
        news_enabled: bool = True,
    ) -> None:
        super().__init__("sentiment", stop)
        self.inbox = inbox
        self.scores = scores
        self.symbols = list(symbols)
        self.articles = articles
        self.clock = clock or Clock()
        self.weights = weights
        self.interval = interval
        self.verbose = verbose
        self.news_enabled = news_enabled
        self.state = {symbol: _SymbolState() for symbol in symbols}
        self.computations = 0
        self.errors = 0
        self._retarget: list[str] | None = None

    def retarget(self, symbols: list[str]) -> None:
        """Score exactly these symbols from the next cycle on (any thread)."""
        self._retarget = list(symbols)

    def _apply_retarget(self) -> None:
        symbols, self._retarget = self._retarget, None
        if symbols is None:
            return
        for symbol in [s for s in self.state if s not in symbols]:
            del self.state[symbol]
            self.scores.forget(symbol)
        for symbol in symbols:
            self.state.setdefault(symbol, _SymbolState())
        self.symbols = list(symbols)

    def work(self) -> None:
        next_log = self.clock.monotonic() + 10
        while not self.stop.is_set():
            started = self.clock.monotonic()
            self._apply_retarget()
            self.drain()
            self.compute_all(self.clock.now())
            if self.verbose and self.clock.monotonic() >= next_log:
                next_log += 10
                logger.info("💚 sentiment: %s", self.describe())
            self.stop.wait(max(0.0, self.interval - (self.clock.monotonic() - started)))

    def drain(self) -> None:
        """Take the closes and trades the aggregator published."""
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(message, Closes):
                for symbol, second, close in message.closes:
                    state = self.state.get(symbol)
                    if state is not None:
                        state.closes.append((float(second), float(close)))
            elif isinstance(message, Trades):
                for trade in message.trades:
                    state = self.state.get(trade.symbol)
                    if state is not None:
                        state.flow.add(
                            trade.ts_ms / 1000, float(trade.price), float(trade.size)
                        )

    def compute_all(self, now: float) -> None:
        for symbol, state in self.state.items():
            try:
                self.scores.publish(symbol, self.compute(symbol, state, now))
            except Exception as exc:
                # Unknown, not zero: the holder's stale limit turns this into NULLs.
                self.errors += 1
                self.scores.forget(symbol)
                logger.log(
                    logging.ERROR,
                    "❌ sentiment for %s failed: %r",
                    symbol,
                    exc,
                    extra={"dedupe": f"sentiment {symbol}", "symbol": symbol},
                )
        self.computations += 1

    def compute(self, symbol: str, state: _SymbolState, now: float) -> Scores:
        news = (
            news_score(self.articles.articles(symbol, now), now)
            if self.news_enabled
            else None
        )
        # Closes keep their order of closing; momentum wants them by time.
        closes = sorted(state.closes)
        raw = technical_momentum(closes, now, WINDOW)
        if raw is not None:
            state.momentum_at = now
        elif state.momentum_at is not None and now - state.momentum_at > WINDOW:
            # The smoother bridges a short gap in closes, but a momentum from
            # before a halt (or yesterday's session) says nothing about now.
            state.smoother = TechnicalSmoother()
            state.momentum_at = None
        technical = state.smoother.update(raw)
        flow = state.flow.score(now)
        return Scores(
            composite=composite(news, technical, flow, self.weights),
            news=news,
            technical=technical,
            flow=flow,
            computed_at=now,
        )

    def describe(self) -> str:
        parts = []
        for symbol in self.symbols[:5]:
            latest = self.scores.latest(symbol, self.clock.now())
            value = (
                "null"
                if latest is None or latest.composite is None
                else (f"{latest.composite:+.1f}")
            )
            parts.append(f"{symbol} {value}")
        more = f" (+{len(self.symbols) - 5} more)" if len(self.symbols) > 5 else ""
        return ", ".join(parts) + more


class NewsPoller(Worker):
    """Polls each symbol's news on an interval, within the API's call budget. An
    outage keeps the known articles: their impact keeps decaying meanwhile."""

    def __init__(
        self,
        *,
        client: NewsClient,
        articles: SharedArticles,
        symbols: list[str],
        stop: threading.Event,
        clock: Clock | None = None,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__("news", stop)
        self.client = client
        self.articles = articles
        self.symbols = list(symbols)
        self.clock = clock or Clock()
        self._asked_interval = poll_interval
        self.poll_interval = max(poll_interval, self._budget_interval())
        if self.poll_interval > poll_interval:
            logger.warning(
                "news: polling %d symbols every %.0fs would exceed the daily budget "
                "of %d calls; polling each every %.0fs instead",
                len(self.symbols),
                poll_interval,
                client.daily_call_budget,
                self.poll_interval,
            )
        self.polls = 0
        self.failures = 0
        self.last_success_at: float | None = None  # epoch seconds
        self._due = {symbol: 0.0 for symbol in symbols}
        self._retarget: list[str] | None = None

    def _budget_interval(self) -> float:
        """The shortest interval at which polling every symbol around the clock
        fits the daily budget; faster, it runs out before the US session opens."""
        budget = self.client.daily_call_budget
        if budget <= 0:
            return 0.0  # can_call() refuses every call anyway
        calls = len(self.symbols) * self.client.cost_per_request
        return calls * DAY_SECONDS / budget

    def poll_due(self) -> bool:
        """Poll every symbol that is due and allowed; True if any call was made."""
        made = False
        for symbol in self.symbols:
            now = self.clock.now()
            if now < self._due[symbol] or not self.client.can_call(now):
                continue
            made = True
            self.polls += 1
            self._due[symbol] = now + self.poll_interval
            try:
                day = datetime.fromtimestamp(now, tz=UTC).date()
                articles = self.client.fetch(symbol, day, now)
                added = (
                    None if articles is None else self.articles.merge(symbol, articles)
                )
            except Exception as exc:
                # News is optional: whatever a response does to us must not stop
                # the collector. The known articles stay, as in any outage.
                articles = None
                logger.log(
                    logging.ERROR,
                    "❌ news for %s failed unexpectedly: %s",
                    symbol,
                    mask_token(repr(exc)),
                    extra={"dedupe": f"news {symbol}", "symbol": symbol},
                )
            if articles is None:
                self.failures += 1
                continue
            self.last_success_at = now
            if added:
                logger.info("📰 %s: %d new articles", symbol, added)
        return made

    def retarget(self, symbols: list[str]) -> None:
        """Poll exactly these symbols from now on (any thread; a new one is
        due at once)."""
        self._retarget = list(symbols)

    def _apply_retarget(self) -> None:
        symbols, self._retarget = self._retarget, None
        if symbols is None:
            return
        self._due = {s: self._due.get(s, 0.0) for s in symbols}
        self.symbols = list(symbols)
        # More symbols on one budget: each is polled less often.
        self.poll_interval = max(self._asked_interval, self._budget_interval())

    def work(self) -> None:
        while not self.stop.is_set():
            self._apply_retarget()
            self.poll_due()
            self.stop.wait(1.0)
