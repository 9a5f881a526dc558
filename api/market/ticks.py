"""EODHD's US tick history (`GET {base}/ticks/`) -> Trades. Pure: no I/O, no clock.

The endpoint answers one JSON object of equal-length columns, one row per print,
sorted by `ts`:

    ts       epoch milliseconds (int)
    price    number
    shares   int
    mkt      the venue's letter ("Q" Nasdaq, "N" NYSE, "D" a FINRA TRF: off-exchange)
    sl       the CTA/UTP sale-condition letters, space-padded to 4 ("@ TI")
    seq      the print's sequence number (int)
    sub_mkt  a string, often empty

It is published the next trading day, costs API calls per request and returns at
most about 10,000 rows: a client pages by time (`from`/`to` are whole epoch
seconds) and drops the rows it already has by (ts, seq) - several prints share a
millisecond, and a new page starts inside the second the last one ended in.

What is here:

- `LETTERS`, the sale-condition letters in the integer numbering the WebSocket
  uses (Polygon/Massive's, which `api.market.conditions.Rules` applies), and
  `letters_to_codes()` / `codes_to_letters()`;
- `parse_page()`: one response body -> a `TickPage` of Trades, strict per row;
- `Dedupe` / `merge_pages()`: pages -> one run of prints without repeats;
- `next_page()`: where the next request starts, or that the range is done, or
  that it cannot go on (more than `limit` prints in one second).

The letters a print carries depend on its tape: CTA (tapes A and B: NYSE-,
NYSE American-, NYSE Arca- and Cboe-listed symbols) and UTP (tape C:
Nasdaq-listed) mostly agree, but not on every letter, and a tick row does not say
which plan reported it. See `LETTERS` for the rule used when the tape is unknown.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from api.market.conditions import Session, eligibility
from api.market.messages import (
    MAX_PRICE,
    MAX_SIZE,
    T_MAX_MS,
    T_MIN_MS,
    Trade,
    _decimal,  # the WebSocket's number rules: same Decimals, same limits
)

MAX_PAGE_ROWS = 10_000  # what EODHD returns at most per request (about)
TAPES = ("CTA", "UTP")
DARK_POOL_VENUE = "D"  # FINRA's trade reporting facilities: off-exchange prints
MAX_SL_LEN = 16  # `sl` is 4 characters; anything much longer is not a condition field

# The columns of a page; ts, price, shares and seq are required per row.
COLUMNS = ("ts", "price", "shares", "mkt", "sl", "seq", "sub_mkt")


@dataclass(frozen=True, slots=True)
class Letter:
    """One sale-condition letter: its meaning and code(s) on each plan, and the
    code(s) used when the tape is not known.

    `cta`/`utp` are None where that plan does not use the letter (the other
    plan's meaning is then taken for both). `confirmed` is False where a code
    (the CTA one, in every such row) was matched to the letter by its meaning,
    not found in a published letter-to-code mapping."""

    cta: str | None
    utp: str | None
    cta_codes: tuple[int, ...]
    utp_codes: tuple[int, ...]
    codes: tuple[int, ...]  # tape unknown
    confirmed: bool = True


def _same(meaning: str, *codes: int, cta: bool = True, utp: bool = True) -> Letter:
    return Letter(
        meaning if cta else None, meaning if utp else None, codes, codes, codes
    )


# Sources: the CTA CTS Pillar output specification and the UTP UTDF/binary output
# specification (their sale-condition tables, as republished by data vendors),
# and Polygon/Massive's conditions glossary and `/v3/reference/conditions`
# (whose `sip_mapping` gives each code's CTA and UTP letters; its glossary column
# lists the UTP letter). Polygon names code 33 "Sold (out of sequence)" with
# letter Z, which is the 33 EODHD's table uses.
#
# Confirmed: every UTP letter -> code (the glossary's column), and the CTA letters
# whose CTS meaning is the UTP one (C, F, T, I, ...; and B -> 2, from Polygon's
# published `sip_mapping` sample {"CTA": "B", "UTP": "W"}). NOT confirmed
# (confirmed=False): the CTA codes of E (3), K (24), O (17), 5 (18) and 6 (19),
# matched by name to codes Polygon lists without a letter. They matter only with
# tape="CTA" (and E's 3 also with the tape unknown), and a wrong guess changes no
# bar: all five allow everything under api.market.conditions, as do the other
# readings of those letters.
#
# Where CTA and UTP give a letter different meanings and the tape is unknown,
# `codes` is the MORE RESTRICTIVE meaning under api.market.conditions (the one
# whose eligibility allows no part the other forbids, in both sessions): wrongly
# calling a bunched trade an average-price print only keeps its price out of a
# bar (its volume still counts), while the reverse would let an average price set
# a high, low or close. Where both meanings restrict the same parts (E, K, O, 5,
# 6: all allow everything), `codes` is the one EODHD's condition table lists
# (UTP's, except for E, whose UTP meaning is an unused placeholder). Only B
# differs in effect. Pass tape="CTA"/"UTP" when the listing is known.
LETTERS: dict[str, Letter] = {
    # Level 1: settlement.
    "@": _same("Regular sale"),  # no code, as the WebSocket sends `"c":[]`
    "C": _same("Cash sale", 7),
    "N": _same("Next day", 20),
    "R": _same("Seller", 29),
    # Level 2: the reason for a trade-through exemption.
    "F": _same("Intermarket sweep", 14),
    "O": Letter(
        "Market center opening trade", "Opening prints", (17,), (25,), (25,), False
    ),
    "4": _same("Derivatively priced", 10),
    "5": Letter(
        "Market center reopening trade", "Re-opening prints", (18,), (28,), (28,), False
    ),
    "6": Letter(
        "Market center closing trade", "Closing prints", (19,), (8,), (8,), False
    ),
    "7": _same("Qualified contingent trade", 53),
    # CTA reserves 8; UTP: "placeholder for 611 exempt". Polygon lists 59 for it
    # with no rules ("TBD"): a regular sale for api.market.conditions.
    "8": _same("Placeholder for 611 exempt", 59, cta=False),
    "9": _same("Corrected consolidated close (per listing market)", 38),
    # Level 3: extended hours and sequence.
    "T": _same("Form T: extended hours trade", 12),
    "U": _same("Extended hours, sold out of sequence", 13),
    "L": _same("Sold last (late reporting)", 30),
    "Z": _same("Sold out of sequence", 33),
    # Level 4: SRO trade detail.
    "A": _same("Acquisition", 1, cta=False),
    "B": Letter("Average price trade", "Bunched trade", (2,), (4,), (2,)),
    "D": _same("Distribution", 11, cta=False),
    # UTP "E" is a placeholder (Polygon: 56, rules "TBD"); CTA: automatic execution.
    "E": Letter("Automatic execution", "Placeholder", (3,), (56,), (3,), False),
    "G": _same("Bunched sold trade", 5, cta=False),
    "H": _same("Price variation trade", 21),
    "I": _same("Odd lot trade", 37),  # CTA used I for "CAP election" (6) long ago
    # CTA: "Rule 127 (NYSE) or Rule 155 (NYSE American)"; Polygon has 24 "Rule 127
    # NYSE" without a published letter: CTA K -> 24 is our reading.
    "K": Letter(
        "Rule 127 (NYSE) or Rule 155 (NYSE American)",
        "Rule 155 trade (NYSE American)",
        (24,),
        (23,),
        (23,),
        False,
    ),
    "M": _same("Market center official close", 15),
    "P": _same("Prior reference price", 22),
    "Q": _same("Market center official open", 16),
    "S": _same("Split trade", 34, cta=False),  # CTA reserves S
    "V": _same("Contingent trade", 52),
    "W": _same("Average price trade", 2, cta=False),
    "X": _same("Cross trade", 9),
    "Y": _same("Yellow flag regular trade", 36, cta=False),
    "1": _same("Stopped stock (regular trade)", 27, cta=False),
}

# The 4-character layout, for codes_to_letters(): each level's letters.
_LEVELS = ("@CNR", "FO456789", "TULZ")
_PADDING = " "
_CACHE = 4096


def _codes_for(letter: Letter, tape: str | None) -> tuple[int, ...]:
    if tape == "CTA":
        return letter.cta_codes
    if tape == "UTP":
        return letter.utp_codes
    return letter.codes


def _check_tape(tape: str | None) -> None:
    if tape is not None and tape not in TAPES:
        raise ValueError(f"tape must be None, 'CTA' or 'UTP', not {tape!r}")


@functools.lru_cache(maxsize=_CACHE)
def letters_to_codes(sl: str, tape: str | None = None) -> tuple[int, ...]:
    """`sl` ("@ TI") -> its condition codes, sorted, without repeats ((12, 37)).

    Spaces are padding; "@" (a regular sale) adds no code. A letter not in
    LETTERS adds none either: the print is a regular sale as far as that letter
    goes, as api.market.conditions treats a code it does not list (count them
    with unknown_letters())."""
    _check_tape(tape)
    codes: set[int] = set()
    for char in sl:
        letter = LETTERS.get(char)
        if letter is not None:
            codes.update(_codes_for(letter, tape))
    return tuple(sorted(codes))


@functools.lru_cache(maxsize=_CACHE)
def unknown_letters(sl: str) -> str:
    """The characters of `sl` that are neither padding nor in LETTERS."""
    return "".join(c for c in sl if c != _PADDING and c not in LETTERS)


@functools.lru_cache(maxsize=_CACHE)
def letter_for(code: int, tape: str | None = None) -> str | None:
    """The letter that reads back as exactly this code on `tape`, or None (41
    "trade through exempt", for one, is a separate flag, not a sale condition;
    code 4 "bunched trade" has no letter when the tape is unknown)."""
    _check_tape(tape)
    if code == 0:
        return "@"
    candidates = [c for c, x in LETTERS.items() if _codes_for(x, tape) == (code,)]
    if not candidates:
        return None
    # On a known tape, a letter that plan uses ("B" for 2 on CTA, "W" on UTP);
    # tape unknown: one both plans read the same way ("W" for 2).
    if tape == "CTA":
        preferred = [c for c in candidates if LETTERS[c].cta is not None]
    elif tape == "UTP":
        preferred = [c for c in candidates if LETTERS[c].utp is not None]
    else:
        preferred = [
            c for c in candidates if LETTERS[c].cta_codes == LETTERS[c].utp_codes
        ]
    return (preferred or candidates)[0]


# EODHD's names of the US listing exchanges -> the plan that carries the symbol's
# prints (tapes A and B: CTA; tape C: UTP). Our reading of EODHD's exchange list;
# anything else (OTC markets, unknown names) -> None, the tape-unknown rule.
_LISTING_TAPES = {
    "NASDAQ": "UTP",
    "NYSE": "CTA",
    "NYSE ARCA": "CTA",
    "NYSE MKT": "CTA",
    "NYSE AMERICAN": "CTA",
    "AMEX": "CTA",
    "BATS": "CTA",
    "CBOE": "CTA",
}


def tape_for_exchange(exchange: str | None) -> str | None:
    """The plan ("CTA"/"UTP") whose letters a symbol listed on `exchange` (as
    EODHD names it: "NASDAQ", "NYSE", "NYSE ARCA", ...) carries, or None."""
    if not exchange:
        return None
    return _LISTING_TAPES.get(exchange.strip().upper())


def codes_to_letters(codes: Iterable[int], tape: str | None = None) -> str:
    """Condition codes -> an `sl` string as the tape writes it ("@ TI"): the
    settlement letter first ("@" if none), each other letter in its level's slot
    when free, padded to 4. Codes without a letter (see letter_for) are left out:
    letters_to_codes(codes_to_letters(c)) is c minus those."""
    letters = sorted({c for c in (letter_for(code, tape) for code in codes) if c})
    settlement = [c for c in letters if c in _LEVELS[0] and c != "@"]
    slots = [settlement[0] if settlement else "@", _PADDING, _PADDING, _PADDING]
    overflow = []
    for char in settlement[1:] + [c for c in letters if c not in _LEVELS[0]]:
        level = next((i for i, chars in enumerate(_LEVELS) if char in chars), 3)
        if slots[level] == _PADDING and level > 0:
            slots[level] = char
        else:
            overflow.append(char)
    for char in overflow:
        free = next((i for i in (3, 2, 1) if slots[i] == _PADDING), None)
        if free is None:
            slots.append(char)
        else:
            slots[free] = char
    return "".join(slots)


def restricts(codes: tuple[int, ...]) -> dict[Session, int]:
    """What a print with these codes may update, per session (for the docs and
    the tests of the ambiguity rule)."""
    return {session: eligibility(codes, session) for session in Session}


# -- pages ---------------------------------------------------------------------


class TickPageError(ValueError):
    """The body is not a tick page at all (not JSON, cut short, not columns): the
    request should be retried, nothing in it can be trusted."""


@dataclass(slots=True)
class TickPage:
    """One response, parsed. `rows` counts every row the server sent (what the
    paging planner compares with the limit); `trades`/`keys` are the rows that
    passed, in page order; `skipped` the rows that did not, by reason."""

    trades: list[Trade] = field(default_factory=list)
    keys: list[tuple[int, int]] = field(default_factory=list)  # (ts_ms, seq)
    rows: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    unknown_letters: Counter = field(default_factory=Counter)  # letter -> rows
    first_ts_ms: int | None = None  # smallest valid ts in the page
    last_ts_ms: int | None = None  # largest valid ts in the page


def parse_page(
    body: bytes | str | dict | list, symbol: str, tape: str | None = None
) -> TickPage:
    """One tick-history response body -> a TickPage of Trades for `symbol`.

    Each Trade gets the price and size as exact Decimals (floats through their
    shortest repr, as parse_frame does for the WebSocket), `ts_ms`, the codes of
    its `sl` letters on `tape` (None: unknown, see LETTERS) and
    `dark_pool = (mkt == "D")`.

    A row is skipped and counted when a column is too short to reach it, its ts
    is not an int in 2000-2100, its price is not a finite positive number (below
    MAX_PRICE), its shares are negative or not a number, its seq is not a
    non-negative int, or its mkt/sl is not a string. An empty list or object is
    an empty page. Raises TickPageError for a body that is not a page (invalid or
    truncated JSON, not an object of arrays, none of the tick columns)."""
    _check_tape(tape)
    if isinstance(body, bytes | bytearray | memoryview | str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise TickPageError(f"not JSON: {exc}") from None
    page = TickPage()
    if isinstance(body, list | dict) and not body:  # nothing in the range
        return page
    if not isinstance(body, dict):
        raise TickPageError(f"not a JSON object of columns: {type(body).__name__}")
    columns = {}
    for name in COLUMNS:
        column = body.get(name)
        if column is None:
            continue
        if not isinstance(column, list):
            raise TickPageError(f"{name}: not an array")
        columns[name] = column
    if not columns:
        raise TickPageError("no tick columns (ts, price, shares, ...)")

    rows = max(len(column) for column in columns.values())
    page.rows = rows
    ts_col = columns.get("ts", ())
    price_col = columns.get("price", ())
    shares_col = columns.get("shares", ())
    seq_col = columns.get("seq", ())
    mkt_col = columns.get("mkt")
    sl_col = columns.get("sl")
    trades, keys, reasons = page.trades, page.keys, page.reasons
    first = last = None
    for i in range(rows):
        reason = None
        try:
            ts = ts_col[i]
            price = price_col[i]
            shares = shares_col[i]
            seq = seq_col[i]
            mkt = mkt_col[i] if mkt_col is not None else ""
            sl = sl_col[i] if sl_col is not None else ""
        except IndexError:
            reason = _short_column(columns, i)
        if reason is None:
            reason, trade = _row(symbol, tape, ts, price, shares, seq, mkt, sl)
        if reason is not None:
            reasons[reason] += 1
            continue
        trades.append(trade)
        keys.append((ts, seq))
        if first is None or ts < first:
            first = ts
        if last is None or ts > last:
            last = ts
        if sl:
            for char in unknown_letters(sl):
                page.unknown_letters[char] += 1
    page.skipped = sum(reasons.values())
    page.first_ts_ms, page.last_ts_ms = first, last
    return page


def _short_column(columns: dict[str, list], i: int) -> str:
    for name in ("ts", "price", "shares", "seq"):
        if name not in columns:
            return f"{name}: missing"
    return "columns of unequal length"


def _row(
    symbol, tape, ts, price, shares, seq, mkt, sl
) -> tuple[str | None, Trade | None]:
    if type(ts) is not int or not T_MIN_MS <= ts < T_MAX_MS:
        return "ts: not an epoch-ms int in 2000-2100", None
    value = _decimal(price, MAX_PRICE)
    if type(value) is str:
        return "price: " + value, None
    if not value:
        return "price: not positive", None
    size = _decimal(shares, MAX_SIZE)
    if type(size) is str:
        return "shares: " + size, None
    if type(seq) is not int or seq < 0:
        return "seq: not a non-negative int", None
    if mkt is None:
        mkt = ""
    elif type(mkt) is not str:
        return "mkt: not a string", None
    if sl is None:
        sl = ""
    elif type(sl) is not str or len(sl) > MAX_SL_LEN:
        return "sl: not a short string", None
    codes = letters_to_codes(sl, tape) if sl else ()
    return None, Trade(
        symbol, value, size, ts, conditions=codes, dark_pool=mkt == DARK_POOL_VENUE
    )


# -- several pages ---------------------------------------------------------------


class Dedupe:
    """Pages -> new prints only, by (ts, seq).

    Pages of one symbol come in time order, each starting inside the second the
    previous one ended in, so a repeat can only be at or after the start of the
    next request: advance(from_ms) forgets the keys before it (memory stays one
    second's worth) and from then on counts anything older as a repeat."""

    def __init__(self) -> None:
        self._seen: set[tuple[int, int]] = set()
        self._horizon: int | None = None
        self.duplicates = 0
        self.kept = 0

    def add(
        self, trades: Sequence[Trade], keys: Sequence[tuple[int, int]]
    ) -> list[Trade]:
        """The trades of a page not seen before, in page order."""
        if len(trades) != len(keys):
            raise ValueError("one key per trade")
        fresh = []
        seen, horizon = self._seen, self._horizon
        for trade, key in zip(trades, keys, strict=True):
            if key in seen or (horizon is not None and key[0] < horizon):
                self.duplicates += 1
                continue
            seen.add(key)
            fresh.append(trade)
        self.kept += len(fresh)
        return fresh

    def add_page(self, page: TickPage) -> list[Trade]:
        return self.add(page.trades, page.keys)

    def advance(self, from_ms: int) -> None:
        """The next page starts at from_ms: keys before it cannot repeat."""
        if self._horizon is not None and from_ms <= self._horizon:
            return
        self._horizon = from_ms
        self._seen = {key for key in self._seen if key[0] >= from_ms}


def merge_pages(pages: Iterable[TickPage]) -> list[Trade]:
    """Every print of these pages once, ordered by (ts, seq) (pages may overlap
    anywhere and come in any order; for a long run page by page use Dedupe)."""
    merged: dict[tuple[int, int], Trade] = {}
    for page in pages:
        for trade, key in zip(page.trades, page.keys, strict=True):
            merged.setdefault(key, trade)
    return [merged[key] for key in sorted(merged)]


# -- paging ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NextPage:
    """What to do after a page.

    done: the range [from_s, to_s) has been read (as far as it can be).
    from_s: the next request's `from` (None when done).
    stuck: a full page did not get past its first second: that second holds more
        than `limit` prints, and whole-second paging cannot reach the rest of it.
        `from_s` then skips to the next second (those prints are lost unless the
        caller asks differently); report it, do not retry the same request."""

    done: bool
    from_s: int | None
    stuck: bool = False


def next_page(
    from_s: int, to_s: int, rows: int, limit: int, last_ts_ms: int | None
) -> NextPage:
    """Plan the request after one for [from_s, to_s) that returned `rows` rows
    (all of them, TickPage.rows) at most `limit`, the last at `last_ts_ms`.

    `limit` must be what the server honours (min of the one asked for and the
    server's cap, MAX_PAGE_ROWS for EODHD): a shorter page means the range is
    exhausted. After a full page the next request starts at the second of its
    last print, floor(last_ts_ms / 1000); the repeats it brings back are dropped
    by (ts, seq) (Dedupe)."""
    if to_s <= from_s:
        raise ValueError("to_s must be after from_s")
    if limit <= 0 or rows < 0:
        raise ValueError("limit must be positive and rows non-negative")
    if rows < limit:
        return NextPage(True, None)
    if last_ts_ms is not None:
        following = last_ts_ms // 1000
        if following >= to_s:
            return NextPage(True, None)
        if following > from_s:
            return NextPage(False, following)
    # A full page that ended in its first second (or had no valid ts at all):
    # asking again from from_s would return the same page forever.
    if from_s + 1 >= to_s:
        return NextPage(True, None, stuck=True)
    return NextPage(False, from_s + 1, stuck=True)


def request_params(
    symbol: str, from_s: int, to_s: int, limit: int = MAX_PAGE_ROWS
) -> dict[str, str]:
    """The query string of one request (without api_token)."""
    return {
        "s": symbol,
        "from": str(int(from_s)),
        "to": str(int(to_s)),
        "limit": str(int(limit)),
        "fmt": "json",
    }
