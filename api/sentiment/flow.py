"""Order-flow imbalance over a sliding window, kept incrementally (PURE).

scoring.order_flow() recomputes from a list; at thousands of trades a second the
worker cannot rescan a minute of trades every second, so this keeps running sums
and only touches each trade twice: when it arrives and when it leaves the window.
"""

from collections import deque


class FlowWindow:
    def __init__(self, window: float = 60.0, max_trades: int = 500_000) -> None:
        self.window = window
        # (ts, signed volume): + buy, - sell. Bounded so a flood cannot exhaust memory.
        self._trades: deque[tuple[float, float]] = deque(maxlen=max_trades)
        self._buy = 0.0
        self._sell = 0.0
        self._last_price: float | None = None
        self._last_side = 0  # +1 buy, -1 sell, 0 not yet known

    def add(self, ts: float, price: float, size: float) -> None:
        """Classify by the tick rule: up = buy, down = sell, unchanged = previous."""
        last = self._last_price
        if last is not None:
            if price > last:
                self._last_side = 1
            elif price < last:
                self._last_side = -1
        self._last_price = price
        side = self._last_side
        if side == 0 or size <= 0:
            return
        if len(self._trades) == self._trades.maxlen:
            self._forget(*self._trades[0])
        signed = size if side > 0 else -size
        self._trades.append((ts, signed))
        if side > 0:
            self._buy += size
        else:
            self._sell += size

    def _forget(self, ts: float, signed: float) -> None:
        if signed > 0:
            self._buy -= signed
        else:
            self._sell += signed

    def score(self, now: float) -> float | None:
        """(buy - sell) / (buy + sell) * 100 over the last `window` seconds."""
        trades, horizon = self._trades, now - self.window
        while trades and trades[0][0] < horizon:
            self._forget(*trades.popleft())
        if not trades:
            # Running sums drift by float rounding; an empty window resets them.
            self._buy = self._sell = 0.0
            return None
        total = self._buy + self._sell
        if total <= 0:
            return None
        return max(-100.0, min(100.0, (self._buy - self._sell) / total * 100.0))
