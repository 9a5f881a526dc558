"""One writer per symbol.

Every symbol a collector may write is a *unit*: what it is built from and the
symbol ("trades:AAPL", "quotes:EURUSD"), since trades and quotes fill different
tables. Each unit has its own PostgreSQL session-level advisory lock (a file
lock on SQLite). A collector holds the locks of the units it writes, all on the
one session it writes through, and every write first checks - without a round
trip - that it still goes through that session and only carries held units: a
write can only reach the server on the session that holds the locks, so two
collectors never write one symbol at once, whatever symbol sets they were given
and whatever the network does.

Three roles per unit, never confused: writer; standby (the server said another
session holds it); unknown (no answer: the database or the link is down).
Unknown is not standby: bars are kept and spooled as in any outage. The
collector's own role is unknown without an answer, writer when it holds any
unit, standby when it holds none.

Orphans: after a partition the server may keep the old session - and its locks -
alive, because nothing told it the client is gone. Every session of the
collector sets idle_session_timeout (see database.SessionSettings), so an orphan
ends by itself within seconds; and each collector carries an identity that
survives restarts (kept in its spool directory) in its application_name, so it
recognises its own orphan - left by itself before a partition, or by its dead
predecessor - and terminates it at once instead of waiting.
"""

import enum
import fcntl
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, connections

from api.collector.database import DatabaseLane
from api.market.backoff import Backoff
from api.pipeline.errors import CallTimeout, first_line
from api.pipeline.kinds import KINDS, BarKind
from api.pipeline.store import Tails, compared, stored_since, stored_tails
from api.workers.clock import Clock

logger = logging.getLogger(__name__)

