"""A test clock that can jump ahead, so a whole weekend passes in a second."""

import threading
import time

from api.workers.clock import Clock


class SteerableClock(Clock):
    def __init__(self, start: float) -> None:
        self._lock = threading.Lock()
        self._base = start
        self._origin = time.monotonic()

    def now(self) -> float:
        with self._lock:
            return self._base + (time.monotonic() - self._origin)

    def jump(self, to: float) -> None:
        with self._lock:
            self._base = to
            self._origin = time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        # Poll in short real slices so a jump ends a long wait at once.
        target = self.now() + seconds
        while self.now() < target:
            if event.wait(0.02):
                return True
        return event.is_set()
