"""The database as the collector uses it: every call bounded in time, every error
classified.

Database calls run on a thread of their own (a *lane*) that owns its Django
connection. The caller waits at most a bound; a call that has not returned by then
is abandoned: the socket under it is shut down - which wakes a thread blocked in
libpq, whatever the network does (a black hole closes nothing, so nothing else
would) - the connection is discarded, and if the thread still does not come back
the next call runs on a fresh thread with a fresh connection. No thread of the
collector ever waits on the network without a bound.

Each new PostgreSQL session is set up for a long-lived writer: server-side
statement and lock timeouts, server-side TCP keepalives, and an idle-session
timeout so that a session orphaned by a partition (one whose client is gone but
whose TCP connection the server still believes in) ends by itself within seconds,
together with any advisory lock it held.
"""

import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections

from api.pipeline.errors import CallTimeout, is_disconnect
from api.workers.clock import Clock

logger = logging.getLogger(__name__)

# Bound on one database call (a few statements) when no other is given.
CALL_TIMEOUT = 8.0
# After the socket under an overdue call was shut down, how long its thread gets to
# come back before it is left behind for good.
INTERRUPT_GRACE = 1.0
# An orphaned session of ours ends this long after its last statement.
IDLE_SESSION_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class SessionSettings:
    """Server-side limits for the collector's own PostgreSQL sessions."""

    statement_timeout_ms: int = 5000
    lock_timeout_ms: int = 2000
    idle_session_timeout_ms: int = IDLE_SESSION_TIMEOUT_MS
    keepalives_idle: int = 5
    keepalives_interval: int = 2
    keepalives_count: int = 3
    tcp_user_timeout_ms: int = 10_000

    def statements(self, application_name: str) -> str:
        values = {
            "application_name": application_name,
            "statement_timeout": self.statement_timeout_ms,
            "lock_timeout": self.lock_timeout_ms,
            "idle_in_transaction_session_timeout": self.idle_session_timeout_ms,
            "idle_session_timeout": self.idle_session_timeout_ms,
            "tcp_keepalives_idle": self.keepalives_idle,
            "tcp_keepalives_interval": self.keepalives_interval,
            "tcp_keepalives_count": self.keepalives_count,
            "tcp_user_timeout": self.tcp_user_timeout_ms,
        }
        return "; ".join(
            f"SET {name} = {_literal(value)}" for name, value in values.items()
        )


def _literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def tagged_application_name(base: str | None, identity: str) -> str:
    """`base` (the URL's application_name, or ours) with the collector's identity
    appended, within PostgreSQL's 63 characters."""
    tag = f"/{identity}"
    return (base or "eodhd-collector")[: 63 - len(tag)] + tag


class _Call:
    __slots__ = ("fn", "args", "done", "value", "error")

    def __init__(self, fn: Callable, args: tuple) -> None:
        self.fn = fn
        self.args = args
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class _LaneThread(threading.Thread):
    """Runs calls one at a time on its own connection."""

    def __init__(self, lane: "DatabaseLane", number: int) -> None:
        super().__init__(name=f"{lane.name}-{number}", daemon=True)
        self.lane = lane
        self.calls: queue.Queue = queue.Queue()
        self.abandoned = False
        self.wrapper = None  # this thread's Django connection (set on the thread)
        self._raw = None  # the driver connection the session was set up on
        self._sock: socket.socket | None = None  # a dup of its socket, to shut down
        self._sock_lock = threading.Lock()

    def run(self) -> None:
        self.wrapper = connections["default"]
        try:
            while not self.abandoned:
                call = self.calls.get()
                if call is None:
                    break
                self._run(call)
        finally:
            self._close()

    def _run(self, call: _Call) -> None:
        try:
            self._prepare_session()
            call.value = call.fn(*call.args)
        except BaseException as exc:  # handed to the caller, never lost here
            call.error = exc
            if self.abandoned or is_disconnect(exc):
                self._close()
        finally:
            call.done.set()

    def _prepare_session(self) -> None:
        """Connect if needed; a new session is set up before anything runs on it."""
        wrapper = self.wrapper
        wrapper.ensure_connection()
        raw = wrapper.connection
        if raw is self._raw:
            return
        self._forget_socket()
        self._raw = raw
        if wrapper.vendor == "postgresql":
            with self._sock_lock:
                self._sock = socket.socket(fileno=os.dup(raw.fileno()))
            setup = self.lane.session_sql()
            if setup:
                with wrapper.cursor() as cursor:
                    cursor.execute(setup)
        self.lane.sessions += 1

    def interrupt(self) -> None:
        """From another thread: wake whatever this thread is blocked on."""
        with self._sock_lock:
            sock = self._sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        raw = self._raw
        if sock is None and raw is not None and hasattr(raw, "interrupt"):
            try:
                raw.interrupt()  # SQLite: abort the running statement
            except Exception:  # already closed: nothing runs on it
                pass

    def _forget_socket(self) -> None:
        with self._sock_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _close(self) -> None:
        try:
            self.wrapper.close()
        except Exception:  # a broken connection may fail to close; it is gone
            pass
        self._raw = None
        self._forget_socket()


