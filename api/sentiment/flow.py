"""Order-flow imbalance over a sliding window, kept incrementally (PURE).

scoring.order_flow() recomputes from a list; at thousands of trades a second the
worker cannot rescan a minute of trades every second, so this keeps running sums
and only touches each trade twice: when it arrives and when it leaves the window.
"""

from array import array

COMPACT_AFTER = 4096  # forgotten slots at the front before the arrays shrink


class FlowWindow:
    def __init__(self, window: float = 60.0, max_trades: int = 500_000) -> None:
        self.window = window
        self.max_trades = max_trades  # a flood cannot exhaust memory
        # The trades in the window as two parallel arrays of 8-byte floats - the
        # stamp and the signed volume (+ buy, - sell) - from index _head on:
        # 16 bytes a trade, where a tuple per trade costs about 100.
        self._ts = array("d")
        self._signed = array("d")
        self._head = 0
        self._buy = 0.0
        self._sell = 0.0
        self._last_price: float | None = None
        self._last_side = 0  # +1 buy, -1 sell, 0 not yet known

    def __len__(self) -> int:
        """Trades in the window (as of the last score())."""
        return len(self._ts) - self._head

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
        if len(self._ts) - self._head >= self.max_trades:
            self._forget_until(self._head + 1)
        self._ts.append(ts)
        if side > 0:
            self._signed.append(size)
            self._buy += size
        else:
            self._signed.append(-size)
            self._sell += size

    def _forget_until(self, end: int) -> None:
        """Take the trades before index `end` out of the sums and the window."""
        signed = self._signed
        buy = sell = 0.0
        for i in range(self._head, end):
            v = signed[i]
            if v > 0:
                buy += v
            else:
                sell -= v
        self._buy -= buy
        self._sell -= sell
        self._head = end
        if end >= COMPACT_AFTER and 2 * end >= len(self._ts):
            del self._ts[:end]
            del signed[:end]
            self._head = 0

    def score(self, now: float) -> float | None:
        """(buy - sell) / (buy + sell) * 100 over the last `window` seconds."""
        ts, horizon = self._ts, now - self.window
        end, n = self._head, len(ts)
        while end < n and ts[end] < horizon:
            end += 1
        if end > self._head:
            self._forget_until(end)
        if self._head == len(self._ts):
            # Running sums drift by float rounding; an empty window resets them.
            self._buy = self._sell = 0.0
            return None
        total = self._buy + self._sell
        if total <= 0:
            return None
        return max(-100.0, min(100.0, (self._buy - self._sell) / total * 100.0))
