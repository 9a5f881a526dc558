"""Time for the collector, injected everywhere so tests can run a whole session
faster than real time: `now()` is wall-clock (market) time, `monotonic()` measures
real durations (bounds on I/O, health ages), `wait()` sleeps until an event."""

import threading
import time


class Clock:
    """Real time: epoch seconds, and waits that a stop event interrupts."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        """Real seconds from an arbitrary start; never jumps with the wall clock.
        A scaled clock keeps it real: I/O bounds do not shrink with test speed."""
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to `seconds` of this clock's time; True if the event was set."""
        return event.wait(max(0.0, seconds))


class ScaledClock(Clock):
    """Time that starts at `start` and runs `speed` times faster than real time."""

    def __init__(self, start: float, speed: float = 1.0) -> None:
        self.start = start
        self.speed = speed
        self._origin = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._origin) * self.speed

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds) / self.speed)