class DatabaseLane:
    """Bounded database calls. `run()` is called from one thread (the owner)."""

    def __init__(
        self,
        name: str = "db",
        timeout: float = CALL_TIMEOUT,
        session: SessionSettings | None = None,
        application_name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.name = name
        self.timeout = timeout
        self.session = session or SessionSettings()
        self.application_name = application_name
        self.abandoned = 0  # calls abandoned after their bound
        self.sessions = 0  # database sessions opened
        self.started_call_at: float | None = None  # monotonic; None when idle
        self._threads = 0
        self._thread: _LaneThread | None = None

    def session_sql(self) -> str:
        return self.session.statements(self.application_name or "eodhd-collector")

    def run(
        self,
        fn: Callable,
        *args,
        timeout: float | None = None,
        deadline: float | None = None,
        idle: Callable[[], None] | None = None,
        cutoff: Callable[[], float] | None = None,
    ):
        """fn(*args) on the lane's thread; its result, or its exception re-raised.

        Waits at most `timeout` (default: the lane's), never past `deadline`
        (monotonic) nor past what `cutoff()` says meanwhile (a shutdown brings it
        forward); `idle` runs every 50 ms while waiting, so the caller keeps up
        with its own work. Raises CallTimeout when the bound passes first."""
        now = self.clock.monotonic()
        limit = now + (self.timeout if timeout is None else timeout)
        if deadline is not None:
            limit = min(limit, deadline)
        thread = self._current()
        call = _Call(fn, args)
        self.started_call_at = now
        thread.calls.put(call)
        try:
            while not call.done.wait(
                0.05 if idle else max(0.0, limit - self.clock.monotonic())
            ):
                if idle is not None:
                    idle()
                if cutoff is not None:
                    limit = min(limit, cutoff())
                if self.clock.monotonic() >= limit:
                    self._abandon(thread, call)
                    raise CallTimeout(
                        f"no answer from the database within {limit - now:.1f} s"
                    )
        finally:
            self.started_call_at = None
        if call.error is not None:
            raise call.error
        return call.value

    def busy_for(self) -> float | None:
        """Seconds the call in flight has run; None when idle. Any thread."""
        started = self.started_call_at
        return None if started is None else self.clock.monotonic() - started

    def close(self, timeout: float = 2.0) -> None:
        """Close the connection if the lane's thread is free within `timeout`."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.calls.put(None)
        thread.join(timeout)
        if thread.is_alive():
            thread.abandoned = True
            thread.interrupt()

    def _current(self) -> _LaneThread:
        thread = self._thread
        if thread is None or not thread.is_alive() or thread.abandoned:
            self._threads += 1
            thread = self._thread = _LaneThread(self, self._threads)
            thread.start()
        return thread

    def _abandon(self, thread: _LaneThread, call: _Call) -> None:
        self.abandoned += 1
        thread.interrupt()
        if call.done.wait(INTERRUPT_GRACE):
            return  # woken: the thread closed its connection and stays in use
        # Still busy - Django reconnects to restore autocommit after a failed
        # transaction, and that connect waits out its own timeout: leave it
        # behind; it closes its connection and ends when it returns.
        thread.abandoned = True
        thread.calls.put(None)
        self._thread = None
        logger.warning(
            "database call on %s still busy after its socket was shut down; a "
            "fresh connection takes over",
            thread.name,
        )
