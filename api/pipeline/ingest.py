"""The one set of rules from trades to bars, used live (the aggregator thread) and
by replay_frames alike. Pure: no threads, no I/O; time is passed in.

- Every time-bucketed kind (kinds.py) gets every trade stamped at or after the
  run's start second. Buckets before it belong to the previous run, which stored
  them; a fresh builder would overwrite those rows with a fragment.
- Every count kind gets every trade, in arrival order, numbered on from where the
  stored bars end (and continuing a partial bar a previous run saved).
- A bucket wider than a second that was open when the previous run stopped goes
  on from what that run had (its seed), so a minute spanning a restart is whole.
- Bars close `grace` after their bucket ends; a later trade within
  `revision_window` revises its bar (kinds' builders in api.market.bars).
- Which prints move which part of a bar is decided once per trade by the run's
  condition rules (api.market.conditions: "eodhd" or "all"); a partial
  100-trade bar carried from the previous run is judged by this run's rules.
"""

import math

from api.market.bars import Partial, TickBars, TimeBars
from api.market.conditions import Rules
from api.market.messages import Quote, Trade
from api.market.quotes import QuoteBars
from api.pipeline.kinds import KINDS, TICK100, BarKind


class Ingest:
    def __init__(
        self,
        kinds: tuple[BarKind, ...] = KINDS,
        *,
        grace: float = 2.0,
        revision_window: float = 300.0,
        start_second: float = -math.inf,
        next_numbers: dict[str, int] | None = None,
        partial: dict[str, list[Trade]] | None = None,
        seeds: dict[BarKind, dict[tuple[str, int], Partial]] | None = None,
        conditions: str = "eodhd",
    ) -> None:
        self.kinds = kinds
        self.rules = Rules(conditions)
        self.start_second = start_second
        self._start_ms = start_second * 1000
        traded = [kind for kind in kinds if kind.built_from == "trades"]
        self.timed: dict[BarKind, TimeBars] = {
            kind: TimeBars(
                grace=grace, revision_window=revision_window, width=kind.width
            )
            for kind in traded
            if kind.timed
        }
        self.counted: dict[BarKind, TickBars] = {
            kind: TickBars(size=kind.size) for kind in traded if not kind.timed
        }
        self.quoted: dict[BarKind, QuoteBars] = {
            kind: QuoteBars(grace=grace, revision_window=revision_window)
            for kind in kinds
            if kind.built_from == "quotes"
        }
        # A live stream carries trades or quotes; several streams, both.
        self.takes_trades = bool(traded)
        self.takes_quotes = bool(self.quoted)
        self._mixed = self.takes_trades and self.takes_quotes
        # 100-trade numbering resumes where the stored bars end (the one count
        # kind whose numbering is kept across runs: see collector.state).
        for kind, partials in (seeds or {}).items():
            builder = self.timed.get(kind)
            if builder is not None:
                for (symbol, start), values in partials.items():
                    builder.seed(symbol, start, values)
        ticks = self.counted.get(TICK100)
        if ticks is not None:
            for symbol, number in (next_numbers or {}).items():
                ticks.set_next_number(symbol, number)
            for symbol, trades in (partial or {}).items():
                ticks.restore(symbol, trades, self.rules.flags(trades))
        self.trades = 0  # messages taken: trades and quotes
        self.before_start = 0  # trades for buckets before the run started

    @property
    def seconds(self) -> TimeBars | QuoteBars:
        """The 1-second builder (its counters feed metrics and the summary)."""
        return next(iter(self.timed.values()), None) or next(iter(self.quoted.values()))

    @property
    def ticks(self) -> TickBars | None:
        return self.counted.get(TICK100)

    def add(self, messages: list, now: float) -> dict[BarKind, list]:
        """Take a batch of trades (or quotes); the count kinds' bars it
        completed, by kind."""
        if self._mixed:
            trades = [m for m in messages if type(m) is Trade]
            quotes = [m for m in messages if type(m) is Quote]
            self._add_quotes(quotes, now)
            self.trades += len(quotes)
        elif self.quoted:
            self._add_quotes(messages, now)
            self.trades += len(messages)
            return {}
        else:
            trades = messages
        return self._add_trades(trades, now)

    def _add_quotes(self, quotes: list[Quote], now: float) -> None:
        start_ms = self._start_ms
        for builder in self.quoted.values():
            add = builder.add
            before = 0
            for quote in quotes:
                if quote.ts_ms >= start_ms:
                    add(quote, now)
                else:
                    before += 1
            if not self.timed:
                self.before_start += before

    def _add_trades(self, trades: list[Trade], now: float) -> dict[BarKind, list]:
        start_ms = self._start_ms
        flags = self.rules.flags(trades)
        first = True
        for builder in self.timed.values():
            add = builder.add
            before = 0
            for trade, allowed in zip(trades, flags, strict=True):
                if trade.ts_ms >= start_ms:
                    add(trade, now, allowed)
                else:
                    before += 1
            if first:
                self.before_start += before
                first = False
        completed = {}
        for kind, builder in self.counted.items():
            done = [bar for bar in map(builder.add, trades, flags) if bar is not None]
            if done:
                completed[kind] = done
        self.trades += len(trades)
        return completed

    def close(self, now: float) -> dict[BarKind, list]:
        """Bars whose bucket ended `grace` before `now`, and revisions, by kind."""
        closed = {}
        for kind, builder in (*self.timed.items(), *self.quoted.items()):
            bars = builder.close_until(now)
            if bars:
                closed[kind] = bars
        return closed

    def partials(self, now: float) -> dict[BarKind, dict[tuple[str, int], Partial]]:
        """Buckets wider than a second that have not ended at `now`: a stopping
        run saves them, the next seeds its builders with them, so a minute that
        spans a restart holds the trades of both runs. (A restart takes longer
        than a second: a 1-second bucket never spans one.)"""
        return {
            kind: partials
            for kind, builder in self.timed.items()
            if kind.width > 1 and (partials := builder.partials(now))
        }

    def finish(self) -> dict[BarKind, list]:
        """Close every open bucket (a run ends)."""
        return self.close(math.inf)

    def renumber(self, next_numbers: dict[str, int]) -> None:
        """Another collector wrote these symbols' 100-trade bars: their partial
        bars are dropped and numbering goes on after its last, from the next
        trade."""
        ticks = self.ticks
        for symbol, number in next_numbers.items():
            ticks.restore(symbol, [])
            ticks.set_next_number(symbol, number)
