"""The health monitor: notices a silent connection and heals it; logs a health
line every minute."""

import logging
import threading
from collections.abc import Callable

from api.collector.feed import Receiver
from api.collector.session import SessionGate
from api.market.health import Observation, Verdict, judge
from api.workers.worker import Worker

logger = logging.getLogger(__name__)


class HealthMonitor(Worker):
    def __init__(
        self,
        *,
        receiver: Receiver,
        gate: SessionGate,
        stop: threading.Event,
        stale_after: float,
        summary: Callable[[], str],
        observe_extra: Callable[[], dict] | None = None,
        check_interval: float = 10.0,
        log_interval: float = 60.0,
    ) -> None:
        super().__init__("health", stop)
        self.receiver = receiver
        self.gate = gate
        self.stale_after = stale_after
        self.summary = summary
        self.observe_extra = observe_extra or dict
        self.check_interval = check_interval
        self.log_interval = log_interval
        self.clock = receiver.clock  # one clock for the whole collector
        self.stale_reconnects = 0
        self.last_verdict: Verdict | None = None

    def observe(self) -> Observation:
        receiver = self.receiver
        connected_for = None
        if receiver.connected and receiver.connected_at is not None:
            connected_for = self.clock.monotonic() - receiver.connected_at
        return Observation(
            market_open=self.gate.is_open(),
            connected=receiver.connected,
            seconds_since_data=receiver.seconds_since_data(),
            seconds_connected=connected_for,
            stale_after=self.stale_after,
            **self.observe_extra(),
        )

    def check(self) -> Verdict:
        """One health check; forces a reconnect when the feed went silent."""
        verdict = judge(self.observe())
        self.last_verdict = verdict
        if verdict.stale:
            self.stale_reconnects += 1
            logger.warning("💓 %s: forcing a reconnect", verdict.reason)
            self.receiver.request_reconnect("stale")
        return verdict

    def work(self) -> None:
        next_log = self.clock.monotonic() + self.log_interval
        while not self.stop.wait(self.check_interval):
            verdict = self.check()
            if self.clock.monotonic() >= next_log:
                next_log += self.log_interval
                logger.info("💓 %s | %s", verdict.state, self.summary())
