"""The symbol universe: collectors started with --universe take their symbols
from the database (api.models.UniverseSymbol, edited in the admin) and follow
every edit within seconds, on their live connections.

Who collects what is decided by the per-symbol writer locks (leader.py): each
collector holds the locks of the symbols it collects, claims free ones up to
its `--capacity`, and keeps what it holds while it stays enabled - the split
does not move when nothing changed. A collector that dies releases its locks
with its session, and the others claim its symbols at their next election.

This thread only reads the universe and says what changed:
- an enabled symbol is offered to the lock; once held, it is subscribed;
- a disabled one is unsubscribed at once, and its lock let go of LEAVE_AFTER
  later, once its last bars (the grace period) are written;
- the sentiment engine and the news poller follow the symbols collected.
A database that does not answer changes nothing: the last universe read stays.
"""

import logging
import math

from django.db import DatabaseError

from api.collector.database import DatabaseLane
from api.collector.leader import Role, symbol_of, units_for
from api.models import Ticker, UniverseSymbol
from api.pipeline.errors import CallTimeout, first_line
from api.workers.clock import Clock
from api.workers.worker import Worker

logger = logging.getLogger(__name__)

UNIVERSE_EVERY = 2.0  # seconds between two reads of the universe
LEAVE_AFTER = 5.0  # seconds from unsubscribing a symbol to letting its lock go


def read_universe() -> list[str]:
    """The enabled symbols, in order; their tickers exist (for coverage and
    for telling what is stored when a symbol is taken over)."""
    symbols = list(
        UniverseSymbol.objects.filter(enabled=True)
        .order_by("symbol")
        .values_list("symbol", flat=True)
    )
    existing = set(
        Ticker.objects.filter(symbol__in=symbols).values_list("symbol", flat=True)
    )
    for symbol in symbols:
        if symbol not in existing:
            Ticker.objects.get_or_create(symbol=symbol)
    return symbols


class Universe(Worker):
    def __init__(
        self,
        *,
        app,
        stop,
        clock: Clock | None = None,
        every: float = UNIVERSE_EVERY,
        leave_after: float = LEAVE_AFTER,
        lane: DatabaseLane | None = None,
    ) -> None:
        super().__init__("universe", stop)
        self.app = app  # the Collector: its writer, kinds, subscribe()
        self.clock = clock or Clock()
        self.every = every
        self.leave_after = leave_after
        self.lane = lane or DatabaseLane(name="universe")
        self.enabled: list[str] = []
        self.leaving: dict[str, float] = {}  # symbol -> when it was disabled
        self.collected: list[str] = []
        self.reads = 0
        self.last_error: str | None = None
        self._next_read = -math.inf

    @property
    def lock(self):
        return self.app.writer.leadership.lock

    def work(self) -> None:
        while not self.stop.is_set():
            self.step()
            self.stop.wait(min(self.every, 0.5))

    def step(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next_read:
            self._next_read = now + self.every
            self._read(now)
        for symbol, since in list(self.leaving.items()):
            if now - since >= self.leave_after:
                del self.leaving[symbol]
        kinds = self.app.kinds
        self.lock.offer(
            units_for(kinds, self.enabled), keep=units_for(kinds, self.leaving)
        )
        self._follow_locks()

    def _read(self, now: float) -> None:
        try:
            enabled = self.lane.run(read_universe, idle=None, cutoff=None)
        except (DatabaseError, CallTimeout) as exc:
            self.last_error = first_line(exc)
            logger.warning(
                "⚠️ cannot read the symbol universe (%s); keeping the last one",
                self.last_error,
                extra={"dedupe": "universe"},
            )
            return
        self.reads += 1
        self.last_error = None
        wanted = set(enabled)
        removed = [s for s in self.enabled if s not in wanted]
        added = [s for s in enabled if s not in set(self.enabled)]
        for symbol in removed:
            self.leaving.setdefault(symbol, now)
        for symbol in enabled:
            self.leaving.pop(symbol, None)
        if self.reads == 1:
            logger.info("🌐 universe: %d symbols enabled", len(enabled))
        elif added or removed:
            logger.info(
                "🌐 universe changed: %s",
                ", ".join(
                    [f"+{s}" for s in added[:20]] + [f"-{s}" for s in removed[:20]]
                ),
            )
        self.enabled = enabled

    def _follow_locks(self) -> None:
        """Collect what this collector holds and is enabled; with the
        role unknown, keep collecting what it did."""
        leadership = self.app.writer.leadership
        if leadership.role in (None, Role.UNKNOWN):
            return
        held = {symbol_of(n) for n in leadership.held}
        # Held and enabled: a lock still held while it is let go of is not
        # collected again.
        collected = sorted(held & set(self.enabled))
        if collected != self.collected:
            self.collected = collected
            self.app.retarget(collected)

    def cleanup(self) -> None:
        self.lane.close(timeout=1.0)
