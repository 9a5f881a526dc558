from api.collector import leader
from api.collector.leader import PROMOTED, REGAINED, FileLeadership, Leadership


class Scripted(Leadership):
    """Answers from a script: True/False = lock granted or held by another,
    None = the database did not answer."""

    def __init__(self, acquire: list, held: list) -> None:
        super().__init__("AAPL")
        self.acquire, self.held = list(acquire), list(held)

    def _try_acquire(self):
        return self.acquire.pop(0)

    def _still_held(self) -> bool:
        return self.held.pop(0)


def test_it_promotes_when_the_lock_is_free_and_stands_by_when_it_is_taken():
    taken = Scripted(acquire=[False, False, True], held=[])
    assert taken.maintain() is None and taken.is_standby
    assert taken.maintain() is None and taken.is_standby
    assert taken.maintain() == PROMOTED and taken.is_leader


def test_it_keeps_bars_when_contact_is_lost_and_regains_the_lock(monkeypatch):
    monkeypatch.setattr(leader, "VERIFY_EVERY", 0.0)
    lead = Scripted(acquire=[True, None, None, True], held=[False])
    assert lead.maintain() == PROMOTED
    assert lead.maintain() is None  # verification fails: the database is gone
    assert (lead.is_leader, lead.out_of_contact, lead.is_standby) == (
        False,
        True,
        False,
    )
    assert lead.maintain() is None and lead.out_of_contact
    assert lead.maintain() is None and lead.out_of_contact
    assert lead.maintain() == REGAINED and lead.is_leader


def test_it_becomes_standby_when_another_took_the_lock_during_the_outage(
    monkeypatch,
):
    monkeypatch.setattr(leader, "VERIFY_EVERY", 0.0)
    lead = Scripted(acquire=[True, None, False], held=[False])
    assert lead.maintain() == PROMOTED
    assert lead.maintain() is None  # verification fails: out of contact
    assert lead.maintain() is None and lead.out_of_contact  # still no answer
    assert lead.maintain() is None  # answered: held by another collector
    assert lead.is_standby


def test_it_lets_one_of_two_file_locks_win_until_the_winner_lets_go(tmp_path):
    first = FileLeadership("AAPL-MSFT", tmp_path)
    second = FileLeadership("AAPL-MSFT", tmp_path)
    assert first.maintain() == PROMOTED
    assert second.maintain() is None and second.is_standby
    first.release()
    assert second.maintain() == PROMOTED
    other_set = FileLeadership("TSLA", tmp_path)
    assert other_set.maintain() == PROMOTED  # another symbol set, another lock
    second.release()
    other_set.release()
