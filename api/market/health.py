"""Judging the collector's health from its counters: a pure function.

The writer is judged before the feed: bars that are not being stored matter more
than a quiet socket, and health must never say ok while nothing is written."""

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
    oldest_waiting: float | None = None  # seconds the oldest unwritten bar waited
    wait_limit: float | None = None  # None: not judged
    role: str | None = None  # "writer", "standby", "unknown"; None: not elected yet
    writer_silent: float | None = None  # seconds since the writer thread last ran
    stuck_after: float | None = None  # None: not judged
    db_busy: float | None = None  # seconds the writer's database call has run
    db_busy_limit: float | None = None  # None: not judged
    spooling: bool = False  # bars went to the spool lately
    last_error: str | None = None  # the writer's last database error
    idle: bool = False  # no symbols to collect (a universe collector without any)


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    # "ok", "standby", "closed", "connecting", "stale", "writer behind",
    # "writer stuck", "database not answering", "spooling", "leadership unknown",
    # "idle"
    state: str
    reason: str
    failing: bool = False  # unhealthy and losing ground (not merely degraded)

    @property
    def stale(self) -> bool:
        return self.state == "stale"

    @property
    def severity(self) -> str:
        if self.healthy:
            return "ok"
        return "failing" if self.failing else "degraded"


def judge(obs: Observation) -> Verdict:
    return _writer(obs) or _feed(obs) or _ok(obs)


def _because(obs: Observation) -> str:
    return f" (last error: {obs.last_error})" if obs.last_error else ""


def _writer(obs: Observation) -> Verdict | None:
    if (
        obs.stuck_after is not None
        and obs.writer_silent is not None
        and obs.writer_silent >= obs.stuck_after
    ):
        return Verdict(
            False,
            "writer stuck",
            f"the writer thread has not run for {obs.writer_silent:.0f} s, "
            f"{obs.bars_waiting} bars waiting",
            failing=True,
        )
    if (
        obs.db_busy_limit is not None
        and obs.db_busy is not None
        and obs.db_busy >= obs.db_busy_limit
    ):
        return Verdict(
            False,
            "database not answering",
            f"a database call has not returned for {obs.db_busy:.0f} s; "
            f"{obs.bars_waiting} bars waiting go to the spool",
        )
    if obs.role == "unknown":
        return Verdict(
            False,
            "leadership unknown",
            "cannot reach the database to check the writer lock; "
            f"{obs.bars_waiting} bars kept and spooled{_because(obs)}",
        )
    if obs.role == "standby":
        return None  # a standby's bars wait on purpose
    if obs.max_waiting and obs.bars_waiting >= obs.max_waiting:
        return Verdict(
            False,
            "writer behind",
            f"{obs.bars_waiting} bars waiting for the database, at the memory "
            f"limit{_because(obs)}",
            failing=True,
        )
    if (
        obs.wait_limit is not None
        and obs.oldest_waiting is not None
        and obs.oldest_waiting > obs.wait_limit
    ):
        return Verdict(
            False,
            "writer behind",
            f"{obs.bars_waiting} bars waiting, the oldest for "
            f"{obs.oldest_waiting:.0f} s (limit {obs.wait_limit:.0f} s)"
            f"{_because(obs)}",
        )
    if obs.spooling:
        return Verdict(
            False,
            "spooling",
            f"bars go to the spool: the database does not take them{_because(obs)}",
        )
    return None


def _feed(obs: Observation) -> Verdict | None:
    if obs.idle:
        return Verdict(True, "idle", "no symbols to collect: none claimed yet")
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
    return None


def _ok(obs: Observation) -> Verdict:
    if obs.role == "standby":
        return Verdict(
            True, "standby", "connected, data fresh; another collector writes"
        )
    return Verdict(True, "ok", "connected, data fresh, writer keeping up")
