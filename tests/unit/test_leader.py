import os

from api.collector.leader import Change, FileLock, Leadership, Role


def elect(answers: list) -> tuple[Leadership, list]:
    """Feed the lock's answers (True held, False held by another, None no
    answer) to a fresh election; the changes it reports, in order."""
    leadership = Leadership("AAPL", lock=None)
    return leadership, [leadership.observe(answer) for answer in answers]


def test_it_is_the_writer_from_the_first_election_when_the_lock_is_free():
    leadership, changes = elect([True, True, True])
    assert changes == [Change.FIRST, None, None]
    assert leadership.role is Role.WRITER and leadership.is_writer


def test_it_stands_by_when_another_holds_the_lock_and_takes_over_later():
    leadership, changes = elect([False, False, True])
    assert changes == [Change.STANDBY, None, Change.TAKEOVER]
    assert leadership.role is Role.WRITER


def test_it_never_calls_no_answer_a_standby():
    # The first election gets no answer (a TLS-only server refused us, a black
    # hole): the role is unknown, counted, not "another collector writes".
    leadership, changes = elect([None, None])
    assert changes == [Change.LOST, None]
    assert leadership.role is Role.UNKNOWN
    assert leadership.losses == 1


def test_it_regains_the_role_after_an_unknown_spell():
    leadership, changes = elect([True, None, None, True])
    assert changes == [Change.FIRST, Change.LOST, None, Change.REGAINED]


def test_it_becomes_standby_when_another_took_the_lock_during_the_spell():
    leadership, changes = elect([True, None, False, True])
    assert changes == [Change.FIRST, Change.LOST, Change.STANDBY, Change.TAKEOVER]


def test_it_reports_a_first_win_after_an_unknown_start_as_first():
    # The writer then checks whether anyone wrote meanwhile (it knows losses).
    leadership, changes = elect([None, True])
    assert changes == [Change.LOST, Change.FIRST]
    assert leadership.losses == 1


def test_it_lets_one_of_two_file_locks_win_until_the_winner_lets_go(tmp_path):
    first = FileLock("AAPL-MSFT", tmp_path)
    second = FileLock("AAPL-MSFT", tmp_path)
    assert first.hold() is True and first.holds()
    assert second.hold() is False and not second.holds()
    assert second.holder == f"pid {os.getpid()}"
    first.release()
    assert second.hold() is True
    other_set = FileLock("TSLA", tmp_path)
    assert other_set.hold() is True  # another symbol set, another lock
    second.release()
    other_set.release()
