"""The aggregator: owns the bar builders (through the pipeline's Ingest), closes
bars on time, stamps them with the latest scores, and publishes them to the
outputs."""

import logging
import math
import queue
import threading
from collections.abc import Callable

from api.collector.outputs import Fanout
from api.market.bars import TickBars, watermark
from api.market.messages import Trade
from api.pipeline.ingest import Ingest
from api.pipeline.kinds import SECOND
from api.pipeline.messages import (
    FINISHED,
    Bars,
    Closes,
    Progress,
    Renumber,
    Trades,
    Watch,
)
from api.sentiment.holder import LatestScores
from api.sentiment.scoring import Scores
from api.workers.clock import Clock
from api.workers.worker import Worker

logger = logging.getLogger(__name__)

CLOSE_INTERVAL = 0.1  # how often open bars are checked for closing


class Aggregator(Worker):
    def __init__(
        self,
        *,
        inbox: queue.Queue,
        fanout: Fanout,
        stop: threading.Event,
        upstream_done: Callable[[], bool],
        scores: LatestScores,
        ingest: Ingest,
        clock: Clock | None = None,
        verbose: bool = False,
        save_partial: Callable[[TickBars | None, dict], None] | None = None,
    ) -> None:
        super().__init__("aggregator", stop)
        self.inbox = inbox
        self.fanout = fanout
        self.upstream_done = upstream_done
        self.scores = scores
        self.clock = clock or Clock()
        self.ingest = ingest
        self.save_partial = save_partial
        # Orders from other threads (Renumber after a standby became the writer).
        self.control: queue.Queue = queue.Queue()
        self.verbose = verbose
        self.candles = 0
        self._progress = -math.inf  # the last Progress published
        # Scores stamped when a bar first closed, so a revision keeps them.
        self._stamped: dict[tuple, Scores | None] = {}
        self._forget_after = (
            max((k.width for k in ingest.timed), default=1)
            + ingest.seconds.revision_window
            + 60
        )

    @property
    def seconds(self):
        return self.ingest.seconds

    @property
    def ticks(self) -> TickBars | None:
        return self.ingest.ticks

    @property
    def start_second(self) -> int:
        return int(self.ingest.start_second)

    @property
    def trades(self) -> int:
        return self.ingest.trades

    @property
    def before_start(self) -> int:
        return self.ingest.before_start

    def work(self) -> None:
        next_close = 0.0
        while True:
            try:
                message = self.inbox.get(timeout=CLOSE_INTERVAL)
            except queue.Empty:
                message = None
            out = Bars()
            if not self.control.empty():
                self._obey()
            if type(message) is Watch:
                # Coverage (api/collector/coverage.py): in order with the bars.
                if out:
                    self.fanout.publish(out)
                    out = Bars()
                self.fanout.publish(message)
            elif message is not None:
                self.take(message.trades, out)
            now = self.clock.now()
            if now >= next_close:
                self.close(now, out)
                next_close = now + CLOSE_INTERVAL
            if out:
                self.fanout.publish(out)
            through = watermark(now, 1, self.seconds.grace)
            if through >= self._progress + 1:
                self._progress = through
                self.fanout.publish(Progress(through))
            if self.stop.is_set() and self.upstream_done() and self.inbox.empty():
                self.finish()
                return

    def take(self, batch: list, out: Bars) -> None:
        before = self.ingest.trades
        for kind, done in self.ingest.add(batch, self.clock.now()).items():
            out.by_kind.setdefault(kind, []).extend(done)
            self.candles += len(done)
        if self.verbose and (before + len(batch)) // 50 > before // 50:
            last = batch[-1]
            if type(last) is Trade:
                what = f"trade #{before + len(batch)} {last.symbol} {last.price} x "
                what += f"{last.size}"
            else:
                what = f"quote #{before + len(batch)} {last.symbol} {last.bid}/"
                what += f"{last.ask}"
            logger.info("🔹 %s at %d", what, last.ts_ms)
        if batch and type(batch[0]) is Trade:
            # Trades go on to sentiment (a quote stream's batches do not). The
            # receiver hands over a list of its own; no copy needed.
            self.fanout.publish(Trades(batch))

    def close(self, now: float, out: Bars, scores_at: float | None = None) -> None:
        scores_at = now if scores_at is None else scores_at
        stamped = self._stamped
        closes = []
        for kind, bars in self.ingest.close(now).items():
            items = out.by_kind.setdefault(kind, [])
            for bar in bars:
                key = (kind, bar.symbol, bar.second)
                if bar.revision and key in stamped:
                    scores = stamped[key]
                else:
                    scores = self.scores.latest(bar.symbol, scores_at)
                    stamped[key] = scores
                    if kind is SECOND and bar.close is not None:
                        # (A second of odd lots only has no close: nothing to
                        # tell the momentum.)
                        closes.append((bar.symbol, bar.second, bar.close))
                items.append((bar, scores))
        if closes:
            self.fanout.publish(Closes(closes))
        # Forget stamps for bars that can no longer be revised.
        if len(stamped) > 1000:
            horizon = scores_at - self._forget_after
            for key in [k for k in stamped if k[2] < horizon]:
                del stamped[key]

    def finish(self) -> None:
        """Shutdown: every open bar is closed and handed on, then FINISHED; what
        the next run continues from is saved."""
        now = self.clock.now()
        partials = self.ingest.partials(now)
        out = Bars()
        self.close(math.inf, out, scores_at=now)
        if out:
            self.fanout.publish(out)
        self.fanout.publish(FINISHED)
        ticks = self.ticks
        if self.save_partial is not None and (
            (ticks is not None and ticks.pending_count()) or partials
        ):
            self.save_partial(ticks, partials)
        logger.info(
            "aggregator finished: %d trades and quotes, %d bars, %d revisions, "
            "%d 100-trade bars",
            self.ingest.trades,
            self.seconds.bars_closed,
            self.seconds.revisions,
            self.candles,
        )

    def _obey(self) -> None:
        while True:
            try:
                order = self.control.get_nowait()
            except queue.Empty:
                return
            if isinstance(order, Renumber):
                self.ingest.renumber(order.next_numbers)
