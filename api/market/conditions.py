"""Which prints move which part of a bar: EODHD's trade-condition table. Pure.

A US trade frame carries `c`, a list of integer condition codes (the numbering
Polygon/Massive publish). EODHD's "Trade Conditions Guidelines" say, separately
for regular hours and extended hours (04:00-09:30 and 16:00-20:00 ET), which codes
let a print update a bar's high/low, its last price (open/close) and its volume. A
print qualifies for an update only if *every* code it carries allows it; a print
without codes is a regular sale.

One choice is ours, kept here: a code the table does not list (41, which sources
disagree on, or any new one) is treated as a regular sale - it allows everything.
The table is written as what each code *prevents*, which is what the rule needs;
`UPDATES` restates EODHD's positive lists for the record and for the tests.
"""

import enum
from datetime import UTC, datetime

from api.market import calendar

HIGH_LOW = 1  # the print may set the bar's high and low
LAST = 2  # the print may be its open or close
VOLUME = 4  # the print's size counts in its volume (and VWAP)
EVERY = HIGH_LOW | LAST | VOLUME


class Session(enum.IntEnum):
    REGULAR = 0  # the NYSE regular session (09:30-16:00 ET, 13:00 on early closes)
    EXTENDED = 1  # pre-market, after-hours - and any time outside both


# EODHD's lists of codes that do NOT update a part, per session.
NOT_HIGH_LOW = {
    Session.REGULAR: frozenset({2, 7, 12, 13, 15, 16, 20, 21, 37, 52, 53}),
    Session.EXTENDED: frozenset({2, 7, 15, 16, 20, 21, 37, 52, 53}),
}
NOT_LAST = {
    Session.REGULAR: frozenset(
        {2, 5, 7, 10, 12, 13, 15, 16, 20, 21, 22, 29, 33, 37, 52, 53}
    ),
    Session.EXTENDED: frozenset({2, 5, 7, 10, 15, 16, 20, 21, 22, 29, 33, 37, 52, 53}),
}
NOT_VOLUME = frozenset({15, 16, 38})  # the same in both sessions

# EODHD's lists of codes that DO update a part (regular hours; extended hours
# add 12 and 13 to high/low and last). Not used by the rule: a code in neither
# list allows everything.
UPDATES = {
    HIGH_LOW: frozenset(
        {0, 1, 3, 4, 5, 8, 9, 10, 14, 22, 23, 25, 27, 28, 29, 30, 33, 34, 36, 38}
    ),
    LAST: frozenset({0, 1, 3, 4, 8, 9, 14, 23, 25, 27, 28, 30, 34, 36, 38}),
    VOLUME: frozenset(
        {0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 20, 21, 22, 23, 25, 27, 28}
        | {29, 30, 33, 34, 36, 37, 52, 53}
    ),
}

_CACHE_MAX = 4096
_cache: dict[tuple[tuple[int, ...], Session], int] = {}


def eligibility(conditions: tuple[int, ...], session: Session) -> int:
    """The parts of a bar a print with these codes may update (a bit set of
    HIGH_LOW, LAST and VOLUME)."""
    if not conditions:
        return EVERY
    key = (conditions, session)
    found = _cache.get(key)
    if found is not None:
        return found
    codes = set(conditions)
    allowed = EVERY
    if codes & NOT_HIGH_LOW[session]:
        allowed &= ~HIGH_LOW
    if codes & NOT_LAST[session]:
        allowed &= ~LAST
    if codes & NOT_VOLUME:
        allowed &= ~VOLUME
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()  # bounded; refills with the few combinations a feed uses
    _cache[key] = allowed
    return allowed


# Every session boundary (04:00, 09:30, 13:00, 16:00, 17:00, 20:00 ET) falls on a
# half hour, in New York and so in UTC (the offset is whole hours): the session
# is the same all through each UTC half hour.
_SLOT_MS = 1_800_000


class SessionOf:
    """Which session a trade's exchange timestamp falls in, by the NYSE calendar
    (holidays and early closes included). Remembers each half hour it has seen."""

    def __init__(self) -> None:
        self._slots: dict[int, Session] = {}

    def __call__(self, ts_ms: int) -> Session:
        slot = ts_ms // _SLOT_MS
        session = self._slots.get(slot)
        if session is None:
            at = datetime.fromtimestamp(slot * _SLOT_MS / 1000, tz=UTC)
            regular = calendar.is_open(at, extended=False)
            session = Session.REGULAR if regular else Session.EXTENDED
            if len(self._slots) >= _CACHE_MAX:
                self._slots.clear()
            self._slots[slot] = session
        return session


MODES = ("eodhd", "all")  # --conditions: EODHD's table, or every print counts

# The `ms` values that name another session than the calendar's.
_OTHER_STATUS = {
    Session.REGULAR: frozenset({"extended-hours", "extended hours", "closed"}),
    Session.EXTENDED: frozenset({"open"}),
}


class Rules:
    """Trades -> what each may update in a bar, under a mode: "eodhd" applies the
    table by the session of the trade's own timestamp; "all" lets every print
    update everything (the collector's behaviour before the rules).

    The frame's `ms` market status is only a cross-check: a trade whose status
    names the other session than the calendar is counted in `disagreements`
    (near a session boundary a few are normal: exchange clocks and the status
    flag need not switch on the same millisecond)."""

    def __init__(self, mode: str = "eodhd") -> None:
        if mode not in MODES:
            raise ValueError(f"conditions must be one of {', '.join(MODES)}")
        self.mode = mode
        self.session_of = SessionOf()
        self._every = mode == "all"
        # {session: {codes: eligibility}}: the few combinations a feed sends.
        self._tables: dict[Session, dict[tuple[int, ...], int]] = {
            session: {} for session in Session
        }
        self.disagreements = 0
        self.ineligible = 0  # prints that may not update every part

    def flags(self, trades) -> list[int]:
        """The eligibility of each trade, in order."""
        out = []
        append = out.append
        disagree = ineligible = 0
        every = self._every
        slot = None
        other_status: frozenset = frozenset()
        lookup = session = table = None
        for trade in trades:
            ts = trade.ts_ms
            if ts // _SLOT_MS != slot:  # consecutive trades share a half hour
                slot = ts // _SLOT_MS
                session = self.session_of(ts)
                other_status = _OTHER_STATUS[session]
                table = self._tables[session]
                lookup = table.get
            if trade.market_status in other_status:
                disagree += 1
            codes = trade.conditions
            if every or not codes:
                append(EVERY)
                continue
            allowed = lookup(codes)
            if allowed is None:
                allowed = eligibility(codes, session)
                if len(table) < _CACHE_MAX:
                    table[codes] = allowed
            if allowed != EVERY:
                ineligible += 1
            append(allowed)
        self.disagreements += disagree
        self.ineligible += ineligible
        return out
