"""The typed messages that travel between the collector's threads. Small frozen
values: a thread never shares a mutable structure with another, and a reader of
the code can see what crosses a queue."""

from dataclasses import dataclass, field
from decimal import Decimal

from api.market.messages import Trade
from api.pipeline.kinds import BarKind


@dataclass(frozen=True, slots=True)
class Trades:
    """A receiver batch, in arrival order (the list is not touched again)."""

    trades: list[Trade]


@dataclass(frozen=True, slots=True)
class Bars:
    """Bars closed, revised or completed, by kind (items as kinds.py describes)."""

    by_kind: dict[BarKind, list] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.by_kind.values())

    def add(self, kind: BarKind, item) -> None:
        self.by_kind.setdefault(kind, []).append(item)


@dataclass(frozen=True, slots=True)
class Closes:
    """1-second closes (symbol, second, close) for the technical score."""

    closes: list[tuple[str, int, Decimal]]


@dataclass(frozen=True, slots=True)
class Watch:
    """From a receiver: its subscription to `symbols` on `stream` began at `at`
    (epoch seconds, wall clock), or ended then (`reason`: the receiver's words,
    api.coverage.REASONS). What is seen between the two is observed; the rest
    of the time is a gap (api/coverage.py)."""

    stream: str
    symbols: tuple[str, ...]
    at: float
    ending: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    """From the aggregator: every bar of a second before `through` (epoch
    seconds) has been handed on. Once they are stored, open coverage reaches
    that far."""

    through: float


@dataclass(frozen=True, slots=True)
class Finished:
    """The aggregator's last word: every open bar has been handed on."""


FINISHED = Finished()


@dataclass(frozen=True, slots=True)
class Renumber:
    """To the aggregator: another collector wrote these symbols' 100-trade bars;
    number on from these, starting with the next trade."""

    next_numbers: dict[str, int]
