"""When the collector should be connected: the NYSE session, the FX week
(forex: Sunday 17:00 to Friday 17:00 New York), or always."""

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
        self,
        *,
        always_open: bool,
        extended: bool = False,
        clock: Clock | None = None,
        fx: bool = False,
    ) -> None:
        self.always_open = always_open
        self.extended = extended
        self.clock = clock or Clock()
        self.fx = fx

    def _open_at(self, at: datetime) -> bool:
        if self.fx:
            return calendar.fx_is_open(at)
        return calendar.is_open(at, extended=self.extended)

    def _next_open(self, at: datetime) -> datetime:
        if self.fx:
            return calendar.fx_next_open(at)
        return calendar.next_open(at, extended=self.extended)

    def _next_close(self, at: datetime) -> datetime:
        if self.fx:
            return calendar.fx_next_close(at)
        return calendar.next_close(at, extended=self.extended)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), tz=UTC)

    def is_open(self) -> bool:
        return self.always_open or self._open_at(self._now())

    def status_line(self) -> str:
        if self.always_open:
            return "market hours not checked (collecting at any hour)"
        now = self._now()
        if self._open_at(now):
            close = self._next_close(now)
            return f"market open until {close:%Y-%m-%d %H:%M} UTC"
        nxt = self._next_open(now)
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
            nxt = self._next_open(now)
            wait = (nxt - now).total_seconds()
            if not announced:
                logger.info("🌙 %s: waiting", self.status_line())
                announced = True
            if self.clock.wait(stop, min(max(wait, 0.0), MAX_WAIT)):
                return False
        return False
