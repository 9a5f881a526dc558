"""The hand-over point between the sentiment worker and the aggregator: the latest
scores per symbol, read without waiting."""

import threading

from api.sentiment.scoring import Scores


class LatestScores:
    def __init__(self, max_age: float = 5.0) -> None:
        # Scores older than this are not stamped on a bar: a stalled sentiment
        # worker must give NULLs, not yesterday's numbers.
        self.max_age = max_age
        self._lock = threading.Lock()
        self._scores: dict[str, Scores] = {}

    def publish(self, symbol: str, scores: Scores) -> None:
        with self._lock:
            self._scores[symbol] = scores

    def latest(self, symbol: str, now: float) -> Scores | None:
        with self._lock:
            scores = self._scores.get(symbol)
        if scores is None or now - scores.computed_at > self.max_age:
            return None
        return scores

    def forget(self, symbol: str) -> None:
        """The last computation failed: nothing known until the next one."""
        with self._lock:
            self._scores.pop(symbol, None)
