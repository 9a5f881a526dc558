"""When the collector should be connected: the NYSE session, or always."""

import logging
import threading
from datetime import UTC, datetime

from api.market import calendar
from api.workers.clock import Clock

logger = logging.getLogger(__name__)

# Re-check at least this often while waiting, in case the wall clock was adjusted.
MAX_WAIT = 3600.0


def _fmt_wait(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    parts.append(f"{minutes}m")
    return " ".join(parts)


class SessionGate:
    """Answers "should we be connected now?" and waits, interruptibly, until then."""

    def __init__(
        self, *, always_open: bool, extended: bool = False, clock: Clock | None = None
    ) -> None:
        self.always_open = always_open
        self.extended = extended
        self.clock = clock or Clock()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), tz=UTC)

    def is_open(self) -> bool:
        return self.always_open or calendar.is_open(self._now(), extended=self.extended)

    def status_line(self) -> str:
        if self.always_open:
            return "market hours not checked (collecting at any hour)"
        now = self._now()
        if calendar.is_open(now, extended=self.extended):
            close = calendar.next_close(now, extended=self.extended)
            return f"market open until {close:%Y-%m-%d %H:%M} UTC"
        nxt = calendar.next_open(now, extended=self.extended)
        wait = (nxt - now).total_seconds()
        return (
            f"market closed; next open {nxt:%Y-%m-%d %H:%M} UTC (in {_fmt_wait(wait)})"
        )

    def wait_until_open(self, stop: threading.Event) -> bool:
        """Return True once the session is open, False if stop was set first."""
        announced = False
        while not stop.is_set():
            if self.is_open():
                return True
            now = self._now()
            nxt = calendar.next_open(now, extended=self.extended)
            wait = (nxt - now).total_seconds()
            if not announced:
                logger.info("🌙 %s: waiting", self.status_line())
                announced = True
            if self.clock.wait(stop, min(max(wait, 0.0), MAX_WAIT)):
                return False
        return False
