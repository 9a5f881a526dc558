"""Rate-limited logging for repeated problems, so a broken feed or database can
never flood the log."""

import logging


class LogThrottle:
    """Logs the first occurrence of a key, then at most once per `interval` seconds
    with the number of occurrences suppressed in between."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, now: float, msg: str, *args) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        if suppressed:
            msg += " (repeated %d times in the last %.0f s)"
            args = (*args, suppressed, now - last)
        self.logger.log(level, msg, *args)
        return True
