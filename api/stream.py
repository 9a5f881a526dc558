"""Pushed updates: new and revised bars as Server-Sent Events.

One `Hub` per web process follows what the collector commits and fans it out to
the connected clients, each with a bounded queue of its own:

- On PostgreSQL the collector's writer issues `NOTIFY collector_bars` after each
  write it committed (api/pipeline/store.py); the hub LISTENs on a connection of
  its own and wakes at once. It works with the collector and the web server in
  different processes or on different machines: the database is the channel.
  On SQLite the hub polls once a second.
- Woken, it reads the rows whose `updated_at` moved since it last looked (within
  the last ten minutes of bar time, so the reads prune to today's partitions),
  once for all clients, and hands each client the rows of its symbols and kinds.
  A row is read again if it changes again: a revision by a late print is a new
  event for the same bar.
- Event ids are the row's `updated_at` in microseconds; a client that reconnects
  with `Last-Event-ID` first gets the rows updated since (at least once: a row
  updated in the same microsecond as the last one seen may come twice; key bars
  by kind, symbol and timestamp). Heartbeats (`: keepalive`) every 15 s keep
  proxies from closing a quiet stream.
- Bounded: at most `SSE_MAX_CLIENTS` streams per process (a 503 beyond); a client
  whose queue is full (it stopped reading) is disconnected, never waited for.

A stream holds a server thread for as long as it is open: run the web app under
a threaded server (backend/gunicorn_conf.py: gthread workers sized for
SSE_MAX_CLIENTS) - see README, "Pushed updates". Not under ASGI: Django's ASGI
handler reads a synchronous generator to its end before sending anything.
"""

import json
import logging
import queue
import select
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import DatabaseError, close_old_connections, connection

from api import readapi

logger = logging.getLogger(__name__)

CHANNEL = "collector_bars"
HEARTBEAT = 15.0
POLL = 1.0  # seconds between looks without a notification (SQLite, or a lost LISTEN)
LOOKBACK = timedelta(minutes=10)  # bar time a change may concern
OVERLAP = timedelta(seconds=2)  # commits may land slightly out of updated_at order
QUEUE_SIZE = 2000
KINDS = {"second": "second", "minute": "minute", "quote": "quote"}


@dataclass(eq=False)
class Subscriber:
    symbols: frozenset[str]
    kinds: frozenset[str]
    events: queue.Queue = field(default_factory=lambda: queue.Queue(QUEUE_SIZE))
    closed: bool = False


def micros(at: datetime) -> int:
    return round(at.timestamp() * 1_000_000)


def _rows(series_name: str, since: datetime, symbols=None):
    """(updated_at, symbol, item) of rows updated after `since`, oldest first."""
    series = readapi.SERIES[series_name]
    rows = series.model.objects.filter(
        timestamp__gte=datetime.now(tz=UTC) - LOOKBACK, updated_at__gt=since
    )
    if symbols is not None:
        rows = rows.filter(ticker__symbol__in=symbols)
    q = readapi.Query(
        series=series, symbols=(), start=since, end=since, limit=0, capped=False,
        last=None, cursor=None, csv=False, zone=None, strings=False,
    )  # fmt: skip
    out = []
    for updated, symbol, *row in rows.order_by("updated_at").values_list(
        "updated_at", "ticker__symbol", *series.columns
    ):
        out.append((updated, symbol, readapi.item(series, tuple(row), q)))
    return out


def event_id(text: str) -> int:
    """The id of an event as `event()` wrote it."""
    return int(text[4 : text.index("\n")])


def event(kind: str, updated: datetime, symbol: str, item: dict) -> str:
    data = json.dumps({"symbol": symbol, **item}, separators=(",", ":"))
    return f"id: {micros(updated)}\nevent: {kind}\ndata: {data}\n\n"


