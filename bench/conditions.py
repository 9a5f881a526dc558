"""What the trade-condition rules change, and what they cost.

A simulated trading day (Monday 21 September 2026: pre-market, regular session,
after-hours) for a liquid, a middling and a thin symbol, with the simulator's
condition mix (api.simulator.server.CONDITION_WEIGHTS: odd lots on most prints
under 100 shares, Form T outside regular hours, ...). The same trades are built
into bars twice by the collector's own ingest (api.pipeline.ingest.Ingest):
--conditions all (every print) and --conditions eodhd (EODHD's table). Printed:

- per session and symbol, the share of 1-second bars whose open, high/low, close
  or volume differ between the two, and the share left without prices;
- the same for 1-minute and 100-trade bars;
- the cost: parse + ingest per trade under each mode, best of --repeat runs
  interleaved, and their ratio (one run, one machine: a ratio, not a target).

Run from the repository root:  .venv/bin/python bench/conditions.py [--scale X]
"""

import argparse
import math
import os
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.market.messages import Trade, parse_frame  # noqa: E402
from api.simulator.server import (  # noqa: E402
    CONDITION_CUMULATIVE,
    CONDITION_SETS,
)

DAY = datetime(2026, 9, 21, tzinfo=UTC)  # a Monday; New York is UTC-4
SESSIONS = {  # UTC hours
    "pre-market": (8.0, 13.5),
    "regular": (13.5, 20.0),
    "after-hours": (20.0, 24.0),
}
STATUS = {  # what EODHD's `ms` says then
    "pre-market": "extended-hours",
    "regular": "open",
    "after-hours": "extended-hours",
}
# Trades per second in the regular session; extended hours trade a tenth.
SYMBOLS = {"LIQD": 20.0, "MIDL": 3.0, "THIN": 0.3}
EXTENDED_SHARE = 0.1


def make_frames(scale: float, seed: int = 11) -> list[tuple[float, bytes]]:
    """(arrival time, frame) in arrival order."""
    rng = random.Random(seed)
    out = []
    for symbol, rate in SYMBOLS.items():
        price = 100.0
        for name, (start_h, end_h) in SESSIONS.items():
            table = "regular" if name == "regular" else "extended"
            per_second = rate * scale * (1 if name == "regular" else EXTENDED_SHARE)
            t = DAY.timestamp() + start_h * 3600
            end = DAY.timestamp() + end_h * 3600
            while True:
                t += rng.expovariate(per_second)
                if t >= end:
                    break
                price = max(1.0, price * (1 + rng.gauss(0, 3e-4)))
                if rng.random() < 0.45:
                    size = rng.randint(1, 99)
                else:
                    size = 100 * rng.choice((1, 1, 1, 2, 3, 5, 10))
                codes = list(
                    rng.choices(
                        CONDITION_SETS[table], cum_weights=CONDITION_CUMULATIVE[table]
                    )[0]
                )
                if size < 100 and 37 not in codes and rng.random() < 0.9:
                    codes.append(37)
                ts = int(t * 1000) - rng.randint(0, 40)
                frame = (
                    f'{{"s":"{symbol}","p":{round(price, 2)},"c":{sorted(codes)},'
                    f'"v":{size},"dp":false,"ms":"{STATUS[name]}","t":{ts}}}'
                ).encode()
                out.append((t + 0.02, frame))
    out.sort(key=lambda item: item[0])
    return out


