"""The aggregator: owns the bar builders, closes seconds on time, hands bars on."""

import logging
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from api.collector.clock import Clock
from api.collector.worker import Worker
from api.market.bars import SecondBar, SecondBars, TickBars, TickCandle
from api.market.messages import Trade
from api.sentiment.holder import LatestScores
from api.sentiment.scoring import Scores

logger = logging.getLogger(__name__)

CLOSE_INTERVAL = 0.1  # how often open seconds are checked for closing


@dataclass
class WriteBatch:
    """What the aggregator hands to the writer in one go."""

    bars: list[tuple[SecondBar, Scores | None]] = field(default_factory=list)
    candles: list[TickCandle] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.bars or self.candles)


FINISHED = object()  # put on the writer's queue after the last batch


class Aggregator(Worker):
    def __init__(
        self,
        *,
        inbox: queue.Queue,
        outbox: queue.Queue,
        stop: threading.Event,
        upstream_done: Callable[[], bool],
        scores: LatestScores,
        clock: Clock | None = None,
        grace: float = 2.0,
        revision_window: float = 300.0,
        tick_size: int = 100,
        next_candle_numbers: dict[str, int] | None = None,
        sentiment_inbox: queue.Queue | None = None,
        verbose: bool = False,
        partial_candles: dict[str, list[Trade]] | None = None,
        save_partial: Callable[[TickBars], None] | None = None,
    ) -> None:
        super().__init__("aggregator", stop)
        self.inbox = inbox
        self.outbox = outbox
        self.upstream_done = upstream_done
        self.scores = scores
        self.clock = clock or Clock()
        self.seconds = SecondBars(grace=grace, revision_window=revision_window)
        self.ticks = TickBars(size=tick_size)
        for symbol, number in (next_candle_numbers or {}).items():
            self.ticks.set_next_number(symbol, number)
        for symbol, trades in (partial_candles or {}).items():
            self.ticks.restore(symbol, trades)
        self.save_partial = save_partial
        # Orders from other threads, e.g. a new candle numbering after a standby
        # became the writer.
        self.control: queue.Queue = queue.Queue()
        self.sentiment_inbox = sentiment_inbox
        self.verbose = verbose
        # Seconds before this process started belong to the previous run, which
        # stored them; a fresh builder would overwrite those rows with a fragment.
        self.start_second = math.floor(self.clock.now())
        self.trades = 0
        self.before_start = 0
        self.candles = 0
        self.sentiment_dropped = 0
        # Scores stamped when a second first closed, so a revision keeps them.
        self._stamped: dict[tuple[str, int], Scores | None] = {}
        self._revision_window = revision_window

    def work(self) -> None:
        next_close = 0.0
        while True:
            try:
                batch = self.inbox.get(timeout=CLOSE_INTERVAL)
            except queue.Empty:
                batch = None
            out = WriteBatch()
            if not self.control.empty():
                self._obey()
            if batch is not None:
                self.ingest(batch, out)
            now = self.clock.now()
            if now >= next_close:
                self.close(now, out)
                next_close = now + CLOSE_INTERVAL
            if out:
                self.outbox.put(out)
            if self.stop.is_set() and self.upstream_done() and self.inbox.empty():
                self.finish()
                return

    def ingest(self, batch: list[Trade], out: WriteBatch) -> None:
        now = self.clock.now()
        add_second, add_tick = self.seconds.add, self.ticks.add
        start_ms = self.start_second * 1000
        for trade in batch:
            if trade.ts_ms >= start_ms:
                add_second(trade, now)
            else:
                self.before_start += 1
            candle = add_tick(trade)
            if candle is not None:
                out.candles.append(candle)
        if self.verbose and (self.trades + len(batch)) // 50 > self.trades // 50:
            trade = batch[-1]
            logger.info(
                "🔹 trade #%d %s %s x %s at %d",
                self.trades + len(batch),
                trade.symbol,
                trade.price,
                trade.size,
                trade.ts_ms,
            )
        self.trades += len(batch)
        self.candles += len(out.candles)
        if self.sentiment_inbox is not None and batch:
            # The receiver hands over a list of its own; no copy needed.
            self._to_sentiment(("trades", batch))

    def close(
        self, now: float, out: WriteBatch, scores_at: float | None = None
    ) -> None:
        bars = self.seconds.close_until(now)
        scores_at = now if scores_at is None else scores_at
        if not bars:
            return
        stamped = self._stamped
        closes = []
        for bar in bars:
            key = (bar.symbol, bar.second)
            if bar.revision and key in stamped:
                scores = stamped[key]
            else:
                scores = self.scores.latest(bar.symbol, scores_at)
                stamped[key] = scores
                closes.append((bar.symbol, bar.second, bar.close))
            out.bars.append((bar, scores))
        if closes:
            self._to_sentiment(("closes", closes))
        # Forget stamps for seconds that can no longer be revised.
        horizon = scores_at - self._revision_window - 60
        if len(stamped) > 1000:
            for key in [k for k in stamped if k[1] < horizon]:
                del stamped[key]

    def finish(self) -> None:
        """Shutdown: every open second is closed and handed on, then FINISHED."""
        out = WriteBatch()
        self.close(math.inf, out, scores_at=self.clock.now())
        if out:
            self.outbox.put(out)
        self.outbox.put(FINISHED)
        if self.save_partial is not None and self.ticks.pending_count():
            self.save_partial(self.ticks)
        logger.info(
            "aggregator finished: %d trades, %d bars, %d revisions, %d 100-trade bars",
            self.trades,
            self.seconds.bars_closed,
            self.seconds.revisions,
            self.candles,
        )

    def _obey(self) -> None:
        while True:
            try:
                order, numbers = self.control.get_nowait()
            except queue.Empty:
                return
            if order == "resync candles":
                # The old leader's partial candle died with it; numbering resumes
                # after the last stored candle, from the next trade on.
                for symbol, number in numbers.items():
                    self.ticks.restore(symbol, [])
                    self.ticks.set_next_number(symbol, number)

    def _to_sentiment(self, item) -> None:
        try:
            self.sentiment_inbox.put_nowait(item)
        except queue.Full:
            # Sentiment is best effort; bars never wait for it.
            self.sentiment_dropped += 1
