"""Symbols spread over connections: EODHD takes at most 50 symbols per socket
(accounts can raise it), so a stream's symbols go to as many receivers as they
need, each its own connection with its own health, reconnects and counters.

The split is stable: a symbol stays on its connection while it is wanted; a new
one goes to the first connection with room, or to a new connection; a removed
one is unsubscribed on the live socket. Nothing moves when nothing changed, so
an edit never resubscribes the symbols it does not touch."""

from collections.abc import Callable

from api.collector.feed import Receiver


class FeedPool:
    def __init__(
        self,
        stream: str,
        per_connection: int,
        make: Callable[[str, list[str]], Receiver],
        prefix: str = "receiver",
    ) -> None:
        if per_connection < 1:
            raise ValueError("per_connection must be at least 1")
        self.stream = stream
        self.per_connection = per_connection
        self.make = make  # (name, symbols) -> a new receiver, not started
        self.prefix = prefix
        self.receivers: list[Receiver] = []
        self.groups: list[list[str]] = []  # what each receiver is asked for

    def assign(self, symbols: list[str]) -> list[Receiver]:
        """Spread `symbols` (in order, duplicates ignored) over the receivers:
        those already placed stay; returns the receivers created for them (the
        caller starts them). Receivers left without symbols close their socket
        and wait."""
        wanted = list(dict.fromkeys(symbols))
        keep = set(wanted)
        groups = [[s for s in group if s in keep] for group in self.groups]
        placed = {s for group in groups for s in group}
        created: list[Receiver] = []
        for symbol in wanted:
            if symbol in placed:
                continue
            room = next(
                (g for g in groups if len(g) < self.per_connection),
                None,
            )
            if room is None:
                room = []
                groups.append(room)
            room.append(symbol)
            placed.add(symbol)
        for index, group in enumerate(groups):
            if index < len(self.receivers):
                if group != self.groups[index]:
                    self.receivers[index].retarget(group)
            else:
                receiver = self.make(self._name(index), list(group))
                self.receivers.append(receiver)
                created.append(receiver)
        self.groups = groups
        return created

    def _name(self, index: int) -> str:
        return f"{self.prefix}-{index + 1}" if index else self.prefix

    @property
    def symbols(self) -> list[str]:
        return [s for group in self.groups for s in group]