def build(frames, conditions: str):
    """Every bar of each kind, by key; and the seconds this took."""
    from api.pipeline.ingest import Ingest

    ingest = Ingest(conditions=conditions)
    bars: dict = defaultdict(dict)
    started = time.perf_counter()
    next_close = -math.inf
    batch: list[Trade] = []
    for arrival, data in frames:
        trade = parse_frame(data)
        if type(trade) is Trade:
            batch.append(trade)
        if len(batch) >= 64 or arrival >= next_close:
            for kind, done in ingest.add(batch, arrival).items():
                for bar in done:
                    bars[kind.name][(bar.symbol, bar.number)] = bar
            batch = []
        if arrival >= next_close:
            for kind, done in ingest.close(arrival).items():
                for bar in done:
                    bars[kind.name][(bar.symbol, bar.second)] = bar
            next_close = math.floor(arrival) + 1
    for kind, done in ingest.add(batch, math.inf).items():
        for bar in done:
            bars[kind.name][(bar.symbol, bar.number)] = bar
    for kind, done in ingest.finish().items():
        for bar in done:
            bars[kind.name][(bar.symbol, bar.second)] = bar
    return bars, time.perf_counter() - started, ingest.rules


def session_of(bar) -> str:
    hour = (bar.first_ts_ms / 1000 - DAY.timestamp()) / 3600
    for name, (start_h, end_h) in SESSIONS.items():
        if start_h <= hour < end_h:
            return name
    return "other"


def compare(every: dict, ruled: dict, group) -> dict:
    """{group: (bars, open, high/low, close, volume, no prices)} as counts."""
    out: dict = defaultdict(lambda: [0] * 6)
    for key, a in every.items():
        b = ruled[key]
        row = out[group(a)]
        row[0] += 1
        row[1] += a.open != b.open
        row[2] += (a.high, a.low) != (b.high, b.low)
        row[3] += a.close != b.close
        row[4] += a.volume != b.volume
        row[5] += b.high is None
    return out


def show(title: str, table: dict) -> None:
    print(f"\n{title}")
    print(
        f"  {'':<24}{'bars':>8}{'open':>8}{'high/low':>10}{'close':>8}"
        f"{'volume':>8}{'no price':>10}"
    )
    for name in sorted(table):
        n, o, hl, c, v, none = table[name]
        pct = [100 * x / n if n else 0 for x in (o, hl, c, v, none)]
        print(
            f"  {name:<24}{n:>8}{pct[0]:>7.1f}%{pct[1]:>9.1f}%{pct[2]:>7.1f}%"
            f"{pct[3]:>7.1f}%{pct[4]:>9.1f}%"
        )


def main() -> None:
    # The ingest's bar kinds name their models: Django must be set up (no
    # database is touched).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    os.environ.setdefault("DATABASE_URL", "sqlite:///:memory:")
    import django

    django.setup()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every trade rate"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per mode")
    args = parser.parse_args()
    frames = make_frames(args.scale)
    trades = len(frames)
    codes = sum(b'"c":[]' not in f for _, f in frames)
    print(f"trades: {trades} ({100 * codes / trades:.1f}% carry condition codes)")

    every, _, _ = build(frames, "all")
    ruled, _, rules = build(frames, "eodhd")
    print(
        f"prints the rules restrict: {rules.ineligible} "
        f"({100 * rules.ineligible / trades:.1f}%)"
    )
    for kind in ("second", "minute", "tick100"):
        assert every[kind].keys() == ruled[kind].keys(), kind
    show(
        "1-second bars: share that differ (eodhd vs all), by session and symbol",
        compare(
            every["second"],
            ruled["second"],
            lambda bar: f"{session_of(bar)} {bar.symbol}",
        ),
    )
    show(
        "1-minute bars, by session",
        compare(every["minute"], ruled["minute"], session_of),
    )
    show(
        "100-trade bars, by symbol",
        compare(every["tick100"], ruled["tick100"], lambda bar: bar.symbol),
    )

    timings: dict = {"all": [], "eodhd": []}
    for _ in range(args.repeat):
        for mode in timings:
            timings[mode].append(build(frames, mode)[1])
    best = {mode: min(values) for mode, values in timings.items()}
    print("\ncost: parse + ingest (1-second, 1-minute and 100-trade builders)")
    for mode, seconds in best.items():
        print(
            f"  {mode:<6} {seconds / trades * 1e6:6.2f} us/trade "
            f"(best of {args.repeat})"
        )
    print(f"RESULT eodhd_over_all={best['eodhd'] / best['all']:.3f}")


if __name__ == "__main__":
    main()
