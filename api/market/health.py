"""Judging the collector's health from its counters: a pure function."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Observation:
    market_open: bool
    connected: bool
    seconds_since_data: float | None  # on the current connection; None if none yet
    seconds_connected: float | None
    stale_after: float
    bars_waiting: int = 0
    max_waiting: int = 0  # 0: no limit judged
    seconds_since_commit: float | None = None
    commit_expected_within: float | None = None  # None: not judged


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    state: str  # "ok", "closed", "connecting", "stale", "writer behind"
    reason: str

    @property
    def stale(self) -> bool:
        return self.state == "stale"


def judge(obs: Observation) -> Verdict:
    if not obs.market_open:
        return Verdict(True, "closed", "market closed: waiting for the next session")
    if not obs.connected:
        return Verdict(False, "connecting", "not connected to the feed")
    # The clock starts at connect: a fresh connection is not stale before
    # stale_after has passed on it, whatever happened on the previous one.
    silent = obs.seconds_since_data
    if silent is None:
        silent = obs.seconds_connected
    if silent is not None and silent >= obs.stale_after:
        return Verdict(
            False,
            "stale",
            f"no data for {silent:.0f} s (limit {obs.stale_after:.0f} s)",
        )
    if obs.max_waiting and obs.bars_waiting >= obs.max_waiting:
        return Verdict(
            False, "writer behind", f"{obs.bars_waiting} bars waiting for the database"
        )
    if (
        obs.commit_expected_within is not None
        and obs.bars_waiting
        and obs.seconds_since_commit is not None
        and obs.seconds_since_commit > obs.commit_expected_within
    ):
        return Verdict(
            False,
            "writer behind",
            f"no commit for {obs.seconds_since_commit:.0f} s, "
            f"{obs.bars_waiting} bars waiting",
        )
    return Verdict(True, "ok", "connected, data fresh, writer keeping up")
