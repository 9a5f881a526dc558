"""One writer per symbol set.

Collectors for the same symbols elect a writer through a PostgreSQL session-level
advisory lock (a file lock on SQLite). The lock is taken on the very session the
writer writes through, and every write first checks - without a round trip - that
it still goes through that session: a write can only reach the server on the
session that holds the lock, so two collectors can never write at once, whatever
the network does.

Three roles, never confused: writer; standby (the server said another session
holds the lock); unknown (no answer: the database or the link is down). Unknown is
not standby: bars are kept and spooled as in any outage.

Orphans: after a partition the server may keep the old session - and its lock -
alive, because nothing told it the client is gone. Every session of the collector
sets idle_session_timeout (see database.SessionSettings), so an orphan ends by
itself within seconds; and each collector carries an identity that survives
restarts (kept in its spool directory) in its application_name, so it recognises
its own orphan - left by itself before a partition, or by its dead predecessor -
and terminates it at once instead of waiting.
"""

import enum
import fcntl
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, connections

from api.collector.database import DatabaseLane
from api.market.backoff import Backoff
from api.pipeline.errors import CallTimeout, first_line
from api.pipeline.kinds import BarKind
from api.pipeline.store import Tails, compared, stored_since, stored_tails
from api.workers.clock import Clock

logger = logging.getLogger(__name__)