# A writer that wrote nothing for this long proves its session alive with a
# trivial statement (well inside the session's idle timeout).
VERIFY_EVERY = 2.0
ELECTION_EVERY = 1.0  # seconds between elections while the database answers
UNKNOWN_BACKOFF = {"base": 1.0, "cap": 3.0}  # while it does not
LABEL_SYMBOLS = 8  # symbols named in a log line before "and N more"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a unit's name."""
    digest = hashlib.sha256(f"eodhd-collector:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def unit(built_from: str, symbol: str) -> str:
    return f"{built_from}:{symbol}"


def unit_of(kind: BarKind, symbol: str) -> str:
    """The unit a bar of `kind` for `symbol` belongs to."""
    return f"{kind.built_from}:{symbol}"


def units_for(kinds: Iterable[BarKind], symbols: Iterable[str]) -> frozenset[str]:
    sources = {kind.built_from for kind in kinds}
    return frozenset(unit(source, s) for source in sources for s in symbols)


def symbol_of(name: str) -> str:
    return name.split(":", 1)[1]


def label(units: Iterable[str]) -> str:
    """Units for a log line: their symbols, "-"-joined, the first few only."""
    symbols = sorted({symbol_of(u) for u in units})
    if len(symbols) <= LABEL_SYMBOLS:
        return "-".join(symbols)
    shown = "-".join(symbols[:LABEL_SYMBOLS])
    return f"{shown} and {len(symbols) - LABEL_SYMBOLS} more"


def _split(key: int) -> tuple[int, int]:
    """pg_locks' view of a bigint advisory key: (classid, objid)."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


def holders(cursor, keys: Iterable[int]) -> list[tuple[int, int, str]]:
    """(key, pid, application_name) of every other session holding one of
    these advisory locks in this database (one look at pg_locks)."""
    by_parts = {_split(k): k for k in keys}
    if not by_parts:
        return []
    cursor.execute(
        "SELECT l.classid::bigint, l.objid::bigint, a.pid, a.application_name "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.pid <> pg_backend_pid() AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND (l.classid::bigint, l.objid::bigint) IN "
        "(SELECT * FROM unnest(%s::bigint[], %s::bigint[]))",
        [[c for c, _ in by_parts], [o for _, o in by_parts]],
    )
    return [
        (by_parts[(c, o)], pid, application or "")
        for c, o, pid, application in cursor.fetchall()
    ]


class Role(enum.StrEnum):
    WRITER = "writer"
    STANDBY = "standby"
    UNKNOWN = "unknown"


class Change(enum.Enum):
    """What an election changed for a unit, for the writer to act on."""

    FIRST = "first"  # the writer from its first election on
    TAKEOVER = "takeover"  # the writer after standing by: another wrote before
    REGAINED = "regained"  # the writer again after an unknown spell
    STANDBY = "standby"  # another collector writes it
    LOST = "lost"  # no answer: the role is unknown
    RELEASED = "released"  # no longer wanted (a universe edit, capacity)


Changes = dict[Change, frozenset[str]]


class Leadership:
    """The election's state machine. `observe()` takes each answer of the
    locks: the units this collector holds, or None (no answer)."""

    def __init__(self, name: str, lock: "PostgresLock | FileLock") -> None:
        self.name = name  # the collector's label: its symbol set, or "universe"
        self.lock = lock
        self.role: Role | None = None  # None: no election yet
        self.held: frozenset[str] = frozenset()  # writable now
        self.definite: dict[str, Role] = {}  # per unit, the last confirmed role
        self.losses = 0  # times the role became unknown

    @property
    def is_writer(self) -> bool:
        return self.role is Role.WRITER

    def observe(self, held: frozenset[str] | None) -> Changes:
        previous = self.role
        if held is None:
            if previous is Role.UNKNOWN:
                return {}
            lost, self.held = self.held, frozenset()
            self.role = Role.UNKNOWN
            self.losses += 1
            return {Change.LOST: lost}
        before = self.held if previous is not Role.UNKNOWN else frozenset()
        wanted = self.lock.wanted
        changes: dict[Change, set[str]] = {}
        for name in held - before:
            definite = self.definite.get(name)
            if definite is Role.STANDBY:
                change = Change.TAKEOVER
            elif definite is Role.WRITER:
                change = Change.REGAINED
            else:
                change = Change.FIRST
            changes.setdefault(change, set()).add(name)
            self.definite[name] = Role.WRITER
        for name in wanted - held:
            if self.definite.get(name) is not Role.STANDBY:
                changes.setdefault(Change.STANDBY, set()).add(name)
                self.definite[name] = Role.STANDBY
        released = (before - held) - wanted
        for name in [n for n in self.definite if n not in wanted]:
            del self.definite[name]
        if released:
            changes[Change.RELEASED] = set(released)
        self.held = frozenset(held)
        self.role = Role.WRITER if held else Role.STANDBY
        return {change: frozenset(names) for change, names in changes.items()}


@dataclass
class Claim:
    """Universe mode: the units to choose from, instead of a fixed set. The
    lock keeps what it holds while it stays offered (no reshuffle when nothing
    changed), lets go of what left, and takes free units - its own earlier ones
    first, then in an order of its own (a hash of its identity), so collectors
    starting together reach for different symbols - until it holds `capacity`
    symbols. What another collector holds is left to it; what an owner that
    died held is free again, and taken by whoever has room."""

    capacity: int  # symbols
    offered: frozenset[str] = frozenset()  # the enabled universe's units
    keep: frozenset[str] = frozenset()  # held ones still being let go of
    free: int = 0  # offered units nobody held at the last look


class PostgresLock:
    """The units' advisory locks, on the session of the thread that calls it
    (the database lane's). Every method but `want`/`offer` runs on that thread."""

    def __init__(self, identity: str, units: Iterable[str] = ()) -> None:
        self.identity = identity
        self.wanted: frozenset[str] = frozenset(units)
        self.held: set[str] = set()
        self.orphans_ended = 0
        self.holder: str | None = None  # who holds what we want, when not us
        self._keys: dict[str, int] = {}
        self._held_on = None  # the driver connection whose session `held` is on
        self._verified_at = -math.inf
        self._refused: frozenset[str] = frozenset()
        self.claim: Claim | None = None
        self._had: set[str] = set()  # every unit held since the start

    def want(self, units: Iterable[str]) -> None:
        """The units to hold from the next election on (any thread)."""
        self.wanted = frozenset(units)

    def offer(self, units: Iterable[str], keep: Iterable[str] = ()) -> None:
        """Universe mode (any thread): choose among `units`; `keep` those held
        that are being let go of gracefully."""
        claim = self.claim
        if claim is None:
            raise RuntimeError("offer() needs a Claim")
        claim.offered, claim.keep = frozenset(units), frozenset(keep)

    def key(self, name: str) -> int:
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = lock_key(name)
        return key

    def hold(self) -> frozenset[str]:
        """Keep what is held, let go of what is no longer wanted, try to take
        the rest: the units this session holds."""
        wrapper = connections["default"]
        wrapper.ensure_connection()
        raw = wrapper.connection
        now = time.monotonic()
        fresh = raw is not self._held_on
        if fresh:  # a new session holds nothing yet
            self.held, self._held_on, self._refused = set(), raw, frozenset()
        with wrapper.cursor() as cursor:
            if self.claim is not None:
                self._choose(cursor)
            wanted = self.wanted
            gone = self.held - wanted
            if gone:
                cursor.execute(
                    "SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS k",
                    [[self.key(n) for n in sorted(gone)]],
                )
                self.held -= gone
            missing = wanted - self.held
            if missing:
                self.held |= self._try(cursor, missing)
                refused = frozenset(missing - self.held)
                # Worth looking for our own orphan only for what was just
                # refused: an orphan is a session older than this one.
                if refused - self._refused and self._end_own_orphans(
                    cursor, refused - self._refused
                ):
                    self.held |= self._try(cursor, refused)
                    refused = frozenset(missing - self.held)
                self._refused = refused
            elif now - self._verified_at >= VERIFY_EVERY:
                cursor.execute("SELECT 1")
            self._verified_at = now
        self._had |= self.held
        return frozenset(self.held)

    def _choose(self, cursor) -> None:
        """Universe mode: set `wanted` to what to hold after this election -
        what is held and still offered, plus free units up to the capacity."""
        claim = self.claim
        offered = claim.offered
        kept = {n for n in self.held if n in offered or n in claim.keep}
        have = {symbol_of(n) for n in kept}
        room = claim.capacity - len(have)
        taken = set()
        candidates = [n for n in offered if n not in self.held]
        if candidates:
            taken = self._taken(cursor, candidates)
        free = [n for n in candidates if n not in taken]
        claim.free = len(free)
        chosen = set(kept)
        if room > 0 and free:
            free.sort(key=lambda n: (n not in self._had, self._rank(n)))
            for name in free:
                symbol = symbol_of(name)
                if symbol not in have:
                    if len(have) >= claim.capacity:
                        continue
                    have.add(symbol)
                chosen.add(name)
        self.wanted = frozenset(chosen)

    def _rank(self, name: str) -> bytes:
        return hashlib.sha256(f"{self.identity}:{name}".encode()).digest()[:8]

    def _taken(self, cursor, names: list[str]) -> set[str]:
        """Which of `names` another session holds now."""
        by_key = {self.key(n): n for n in names}
        return {by_key[key] for key, _, _ in holders(cursor, by_key)}

    def holds(self) -> bool:
        """The fence: True when this thread's session is the one holding the
        locks. No round trip: a session-level lock lasts as long as its session.
        Which units a write may carry, the writer decides from `hold()`."""
        raw = connections["default"].connection
        return raw is not None and raw is self._held_on and bool(self.held)

    def touched(self) -> None:
        """A statement just succeeded on the locks' session: it is alive."""
        self._verified_at = time.monotonic()

    def _try(self, cursor, names: Iterable[str]) -> set[str]:
        by_key = {self.key(n): n for n in names}
        cursor.execute(
            "SELECT k, pg_try_advisory_lock(k) FROM unnest(%s::bigint[]) AS k",
            [sorted(by_key)],
        )
        return {by_key[key] for key, got in cursor.fetchall() if got}

    def _end_own_orphans(self, cursor, names: Iterable[str]) -> bool:
        """Terminate sessions of our own identity that hold any of `names`:
        left by this collector (or its dead predecessor) behind a partition.
        True when one was ended (worth another try)."""
        rows = {(pid, app) for _, pid, app in holders(cursor, map(self.key, names))}
        own = f"/{self.identity}"
        others = sorted((p, a) for p, a in rows if not a.endswith(own))
        if others:
            pid, application = others[0]
            self.holder = f"pid {pid} ({application or 'no application_name'})"
        ended = False
        for pid, application in sorted(rows):
            if not application.endswith(own):
                continue
            cursor.execute("SELECT pg_terminate_backend(%s, 3000)", [pid])
            if cursor.fetchone()[0]:
                ended = True
                self.orphans_ended += 1
                logger.warning(
                    "♻️ ended our own orphaned database session (pid %s) that "
                    "still held writer locks",
                    pid,
                )
        return ended


class FileLock:
    """SQLite: an exclusive flock per unit, on files beside the database. A
    local file cannot be partitioned away, so `holds()` is the descriptors."""

    def __init__(self, directory: Path, units: Iterable[str] = ()) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.wanted: frozenset[str] = frozenset(units)
        self.holder: str | None = None
        self.orphans_ended = 0
        self._fds: dict[str, int] = {}
        self.claim: Claim | None = None

    def want(self, units: Iterable[str]) -> None:
        self.wanted = frozenset(units)

    def offer(self, units: Iterable[str], keep: Iterable[str] = ()) -> None:
        self.claim.offered, self.claim.keep = frozenset(units), frozenset(keep)

    def _choose(self) -> None:
        """Universe mode on one machine: what is held and still offered, then
        the rest in order, up to the capacity (a lock another process holds is
        simply not taken)."""
        claim = self.claim
        chosen = {n for n in self._fds if n in claim.offered or n in claim.keep}
        have = {symbol_of(n) for n in chosen}
        for name in sorted(claim.offered - chosen):
            if symbol_of(name) not in have and len(have) >= claim.capacity:
                continue
            have.add(symbol_of(name))
            chosen.add(name)
        self.wanted = frozenset(chosen)

    def path(self, name: str) -> Path:
        return self.directory / f"writer-{lock_key(name) & 0xFFFFFFFF:08x}.lock"

    def hold(self) -> frozenset[str]:
        if self.claim is not None:
            self._choose()
        wanted = self.wanted
        for name in [n for n in self._fds if n not in wanted]:
            os.close(self._fds.pop(name))  # closing the file releases the lock
        for name in wanted - self._fds.keys():
            fd = os.open(self.path(name), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.holder = _read_pid(fd)
                os.close(fd)
                continue
            self._fds[name] = fd
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return frozenset(self._fds)

    def holds(self) -> bool:
        return bool(self._fds)

    def touched(self) -> None:
        return

    def release(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _read_pid(fd: int) -> str | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return f"pid {text}" if text else None


@dataclass(frozen=True)
class Succession:
    """What becoming the writer of some units means for the bars held."""

    changes: dict[str, Change]  # the units settled, and how each was gained
    tails: Tails  # what is stored, per symbol and kind
    others: frozenset[str]  # units another collector wrote meanwhile


class Election:
    """Runs the election on the database lane about once a second (with backoff
    while there is no answer), logs every change of role, and works out - for
    each unit this collector becomes the writer of - whether another one wrote
    it meanwhile."""

    def __init__(
        self, leadership: Leadership, lane: DatabaseLane, clock: Clock | None = None
    ) -> None:
        self.leadership = leadership
        self.lane = lane
        self.clock = clock or Clock()
        self.next_at = 0.0  # monotonic
        # Units become writable only once settled: how each was gained.
        self.unsettled: dict[str, Change] = {}
        self.last_error: str | None = None
        self._backoff = Backoff(**UNKNOWN_BACKOFF)

    def run(self, idle: Callable[[], None], cutoff: Callable[[], float]) -> Changes:
        leadership = self.leadership
        try:
            held = self.lane.run(leadership.lock.hold, idle=idle, cutoff=cutoff)
        except (DatabaseError, CallTimeout, OSError) as exc:
            held = None
            self.last_error = first_line(exc)
        return self.observe(held)

    def observe(self, held: frozenset[str] | None) -> Changes:
        leadership = self.leadership
        changes = leadership.observe(held)
        if leadership.role is Role.UNKNOWN:
            self.next_at = self.clock.monotonic() + self._backoff.next()
        else:
            self._backoff.reset()
            self.next_at = self.clock.monotonic() + ELECTION_EVERY
        if first := changes.get(Change.FIRST):
            logger.info("👑 this collector is the writer for %s", label(first))
            # Had the role been unknown first, another may have written meanwhile.
            gained = Change.REGAINED if leadership.losses else Change.FIRST
            self.unsettled.update(dict.fromkeys(first, gained))
        for change in (Change.TAKEOVER, Change.REGAINED):
            self.unsettled.update(dict.fromkeys(changes.get(change, ()), change))
        if standby := changes.get(Change.STANDBY):
            logger.warning(
                "🧍 standby: another collector writes %s (%s); taking over if it stops",
                label(standby),
                leadership.lock.holder or "lock held",
            )
        if released := changes.get(Change.RELEASED):
            logger.info("👋 no longer writing %s (released)", label(released))
        if Change.LOST in changes:
            logger.error(
                "❌ writer role unknown: cannot reach the database to check the "
                "writer locks of %s (%s); keeping and spooling every bar until it "
                "answers",
                leadership.name,
                self.last_error,
            )
        for name in [n for n in self.unsettled if n not in leadership.held]:
            del self.unsettled[name]
        return changes

    def settle(
        self,
        known: Tails,
        pending: dict[BarKind, dict],
        idle: Callable[[], None],
        cutoff: Callable[[], float],
    ) -> Succession:
        """Read what is stored for the units gained and tell whose it is.
        Raises on database errors (then they are settled at the next try)."""
        gained = dict(self.unsettled)
        # A first win needs no look when this collector read the symbol's
        # stored bars at its start and nothing was unknown since.
        look = {
            name: change
            for name, change in gained.items()
            if change is not Change.FIRST or symbol_of(name) not in known
        }
        tails: Tails = {}
        if look:
            symbols = sorted({symbol_of(n) for n in look})
            tails = self.lane.run(stored_tails, symbols, idle=idle, cutoff=cutoff)
        others = set()
        for name, change in look.items():
            symbol = symbol_of(name)
            if symbol not in tails:
                continue  # nothing was ever stored for it
            if change is not Change.REGAINED or symbol not in known:
                # Standing by, or new to this collector: whatever is stored
                # is another's (count bars follow its numbering).
                others.add(name)
                continue
            source = name.split(":", 1)[0]
            by_kind = {k: v for k, v in tails[symbol].items() if k.built_from == source}
            if self._another_wrote(symbol, by_kind, known, pending, idle, cutoff):
                others.add(name)
        for name in gained:
            self.unsettled.pop(name, None)
        return Succession(gained, tails, frozenset(others))

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


def writers(names: Iterable[str]) -> dict[str, str]:
    """Who holds each unit's lock now (PostgreSQL): unit -> the holding
    session's application_name and pid. For the admin; any connection."""
    names = list(names)
    if not names or connections["default"].vendor != "postgresql":
        return {}
    by_key = {lock_key(n): n for n in names}
    with connections["default"].cursor() as cursor:
        found = holders(cursor, by_key)
    return {by_key[key]: f"{app or '?'} (pid {pid})" for key, pid, app in found}


def kinds_of(name: str) -> tuple[BarKind, ...]:
    source = name.split(":", 1)[0]
    return tuple(kind for kind in KINDS if kind.built_from == source)
