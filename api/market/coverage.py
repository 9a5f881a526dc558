"""Observed time as intervals, and the gaps between them. Pure: no I/O, no clock.

Times are epoch seconds (floats) or datetimes - anything ordered. An interval is
[start, end). A gap is time inside a window that no interval covers. A second
that an interval edge cuts (the interval begins or ends inside it) was partly
observed: its bar may miss prints, and a backfill may complete it.
"""

import math
from collections.abc import Iterable

# The receiver's words for why a connection ended -> the stored reason
# (api.models.EndReason).
REASONS = {
    "stopped": "shutdown",
    "market closed": "market_close",
    "stale": "stale",
    "symbol silent": "stale",  # one symbol stopped while the others streamed
    "unsubscribed": "unsubscribed",  # taken off the collector (a universe edit)
}


def end_reason(words: str) -> str:
    """Any other end (dropped, refused, pong timeout, ...) is a reconnect."""
    return REASONS.get(words, "reconnect")


def merge(intervals: Iterable[tuple]) -> list[tuple]:
    """Overlapping or touching intervals joined, in order; empty ones dropped."""
    out: list[list] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1][1] = end
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def gaps(start, end, intervals: Iterable[tuple]) -> list[tuple]:
    """The parts of [start, end) no interval covers, in order."""
    out = []
    at = start
    for s, e in merge(intervals):
        if e <= at:
            continue
        if s >= end:
            break
        if s > at:
            out.append((at, s))
        at = max(at, e)
    if at < end:
        out.append((at, end))
    return out


def partial_seconds(intervals: Iterable[tuple[float, float]]) -> set[int]:
    """Whole seconds (epoch) that an edge of the merged intervals cuts: observed
    only in part."""
    out = set()
    for s, e in merge(intervals):
        if s != math.floor(s):
            out.add(math.floor(s))
        if e != math.floor(e):
            out.add(math.floor(e))
    return out


def unobserved_seconds(
    start: int, end: int, intervals: Iterable[tuple[float, float]]
) -> list[tuple[int, int]]:
    """The whole seconds in [start, end) (epoch) not observed in full, as
    [first, last + 1) runs: the gaps widened to whole seconds, which are what a
    backfill may rebuild."""
    merged = merge(intervals)
    runs = []
    for s, e in gaps(start, end, merged):
        runs.append((math.floor(s), math.ceil(e)))
    for second in partial_seconds(merged):
        if start <= second < end:
            runs.append((second, second + 1))
    return merge(runs)