# A writer that wrote nothing for this long proves its session alive with a
# trivial statement (well inside the session's idle timeout).
VERIFY_EVERY = 2.0
ELECTION_EVERY = 1.0  # seconds between elections while the database answers
UNKNOWN_BACKOFF = {"base": 1.0, "cap": 3.0}  # while it does not


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a symbol set's name."""
    digest = hashlib.sha256(f"eodhd-collector:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Role(enum.StrEnum):
    WRITER = "writer"
    STANDBY = "standby"
    UNKNOWN = "unknown"


class Change(enum.Enum):
    """What an election changed, for the writer to act on."""

    FIRST = "first"  # the writer from the first election on
    TAKEOVER = "takeover"  # the writer after standing by: another wrote before
    REGAINED = "regained"  # the writer again after an unknown spell
    STANDBY = "standby"  # another collector writes
    LOST = "lost"  # no answer: the role is unknown


class Leadership:
    """The election's state machine. `observe()` takes each answer of the lock:
    True (held by this collector), False (held by another), None (no answer)."""

    def __init__(self, name: str, lock: "PostgresLock | FileLock") -> None:
        self.name = name
        self.lock = lock
        self.role: Role | None = None  # None: no election yet
        self.definite: Role | None = None  # the last role the database confirmed
        self.losses = 0  # times the role became unknown

    @property
    def is_writer(self) -> bool:
        return self.role is Role.WRITER

    def observe(self, held: bool | None) -> Change | None:
        previous, definite = self.role, self.definite
        if held is None:
            if previous is Role.UNKNOWN:
                return None
            self.role = Role.UNKNOWN
            self.losses += 1
            return Change.LOST
        if not held:
            self.role = self.definite = Role.STANDBY
            return None if previous is Role.STANDBY else Change.STANDBY
        self.role = self.definite = Role.WRITER
        if previous is Role.WRITER:
            return None
        if definite is Role.STANDBY:
            return Change.TAKEOVER
        if definite is Role.WRITER:
            return Change.REGAINED
        return Change.FIRST


class PostgresLock:
    """The advisory lock, on the session of the thread that calls it (the
    database lane's). Every method runs on that thread."""

    def __init__(self, name: str, identity: str) -> None:
        self.name = name
        self.key = lock_key(name)
        self.identity = identity
        self.orphans_ended = 0
        self.holder: str | None = None  # who holds it when we do not
        self._held_on = None  # the driver connection whose session holds it
        self._verified_at = -math.inf

    def hold(self) -> bool:
        """Keep or take the lock: True when this session holds it."""
        wrapper = connections["default"]
        wrapper.ensure_connection()
        raw = wrapper.connection
        now = time.monotonic()
        if raw is self._held_on:
            if now - self._verified_at >= VERIFY_EVERY:
                with wrapper.cursor() as cursor:
                    cursor.execute("SELECT 1")
                self._verified_at = now
            return True
        self._held_on = None
        with wrapper.cursor() as cursor:
            if self._try(cursor) or (
                self._end_own_orphan(cursor) and self._try(cursor)
            ):
                self._held_on = raw
                self._verified_at = now
                self.holder = None
                return True
        return False

    def holds(self) -> bool:
        """The fence: True when this thread's session is the one holding the lock.
        No round trip: a session-level lock lasts as long as its session."""
        raw = connections["default"].connection
        return raw is not None and raw is self._held_on

    def touched(self) -> None:
        """A statement just succeeded on the lock's session: it is alive."""
        self._verified_at = time.monotonic()

    def _try(self, cursor) -> bool:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
        return bool(cursor.fetchone()[0])

    def _end_own_orphan(self, cursor) -> bool:
        """Terminate a session of our own identity that holds the lock: it was
        left by this collector (or its dead predecessor) behind a partition."""
        classid, objid = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        cursor.execute(
            "SELECT a.pid, a.application_name FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid = %s AND l.objid = %s AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            [classid, objid],
        )
        row = cursor.fetchone()
        if row is None:
            self.holder = None
            return True  # released meanwhile: worth another try
        pid, application = row
        self.holder = f"pid {pid} ({application or 'no application_name'})"
        if not (application or "").endswith(f"/{self.identity}"):
            return False
        cursor.execute("SELECT pg_terminate_backend(%s, 3000)", [pid])
        ended = bool(cursor.fetchone()[0])
        if ended:
            self.orphans_ended += 1
            logger.warning(
                "♻️ ended our own orphaned database session (pid %s) that still held "
                "the writer lock of %s",
                pid,
                self.name,
            )
        return ended


class FileLock:
    """SQLite: an exclusive flock on a file beside the database. A local file
    cannot be partitioned away, so `holds()` is the descriptor itself."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"writer-{lock_key(name) & 0xFFFFFFFF:08x}.lock"
        self.holder: str | None = None
        self.orphans_ended = 0
        self._fd: int | None = None

    def hold(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.holder = _read_pid(fd)
            os.close(fd)
            return False
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.holder = None
        return True

    def holds(self) -> bool:
        return self._fd is not None

    def touched(self) -> None:
        return

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None


def _read_pid(fd: int) -> str | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return f"pid {text}" if text else None


@dataclass(frozen=True)
class Succession:
    """What becoming the writer means for the bars this collector holds."""

    change: Change
    tails: Tails  # what is stored, per symbol and kind
    others: frozenset[str]  # symbols another collector wrote meanwhile


class Election:
    """Runs the election on the database lane about once a second (with backoff
    while there is no answer), logs every change of role, and works out - when
    this collector becomes the writer - whether another one wrote meanwhile."""

    def __init__(
        self, leadership: Leadership, lane: DatabaseLane, clock: Clock | None = None
    ) -> None:
        self.leadership = leadership
        self.lane = lane
        self.clock = clock or Clock()
        self.next_at = 0.0  # monotonic
        self.unsettled: Change | None = None  # becoming the writer, not yet acted on
        self.last_error: str | None = None
        self._backoff = Backoff(**UNKNOWN_BACKOFF)

    def run(self, idle: Callable[[], None], cutoff: Callable[[], float]) -> None:
        leadership = self.leadership
        try:
            held = self.lane.run(leadership.lock.hold, idle=idle, cutoff=cutoff)
        except (DatabaseError, CallTimeout, OSError) as exc:
            held = None
            self.last_error = first_line(exc)
        self.observe(held)

    def observe(self, held: bool | None) -> Change | None:
        leadership = self.leadership
        change = leadership.observe(held)
        if leadership.role is Role.UNKNOWN:
            self.next_at = self.clock.monotonic() + self._backoff.next()
        else:
            self._backoff.reset()
            self.next_at = self.clock.monotonic() + ELECTION_EVERY
        if change is Change.FIRST:
            logger.info("👑 this collector is the writer for %s", leadership.name)
            # Had the role been unknown first, another may have written meanwhile.
            self.unsettled = Change.REGAINED if leadership.losses else None
        elif change in (Change.TAKEOVER, Change.REGAINED):
            self.unsettled = change
        elif change is Change.STANDBY:
            self.unsettled = None
            logger.warning(
                "🧍 standby: another collector writes %s (%s); taking over if it stops",
                leadership.name,
                leadership.lock.holder or "lock held",
            )
        elif change is Change.LOST:
            self.unsettled = None
            logger.error(
                "❌ writer role unknown: cannot reach the database to check the "
                "writer lock of %s (%s); keeping and spooling every bar until it "
                "answers",
                leadership.name,
                self.last_error,
            )
        return change

    def settle(
        self,
        symbols: list[str],
        known: Tails,
        pending: dict[BarKind, dict],
        idle: Callable[[], None],
        cutoff: Callable[[], float],
    ) -> Succession:
        """Read what is stored and tell whose it is. Raises on database errors
        (then the role is settled at the next try)."""
        tails = self.lane.run(stored_tails, symbols, idle=idle, cutoff=cutoff)
        if self.unsettled is Change.TAKEOVER:
            others = set(tails)
        else:
            others = {
                symbol
                for symbol, by_kind in tails.items()
                if self._another_wrote(symbol, by_kind, known, pending, idle, cutoff)
            }
        succession = Succession(self.unsettled, tails, frozenset(others))
        self.unsettled = None
        return succession

    def _another_wrote(self, symbol, by_kind, known, pending, idle, cutoff) -> bool:
        """Stored bars beyond what this collector knows it stored, that are not
        its own unacknowledged writes (those match what it still holds)."""
        for kind, stored in by_kind.items():
            mine = known.get(symbol, {}).get(kind)
            if stored is None or (mine is not None and stored <= mine):
                continue
            rows = self.lane.run(
                stored_since, kind, symbol, mine, idle=idle, cutoff=cutoff
            )
            held = pending[kind]
            for position, values in rows.items():
                entry = held.get((symbol, position))
                if entry is None or compared(kind, entry[0]) != values:
                    return True
        return False
