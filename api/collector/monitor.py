"""The health monitor: notices a silent connection and heals it; logs a health
line every minute."""

import logging
import threading
from collections.abc import Callable

from api.collector.feed import Receiver
from api.collector.session import SessionGate
from api.market.health import Observation, Verdict, judge
from api.workers.clock import Clock
from api.workers.worker import Worker

logger = logging.getLogger(__name__)


# Worst first: the verdict reported when streams disagree.
_SEVERITY = {"failing": 0, "degraded": 1, "ok": 2}


class HealthMonitor(Worker):
    """Judges each stream (its connection, with the writer's state) and heals a
    silent one; the collector's health is the worst stream's."""

    def __init__(
        self,
        *,
        feeds: list[tuple[Receiver, SessionGate]],
        stop: threading.Event,
        stale_after: float,
        summary: Callable[[], str],
        observe_extra: Callable[[], dict] | None = None,
        check_interval: float = 10.0,
        log_interval: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__("health", stop)
        self.feeds = feeds
        self.stale_after = stale_after
        self.summary = summary
        self.observe_extra = observe_extra or dict
        self.check_interval = check_interval
        self.log_interval = log_interval
        self.clock = clock or feeds[0][0].clock  # one clock for the whole collector
        self.stale_reconnects = 0
        self.last_verdict: Verdict | None = None

    def observe(self, receiver: Receiver, gate: SessionGate) -> Observation:
        connected_for = None
        if receiver.connected and receiver.connected_at is not None:
            connected_for = self.clock.monotonic() - receiver.connected_at
        return Observation(
            market_open=gate.is_open(),
            connected=receiver.connected,
            seconds_since_data=receiver.seconds_since_data(),
            seconds_connected=connected_for,
            stale_after=self.stale_after,
            **self.observe_extra(),
        )

    def verdicts(self) -> list[tuple[Receiver | None, Verdict]]:
        """Each connection with symbols to collect; with none at all, the
        collector's own (the writer judged, the feed idle)."""
        judged = [
            (r, judge(self.observe(r, gate)))
            for r, gate in list(self.feeds)
            if r.symbols
        ]
        if judged:
            return judged
        idle = Observation(
            market_open=True,
            connected=False,
            seconds_since_data=None,
            seconds_connected=None,
            stale_after=self.stale_after,
            idle=True,
            **self.observe_extra(),
        )
        return [(None, judge(idle))]

    def verdict(self) -> Verdict:
        """The worst stream's verdict (the first stream's when all agree)."""
        judged = [verdict for _, verdict in self.verdicts()]
        return min(judged, key=lambda v: _SEVERITY[v.severity])

    def check(self) -> Verdict:
        """One health check; forces a reconnect of each stream that went silent."""
        judged = self.verdicts()
        for receiver, verdict in judged:
            if verdict.stale and receiver is not None:
                self.stale_reconnects += 1
                logger.warning(
                    "💓 %s: %s: forcing a reconnect", receiver.name, verdict.reason
                )
                receiver.request_reconnect("stale")
        worst = min((v for _, v in judged), key=lambda v: _SEVERITY[v.severity])
        self.last_verdict = worst
        return worst

    def work(self) -> None:
        next_log = self.clock.monotonic() + self.log_interval
        while not self.stop.wait(self.check_interval):
            verdict = self.check()
            if self.clock.monotonic() >= next_log:
                next_log += self.log_interval
                logger.info("💓 %s | %s", verdict.state, self.summary())
