import os

import pytest

from api.collector.leader import (
    Change,
    Election,
    FileLock,
    Leadership,
    Role,
    label,
    units_for,
)
from api.pipeline.kinds import QUOTE, SECOND, TICK100, TRADE_KINDS
from api.pipeline.store import stored_tails

AAPL, MSFT = "trades:AAPL", "trades:MSFT"


class Wants:
    """The part of a lock the state machine reads: what is wanted."""

    def __init__(self, *units: str) -> None:
        self.wanted = frozenset(units)
        self.holder = None


def elect(answers: list, units=(AAPL,)) -> tuple[Leadership, list]:
    """Feed the locks' answers (the units held, or None for no answer) to a
    fresh election; the changes it reports, in order."""
    leadership = Leadership("AAPL", lock=Wants(*units))
    return leadership, [leadership.observe(answer) for answer in answers]


ALL, NONE = frozenset({AAPL}), frozenset()


def test_it_is_the_writer_from_the_first_election_when_the_lock_is_free():
    leadership, changes = elect([ALL, ALL, ALL])
    assert changes == [{Change.FIRST: ALL}, {}, {}]
    assert leadership.role is Role.WRITER and leadership.is_writer
    assert leadership.held == ALL


def test_it_stands_by_when_another_holds_the_lock_and_takes_over_later():
    leadership, changes = elect([NONE, NONE, ALL])
    assert changes == [{Change.STANDBY: ALL}, {}, {Change.TAKEOVER: ALL}]
    assert leadership.role is Role.WRITER


def test_it_never_calls_no_answer_a_standby():
    # The first election gets no answer (a TLS-only server refused us, a black
    # hole): the role is unknown, counted, not "another collector writes".
    leadership, changes = elect([None, None])
    assert changes == [{Change.LOST: NONE}, {}]
    assert leadership.role is Role.UNKNOWN
    assert leadership.losses == 1


def test_it_regains_the_role_after_an_unknown_spell():
    leadership, changes = elect([ALL, None, None, ALL])
    assert changes == [
        {Change.FIRST: ALL},
        {Change.LOST: ALL},
        {},
        {Change.REGAINED: ALL},
    ]
    assert leadership.held == ALL


def test_it_writes_nothing_while_the_role_is_unknown():
    leadership, _ = elect([ALL, None])
    assert leadership.held == NONE


def test_it_becomes_standby_when_another_took_the_lock_during_the_spell():
    _, changes = elect([ALL, None, NONE, ALL])
    assert changes == [
        {Change.FIRST: ALL},
        {Change.LOST: ALL},
        {Change.STANDBY: ALL},
        {Change.TAKEOVER: ALL},
    ]


def test_it_reports_a_first_win_after_an_unknown_start_as_first():
    # The election then checks whether anyone wrote meanwhile (it knows losses).
    leadership, changes = elect([None, ALL])
    assert changes == [{Change.LOST: NONE}, {Change.FIRST: ALL}]
    assert leadership.losses == 1


def test_it_writes_the_symbols_it_holds_and_stands_by_for_the_others():
    both = (AAPL, MSFT)
    leadership, changes = elect(
        [frozenset({AAPL}), frozenset({AAPL}), frozenset(both)], units=both
    )
    assert changes == [
        {Change.FIRST: {AAPL}, Change.STANDBY: {MSFT}},
        {},
        {Change.TAKEOVER: {MSFT}},
    ]
    assert leadership.role is Role.WRITER and leadership.held == set(both)


def test_it_is_a_standby_only_when_it_holds_nothing():
    leadership, _ = elect([NONE], units=(AAPL, MSFT))
    assert leadership.role is Role.STANDBY
    leadership.observe(frozenset({MSFT}))
    assert leadership.role is Role.WRITER


def test_it_reports_units_it_no_longer_wants_as_released():
    wants = Wants(AAPL, MSFT)
    leadership = Leadership("universe", lock=wants)
    leadership.observe(frozenset({AAPL, MSFT}))
    wants.wanted = frozenset({AAPL})
    assert leadership.observe(frozenset({AAPL})) == {Change.RELEASED: {MSFT}}
    assert MSFT not in leadership.definite


def test_it_names_units_by_their_symbols_in_logs():
    assert label(units_for(TRADE_KINDS, ["MSFT", "AAPL"])) == "AAPL-MSFT"
    many = [f"S{i:02d}" for i in range(20)]
    assert label(units_for((SECOND,), many)).endswith("and 12 more")
    assert units_for((SECOND, TICK100, QUOTE), ["X"]) == {"trades:X", "quotes:X"}


def test_it_lets_one_of_two_file_locks_win_each_unit_until_the_winner_lets_go(
    tmp_path,
):
    first = FileLock(tmp_path, [AAPL, MSFT])
    assert first.hold() == {AAPL, MSFT} and first.holds()
    second = FileLock(tmp_path, [MSFT, "trades:TSLA"])
    assert second.hold() == {"trades:TSLA"}  # MSFT is the first's
    assert second.holder == f"pid {os.getpid()}"
    first.want([AAPL])  # lets MSFT go at its next election
    assert first.hold() == {AAPL}
    assert second.hold() == {MSFT, "trades:TSLA"}
    first.release()
    second.release()
    assert not first.holds() and not second.holds()


class Lane:
    """Runs election calls at once, with canned stored tails."""

    def __init__(self, tails: dict) -> None:
        self.tails = tails
        self.asked: list = []

    def run(self, fn, *args, idle=None, cutoff=None, **kwargs):
        assert fn is stored_tails
        self.asked.append(args[0])
        return {s: self.tails[s] for s in args[0] if s in self.tails}


def tails(second=None, number=None) -> dict:
    return {kind: None for kind in TRADE_KINDS} | {SECOND: second, TICK100: number}


@pytest.mark.parametrize("known", [{}, {"MSFT": tails()}])
def test_it_follows_what_another_stored_for_a_symbol_it_takes_over(known):
    lane = Lane({"AAPL": tails(100, 3), "MSFT": tails(200, 7)})
    leadership = Leadership("AAPL-MSFT", lock=Wants(AAPL, MSFT))
    election = Election(leadership, lane)
    election.observe(frozenset({AAPL}))
    election.observe(frozenset({AAPL, MSFT}))
    assert election.unsettled == {AAPL: Change.FIRST, MSFT: Change.TAKEOVER}
    succession = election.settle(
        {"AAPL": tails(100, 3)} | known, {k: {} for k in TRADE_KINDS}, None, None
    )
    assert succession.others == {MSFT}  # AAPL was its own, read at start
    assert lane.asked == [["MSFT"]]
    assert not election.unsettled


def test_it_takes_what_is_stored_for_a_symbol_new_to_it_as_another_collectors():
    lane = Lane({"TSLA": tails(50, 9)})
    election = Election(Leadership("universe", lock=Wants("trades:TSLA")), lane)
    election.observe(frozenset({"trades:TSLA"}))
    succession = election.settle({}, {k: {} for k in TRADE_KINDS}, None, None)
    assert succession.others == {"trades:TSLA"}
    assert succession.tails["TSLA"][TICK100] == 9