class Hub:
    def __init__(self, max_clients: int = 200) -> None:
        self.max_clients = max_clients
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._seen: dict[tuple, int] = {}  # (kind, symbol, timestamp) -> micros
        self._since = datetime.now(tz=UTC)
        self.wakeups = 0
        self.sent = 0

    # Clients -----------------------------------------------------------------------

    def subscribe(self, symbols, kinds) -> Subscriber | None:
        with self._lock:
            if len(self._subscribers) >= self.max_clients:
                return None
            sub = Subscriber(frozenset(symbols), frozenset(kinds))
            self._subscribers.add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sse-hub", daemon=True
                )
                self._thread.start()
            return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.closed = True
        with self._lock:
            self._subscribers.discard(sub)

    def backlog(self, sub: Subscriber, last_id: int) -> list[str]:
        """What a reconnecting client missed: rows updated since its last event."""
        since = datetime.fromtimestamp(last_id / 1_000_000, tz=UTC)
        since -= timedelta(microseconds=1)  # at least once
        out = []
        try:
            for kind in sub.kinds:
                for updated, symbol, item in _rows(kind, since, sub.symbols):
                    out.append((updated, event(kind, updated, symbol, item)))
        finally:
            connection.close()  # the request thread's; streams are long
        return [text for _, text in sorted(out, key=lambda pair: pair[0])]

    # The follower thread -------------------------------------------------------------

    def _run(self) -> None:
        listener = None
        while True:
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    if listener is not None:
                        listener.close()
                    connection.close()  # this thread's: nothing left to follow
                    return
            if listener is None and connection.vendor == "postgresql":
                listener = self._listen()
            self._wait(listener)
            try:
                self._fan_out()
            except DatabaseError as exc:
                logger.warning("⚠️ SSE: reading changes failed: %s", exc)
                close_old_connections()
                time.sleep(POLL)
            if listener is not None and listener.closed:
                listener = None

    def _listen(self):
        try:
            conn = connection.get_new_connection(connection.get_connection_params())
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            return conn
        except Exception as exc:  # noqa: BLE001 - polling still works without it
            logger.warning("⚠️ SSE: cannot LISTEN (%s); polling instead", exc)
            return None

    def _wait(self, listener) -> None:
        if listener is None:
            time.sleep(POLL)
            return
        try:
            ready, _, _ = select.select([listener], [], [], POLL)
            if ready:
                listener.poll()
                listener.notifies.clear()
                self.wakeups += 1
        except Exception:  # noqa: BLE001 - a lost LISTEN connection: reopen
            listener.close()

    def _fan_out(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        kinds = {kind for sub in subscribers for kind in sub.kinds}
        since = self._since - OVERLAP
        newest = self._since
        batch = []
        for kind in kinds:
            for updated, symbol, item in _rows(kind, since):
                key = (kind, symbol, item["timestamp"])
                stamp = micros(updated)
                if self._seen.get(key) == stamp:
                    continue  # already sent (the overlap reads it again)
                self._seen[key] = stamp
                batch.append(
                    (updated, kind, symbol, event(kind, updated, symbol, item))
                )
                newest = max(newest, updated)
        self._since = newest
        if len(self._seen) > 50_000:
            self._seen.clear()  # the overlap may then resend a little: at least once
        close_old_connections()
        batch.sort(key=lambda entry: entry[0])
        for _, kind, symbol, text in batch:
            for sub in subscribers:
                if sub.closed or kind not in sub.kinds or symbol not in sub.symbols:
                    continue
                try:
                    sub.events.put_nowait(text)
                    self.sent += 1
                except queue.Full:
                    logger.warning("⚠️ SSE: a client stopped reading; disconnected")
                    self.unsubscribe(sub)


_hub: Hub | None = None
_hub_lock = threading.Lock()


def hub() -> Hub:
    global _hub
    from django.conf import settings

    with _hub_lock:
        if _hub is None:
            _hub = Hub(max_clients=settings.SSE_MAX_CLIENTS)
        return _hub
