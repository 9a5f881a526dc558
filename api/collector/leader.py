"""One writer per symbol set. Collectors for the same symbols elect a leader
through a PostgreSQL advisory lock (a file lock on SQLite); the others stay hot as
standbys and take over within seconds when the leader dies, SIGKILL included:
the lock belongs to the leader's session (or open file), which the server (or the
kernel) ends with the process."""

import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path

import psycopg2

logger = logging.getLogger(__name__)

VERIFY_EVERY = 2.0  # seconds between checks that the leader still holds its lock


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a symbol set's name."""
    digest = hashlib.sha256(f"eodhd-collector:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


PROMOTED = "promoted"  # took over from another collector (or first start)
REGAINED = "regained"  # had lost contact with the lock's server; nobody else took it


class Leadership:
    """`maintain()` is called about once a second by the writer thread.

    Three states: leader; standby (another collector holds the lock); and out of
    contact (the database cannot be reached, so nobody can tell). Out of contact
    the writer keeps and spools its bars like a leader in an outage: losing the
    database must never turn into losing bars."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_leader = False
        self.out_of_contact = False
        self.promotions = 0
        self._last_verified = 0.0

    @property
    def is_standby(self) -> bool:
        return not self.is_leader and not self.out_of_contact

    def maintain(self) -> str | None:
        """Acquire the lock when free, or verify it is still held. Returns
        PROMOTED or REGAINED when this collector (again) becomes the writer."""
        now = time.monotonic()
        if self.is_leader:
            if now - self._last_verified >= VERIFY_EVERY:
                self._last_verified = now
                if not self._still_held():
                    self.is_leader = False
                    self.out_of_contact = True
                    logger.error(
                        "❌ lost contact with the writer lock of %s; keeping every "
                        "bar until it is back",
                        self.name,
                    )
            return None
        acquired = self._try_acquire()  # None: no answer from the server
        if acquired is None:
            self.out_of_contact = self.out_of_contact or self.promotions > 0
            return None
        was_out = self.out_of_contact
        self.out_of_contact = False
        if not acquired:
            return None
        self.is_leader = True
        self._last_verified = now
        self.promotions += 1
        return REGAINED if was_out else PROMOTED

    def release(self) -> None:
        self.is_leader = False

    def _try_acquire(self) -> bool | None:
        raise NotImplementedError

    def _still_held(self) -> bool:
        raise NotImplementedError


class PostgresLeadership(Leadership):
    """A session-level advisory lock on a connection of its own."""

    def __init__(self, name: str, db: dict) -> None:
        super().__init__(name)
        self.key = lock_key(name)
        self._params = {
            "dbname": db["NAME"],
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
            "connect_timeout": 5,
            "application_name": f"eodhd-collector-lock-{os.getpid()}",
            # Notice a dead peer quickly, so a lost lock is noticed too.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
        }
        self._conn = None

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(
                **{k: v for k, v in self._params.items() if v is not None}
            )
            self._conn.autocommit = True
        return self._conn

    def _try_acquire(self) -> bool | None:
        try:
            with self._connection().cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
                return bool(cursor.fetchone()[0])
        except psycopg2.Error as exc:
            logger.warning(
                "cannot ask for the writer lock: %s", str(exc).strip().splitlines()[0]
            )
            self._drop()
            return None

    def _still_held(self) -> bool:
        try:
            with self._connection().cursor() as cursor:
                # This session exists only to hold the one lock.
                cursor.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted"
                )
                return cursor.fetchone()[0] > 0
        except psycopg2.Error:
            self._drop()
            return False

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
        self._conn = None

    def release(self) -> None:
        super().release()
        self._drop()  # ending the session releases the lock


class FileLeadership(Leadership):
    """An exclusive flock on a file beside the SQLite database."""

    def __init__(self, name: str, directory: Path) -> None:
        super().__init__(name)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"writer-{lock_key(name) & 0xFFFFFFFF:08x}.lock"
        self._fd: int | None = None

    def _try_acquire(self) -> bool | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return True

    def _still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        super().release()
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None
