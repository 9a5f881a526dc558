"""Symbols spread over connections: stable, never more than a connection holds."""

from api.collector.pool import FeedPool


class FakeReceiver:
    def __init__(self, name: str, symbols: list[str]) -> None:
        self.name = name
        self.symbols = list(symbols)
        self.retargets: list[list[str]] = []

    def retarget(self, symbols: list[str]) -> None:
        self.retargets.append(list(symbols))
        self.symbols = list(symbols)


def pool(per: int = 50) -> FeedPool:
    return FeedPool("us", per, FakeReceiver, prefix="us")


def test_it_opens_as_many_connections_as_the_symbols_need():
    p = pool()
    symbols = [f"S{i:03d}" for i in range(120)]
    created = p.assign(symbols)
    assert [r.name for r in created] == ["us", "us-2", "us-3"]
    assert [len(r.symbols) for r in created] == [50, 50, 20]
    assert p.symbols == symbols


def test_it_moves_nothing_when_nothing_changed():
    p = pool(3)
    first = p.assign(list("ABCDEFG"))
    assert p.assign(list("ABCDEFG")) == []
    assert all(r.retargets == [] for r in first)


def test_it_fills_the_room_a_removed_symbol_left_and_touches_no_other_connection():
    p = pool(3)
    a, b, c = p.assign(list("ABCDEFG"))
    assert p.assign(list("ABCEFGH")) == []  # D out, H in: D's place
    assert b.retargets == [["E", "F", "H"]]
    assert a.retargets == [] and c.retargets == []
    assert sorted(p.symbols) == list("ABCEFGH")


def test_it_empties_a_connection_whose_symbols_all_left_and_reuses_it_later():
    p = pool(2)
    a, b = p.assign(list("ABCD"))
    assert p.assign(list("AB")) == []
    assert b.symbols == []  # it closes its socket and waits
    assert p.assign(list("ABX")) == []
    assert b.symbols == ["X"]
