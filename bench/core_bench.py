"""Micro-benchmark of the pure market core: parse + 1-second bars + 100-trade bars.

Run from the repository root:  .venv/bin/python bench/core_bench.py [--n N]
"""

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.market.bars import TickBars, TimeBars  # noqa: E402
from api.market.messages import Trade, parse_frame  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "META", "GOOG", "AMD", "NFLX", "SPY"]
START_MS = 1_790_329_200_000
RATE = 10_000  # trades per second of event time


def make_frames(n: int, seed: int = 7) -> list[bytes]:
    """Pre-encoded `us` trade frames, slightly out of timestamp order."""
    rng = random.Random(seed)
    prices = {s: rng.uniform(20, 900) for s in SYMBOLS}
    statuses = ['"open"', '"extended-hours"']
    frames = []
    for i in range(n):
        symbol = rng.choice(SYMBOLS)
        prices[symbol] = max(1.0, prices[symbol] * (1 + rng.gauss(0, 0.0002)))
        price = round(prices[symbol], rng.choice((2, 2, 2, 3, 4)))
        if rng.random() < 0.1:
            size = str(round(rng.uniform(0.001, 5), 3))  # fractional shares
        else:
            size = str(rng.choice((1, 1, 5, 10, 50, 100, 200, 500)))
        # Stamps trail arrival by up to 40 ms, one in 50 by up to 1.5 s and one
        # in 2,000 by up to 8 s (a revision of an already closed second).
        if i % 2000 == 0:
            late = rng.randint(3000, 8000)
        else:
            late = rng.randint(0, 1500 if i % 50 == 0 else 40)
        ts = START_MS + i * 1000 // RATE - late
        cond = rng.choice(("[]", "[14,41]", "[37]", "[12,37,41]"))
        ms = rng.choice(statuses)
        frames.append(
            (
                f'{{"s":"{symbol}","p":{price},"c":{cond},"v":{size},'
                f'"dp":false,"ms":{ms},"t":{ts}}}'
            ).encode()
        )
    return frames


def bench_parse(frames: list[bytes]) -> float:
    parse = parse_frame
    start = time.perf_counter()
    for frame in frames:
        parse(frame)
    return time.perf_counter() - start


def bench_all(frames: list[bytes]) -> tuple[float, TimeBars, int]:
    seconds, ticks = TimeBars(), TickBars()
    parse, add_second, add_tick = parse_frame, seconds.add, ticks.add
    candles = 0
    bars = 0
    start = time.perf_counter()
    # Simulated wall clock: event time plus a little latency; closes once a second.
    now = START_MS / 1000
    next_close = now + 1
    for i, frame in enumerate(frames):
        trade = parse(frame)
        if type(trade) is not Trade:
            continue
        if i % 100 == 0:
            now = START_MS / 1000 + i / RATE + 0.05
            if now >= next_close:
                bars += len(seconds.close_until(now))
                next_close += 1
        add_second(trade, now)
        if add_tick(trade) is not None:
            candles += 1
    bars += len(seconds.close_until(now + 3600))
    elapsed = time.perf_counter() - start
    return elapsed, seconds, bars + candles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    frames = make_frames(args.n)
    parse_s = bench_parse(frames)
    total_s, seconds, emitted = bench_all(frames)
    n = len(frames)
    print(f"frames: {n}, bars+candles emitted: {emitted}")
    print(
        f"late trades merged: {seconds.late_trades}, revisions: {seconds.revisions}, "
        f"dropped: {seconds.dropped_too_late}"
    )
    print(f"parse only:            {parse_s / n * 1e6:.2f} us/trade")
    print(f"parse + both builders: {total_s / n * 1e6:.2f} us/trade")
    print(f"RESULT us_per_trade={total_s / n * 1e6:.2f}")


if __name__ == "__main__":
    main()
