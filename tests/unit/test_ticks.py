"""EODHD tick history -> Trades: the letter table, strict parsing, dedupe, paging."""

import math
from decimal import Decimal

import orjson
import pytest

from api.market import ticks
from api.market.conditions import (
    EVERY,
    HIGH_LOW,
    LAST,
    NOT_HIGH_LOW,
    NOT_LAST,
    NOT_VOLUME,
    UPDATES,
    VOLUME,
    Session,
    eligibility,
)
from api.market.messages import Trade, parse_frame
from api.market.ticks import (
    LETTERS,
    Dedupe,
    NextPage,
    TickPageError,
    codes_to_letters,
    letter_for,
    letters_to_codes,
    merge_pages,
    next_page,
    parse_page,
    unknown_letters,
)

T0 = 1_790_000_000_000  # 2026-09-21T13:33:20Z, epoch ms
REGULAR, EXTENDED = Session.REGULAR, Session.EXTENDED


def page_body(rows: list[tuple], **extra) -> dict:
    """Columns from (ts, price, shares, mkt, sl, seq) rows."""
    body = {
        "ts": [r[0] for r in rows],
        "price": [r[1] for r in rows],
        "shares": [r[2] for r in rows],
        "mkt": [r[3] for r in rows],
        "sl": [r[4] for r in rows],
        "seq": [r[5] for r in rows],
        "sub_mkt": ["" for _ in rows],
    }
    body.update(extra)
    return body


# -- the letter table -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sl", "codes"),
    [
        ("@   ", ()),
        ("@", ()),
        ("", ()),
        ("    ", ()),
        ("@ TI", (12, 37)),
        ("@FTI", (12, 14, 37)),
        ("I", (37,)),
        ("T", (12,)),
        ("F", (14,)),
        ("@  W", (2,)),
        ("C  P", (7, 22)),
        ("@ UI", (13, 37)),
        ("@  Z", (33,)),
        ("@  M", (15,)),
        ("@  Q", (16,)),
        ("@9  ", (38,)),
        ("@7 V", (52, 53)),
        ("N TH", (12, 20, 21)),
        ("R  X", (9, 29)),
        ("@4  ", (10,)),
        ("@ L ", (30,)),
        ("TT I", (12, 37)),  # a repeat counts once
    ],
)
def test_letters_read_as_polygons_codes(sl, codes):
    assert letters_to_codes(sl) == codes


def test_letters_the_two_plans_share_read_the_same_on_every_tape():
    shared = "@CNRF479TULZHIMPQVX"
    for char in shared:
        letter = LETTERS[char]
        assert letter.cta_codes == letter.utp_codes == letter.codes, char
        assert letter.cta is not None and letter.cta == letter.utp, char
        for tape in (None, "CTA", "UTP"):
            assert letters_to_codes(char, tape) == letter.codes


def test_b_is_an_average_price_on_cta_a_bunched_trade_on_utp_and_the_former_unknown():
    assert letters_to_codes("@  B", "CTA") == (2,)
    assert letters_to_codes("@  B", "UTP") == (4,)
    assert letters_to_codes("@  B") == (2,)  # the more restrictive reading
    assert letters_to_codes("@  W") == letters_to_codes("@  W", "UTP") == (2,)


def test_the_tape_unknown_reading_is_the_more_restrictive_then_eodhds():
    differing = {c: x for c, x in LETTERS.items() if x.cta_codes != x.utp_codes}
    assert set(differing) == {"B", "E", "K", "O", "5", "6"}
    for char, letter in differing.items():
        chosen = letter.codes
        assert chosen in (letter.cta_codes, letter.utp_codes), char
        for session in Session:
            allowed = eligibility(chosen, session)
            for other in (letter.cta_codes, letter.utp_codes):
                # Nothing the other reading forbids is allowed by the choice.
                assert allowed & ~eligibility(other, session) == 0, char
        effects = {
            session: (eligibility(letter.cta_codes, session),)
            + (eligibility(letter.utp_codes, session),)
            for session in Session
        }
        if all(cta == utp for cta, utp in effects.values()):
            # Same effect: the reading EODHD's table knows.
            (code,) = chosen
            assert code in UPDATES[VOLUME], char
            others = {*letter.cta_codes, *letter.utp_codes} - {code}
            assert not others & UPDATES[VOLUME], char
    # B is the one letter whose readings differ in effect.
    assert eligibility((2,), REGULAR) == VOLUME
    assert eligibility((4,), REGULAR) == EVERY


def test_every_code_in_the_table_is_in_eodhds_rules_or_counts_as_regular():
    codes = set()
    for letter in LETTERS.values():
        codes |= set(letter.cta_codes) | set(letter.utp_codes) | set(letter.codes)
    listed = set().union(*UPDATES.values(), *NOT_HIGH_LOW.values())
    listed |= set().union(*NOT_LAST.values()) | NOT_VOLUME
    # Known to the letter table, unknown to EODHD's: a regular sale for the rules.
    assert codes - listed == {11, 17, 18, 19, 24, 56, 59}
    for code in codes - listed:
        assert eligibility((code,), REGULAR) == eligibility((code,), EXTENDED) == EVERY
    unconfirmed = {c for c, x in LETTERS.items() if not x.confirmed}
    assert unconfirmed == {"E", "K", "O", "5", "6"}
    for char in unconfirmed:  # only their CTA reading is a guess
        assert LETTERS[char].codes == LETTERS[char].utp_codes or char == "E"
        for session in Session:
            assert eligibility(LETTERS[char].cta_codes, session) == EVERY


@pytest.mark.parametrize(
    ("sl", "session", "parts"),
    [
        ("@   ", REGULAR, EVERY),
        ("@F  ", REGULAR, EVERY),
        ("@ TI", REGULAR, VOLUME),  # odd lot, form T
        ("@ T ", REGULAR, VOLUME),
        ("@ T ", EXTENDED, EVERY),
        ("@  P", REGULAR, HIGH_LOW | VOLUME),  # prior reference price
        ("@  Z", EXTENDED, HIGH_LOW | VOLUME),
        ("@  M", REGULAR, 0),  # official close: nothing
        ("@9  ", REGULAR, HIGH_LOW | LAST),  # corrected close: no volume
    ],
)
def test_letters_move_the_bar_parts_the_rules_say(sl, session, parts):
    assert eligibility(letters_to_codes(sl), session) == parts


def test_unknown_letters_add_no_code_and_are_reported():
    assert letters_to_codes("@ J?") == ()
    assert letters_to_codes("@FJ ") == (14,)
    assert unknown_letters("@FJ?") == "J?"
    assert unknown_letters("@ TI") == ""
    assert eligibility(letters_to_codes("J"), REGULAR) == EVERY


def test_a_tape_must_be_cta_utp_or_none():
    with pytest.raises(ValueError, match="tape"):
        letters_to_codes("@", "NYSE")
    with pytest.raises(ValueError, match="tape"):
        parse_page({}, "AAPL", tape="cta")


@pytest.mark.parametrize(
    ("codes", "sl"),
    [
        ((), "@   "),
        ((12, 37), "@ TI"),
        ((14,), "@F  "),
        ((14, 37, 41), "@F I"),  # 41 has no letter
        ((7, 12), "C T "),
        ((2,), "@  W"),
        ((15,), "@  M"),
        ((38,), "@9  "),
        ((12, 33, 37), "@ZTI"),  # two level-3 letters: the second takes a free slot
    ],
)
def test_codes_become_letters_in_the_tapes_layout(codes, sl):
    assert codes_to_letters(codes) == sl


def test_codes_round_trip_through_letters_except_the_letterless():
    letterless = {41, 4, 17, 18, 19, 24, 56}
    combos = [
        (),
        (14, 41),
        (41,),
        (14,),
        (2,),
        (7,),
        (22,),
        (33,),
        (15,),
        (16,),
        (38,),
        (12,),
        (12, 41),
        (12, 33),
        (14, 37, 41),
        (12, 37),
        (1, 5, 9, 10, 20),
        (4,),
        (13, 52, 53),
    ]
    for codes in combos:
        expected = tuple(sorted(set(codes) - letterless - {0}))
        assert letters_to_codes(codes_to_letters(codes)) == expected, codes
    for code in (4, 17, 18, 19, 24):  # they do have letters on their own plan
        tape = "UTP" if code == 4 else "CTA"
        assert letters_to_codes(codes_to_letters((code,), tape), tape) == (code,)
    assert letter_for(41) is None and letter_for(4) is None
    assert (letter_for(2), letter_for(2, "CTA"), letter_for(2, "UTP")) == (
        "W",
        "B",
        "W",
    )


def test_listing_exchanges_name_their_plan():
    assert ticks.tape_for_exchange("NASDAQ") == "UTP"
    assert ticks.tape_for_exchange("NYSE ARCA") == "CTA"
    assert ticks.tape_for_exchange("nyse") == "CTA"
    assert ticks.tape_for_exchange("OTCQX") is None
    assert ticks.tape_for_exchange(None) is None


# -- one page -------------------------------------------------------------------


def test_a_page_becomes_trades_with_exact_decimals_codes_and_dark_pool():
    body = page_body(
        [
            (T0, 229.99, 100, "Q", "@   ", 1001),
            (T0, 229.99, 37, "D", "@ TI", 1002),  # the same millisecond
            (T0 + 5, 230.1, 200, "N", "@F  ", 1003),
            (T0 + 9, 0.0001, 5, "D", "@  W", 1004),
            (T0 + 9, 141, 1, "P", "I", 1005),
        ]
    )
    raw = orjson.dumps(body)

    page = parse_page(raw, "AAPL")

    assert page.rows == 5 and page.skipped == 0
    assert page.keys == [(T0, 1001), (T0, 1002), (T0 + 5, 1003), (T0 + 9, 1004)] + [
        (T0 + 9, 1005)
    ]
    assert page.trades == [
        Trade("AAPL", Decimal("229.99"), Decimal(100), T0, (), False),
        Trade("AAPL", Decimal("229.99"), Decimal(37), T0, (12, 37), True),
        Trade("AAPL", Decimal("230.1"), Decimal(200), T0 + 5, (14,), False),
        Trade("AAPL", Decimal("0.0001"), Decimal(5), T0 + 9, (2,), True),
        Trade("AAPL", Decimal("141"), Decimal(1), T0 + 9, (37,), False),
    ]
    # The same numbers the WebSocket parser makes of the same JSON numbers.
    for trade in page.trades:
        frame = {"s": "AAPL", "p": float(trade.price), "v": 1, "t": T0}
        if trade.price == 141:
            frame["p"] = 141
        assert parse_frame(orjson.dumps(frame)).price == trade.price
    assert str(page.trades[2].price) == "230.1"  # not 230.099999...
    assert (page.first_ts_ms, page.last_ts_ms) == (T0, T0 + 9)
    assert parse_page(body, "AAPL").trades == page.trades  # decoded already
    assert parse_page(raw.decode(), "AAPL").trades == page.trades


def test_the_tape_decides_what_b_means():
    body = page_body([(T0, 10.5, 100, "Q", "@  B", 1)])
    assert parse_page(body, "AAPL").trades[0].conditions == (2,)
    assert parse_page(body, "AAPL", tape="UTP").trades[0].conditions == (4,)
    assert parse_page(body, "AAPL", tape="CTA").trades[0].conditions == (2,)


def test_bad_rows_are_skipped_and_counted_by_reason():
    good = (T0, 10.0, 100, "Q", "@", 1)
    bad_rows = [
        ((5, 10.0, 100, "Q", "@", 2), "ts: not an epoch-ms int in 2000-2100"),
        ((4_102_444_800_000, 10.0, 1, "Q", "@", 3), "ts: not an epoch-ms int"),
        ((str(T0), 10.0, 100, "Q", "@", 4), "ts: not an epoch-ms int"),
        ((float(T0), 10.0, 100, "Q", "@", 5), "ts: not an epoch-ms int"),
        ((True, 10.0, 100, "Q", "@", 6), "ts: not an epoch-ms int"),
        ((T0, math.nan, 100, "Q", "@", 7), "price: negative"),  # NaN
        ((T0, math.inf, 100, "Q", "@", 8), "price: too large"),
        ((T0, 0, 100, "Q", "@", 9), "price: not positive"),
        ((T0, 0.0, 100, "Q", "@", 10), "price: not positive"),
        ((T0, -1.5, 100, "Q", "@", 11), "price: negative"),
        ((T0, "n/a", 100, "Q", "@", 12), "price: not a number"),
        ((T0, None, 100, "Q", "@", 13), "price: missing"),
        ((T0, True, 100, "Q", "@", 14), "price: not a number"),
        ((T0, 10.0, -100, "Q", "@", 15), "shares: negative"),
        ((T0, 10.0, "many", "Q", "@", 16), "shares: not a number"),
        ((T0, 10.0, 100, "Q", "@", None), "seq: not a non-negative int"),
        ((T0, 10.0, 100, "Q", "@", -1), "seq: not a non-negative int"),
        ((T0, 10.0, 100, "Q", "@", "17"), "seq: not a non-negative int"),
        ((T0, 10.0, 100, 7, "@", 18), "mkt: not a string"),
        ((T0, 10.0, 100, "Q", ["@"], 19), "sl: not a short string"),
        ((T0, 10.0, 100, "Q", "@" * 40, 20), "sl: not a short string"),
    ]
    body = page_body([good] + [row for row, _ in bad_rows] + [good[:5] + (99,)])

    page = parse_page(body, "AAPL")

    assert page.rows == len(bad_rows) + 2
    assert page.skipped == len(bad_rows)
    assert page.keys == [(T0, 1), (T0, 99)]
    assert sum(page.reasons.values()) == len(bad_rows)
    for _, reason in bad_rows:
        assert any(r.startswith(reason) for r in page.reasons), reason


def test_columns_of_unequal_length_skip_the_rows_they_do_not_reach():
    body = page_body([(T0 + i, 10.0 + i, 100, "Q", "@", i) for i in range(4)])
    body["price"] = body["price"][:3]
    body["sl"] = body["sl"][:2]

    page = parse_page(body, "AAPL")

    assert page.rows == 4
    assert page.keys == [(T0, 0), (T0 + 1, 1)]
    assert page.reasons == {"columns of unequal length": 2}


def test_optional_columns_may_be_absent_but_required_ones_may_not():
    body = {"ts": [T0], "price": [10.25], "shares": [3], "seq": [7]}
    page = parse_page(body, "MSFT")
    assert page.trades == [Trade("MSFT", Decimal("10.25"), Decimal(3), T0)]

    no_seq = {"ts": [T0, T0 + 1], "price": [10.0, 10.5], "shares": [1, 2]}
    page = parse_page(no_seq, "MSFT")
    assert (page.rows, page.skipped, page.trades) == (2, 2, [])
    assert page.reasons == {"seq: missing": 2}


def test_unknown_letters_are_counted_per_row_and_the_print_kept():
    body = page_body(
        [
            (T0, 10.0, 100, "Q", "@ J ", 1),
            (T0 + 1, 10.0, 100, "Q", "@FJ?", 2),
            (T0 + 2, 10.0, 100, "Q", "@ TI", 3),
        ]
    )
    page = parse_page(body, "AAPL")
    assert [t.conditions for t in page.trades] == [(), (14,), (12, 37)]
    assert page.unknown_letters == {"J": 2, "?": 1}
    assert page.skipped == 0


@pytest.mark.parametrize("body", [b"[]", b"{}", [], {}])
def test_an_empty_answer_is_an_empty_page(body):
    page = parse_page(body, "AAPL")
    assert (page.rows, page.trades, page.last_ts_ms) == (0, [], None)


def test_empty_columns_are_an_empty_page():
    page = parse_page(page_body([]), "AAPL")
    assert (page.rows, page.skipped, page.trades) == (0, 0, [])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b'{"ts":[1790000000000],"price":[10.5',  # cut short
        b"not json",
        b"[1, 2]",
        b'"ts"',
        b'{"error":"Not found"}',
        b'{"ts": 1790000000000, "price": 1}',
        {"ts": "1,2", "price": [1], "shares": [1], "seq": [1]},
    ],
)
def test_a_body_that_is_not_a_page_raises(body):
    with pytest.raises(TickPageError):
        parse_page(body, "AAPL")


# -- several pages ----------------------------------------------------------------


def keys_of(trades: list[Trade], page) -> list[tuple[int, int]]:
    by_trade = dict(zip(map(id, page.trades), page.keys, strict=True))
    return [by_trade[id(t)] for t in trades]


def test_dedupe_keeps_each_ts_seq_once_in_time_order_across_pages():
    first = parse_page(
        page_body(
            [
                (T0, 10.0, 1, "Q", "@", 1),
                (T0 + 400, 10.1, 1, "Q", "@", 2),
                (T0 + 1000, 10.2, 1, "Q", "@", 3),
                (T0 + 1000, 10.3, 1, "Q", "@", 4),  # same ms, another print
            ]
        ),
        "AAPL",
    )
    # The next request starts at the second of the last print: 3 and 4 again.
    second = parse_page(
        page_body(
            [
                (T0 + 1000, 10.2, 1, "Q", "@", 3),
                (T0 + 1000, 10.3, 1, "Q", "@", 4),
                (T0 + 1000, 10.4, 1, "Q", "@", 5),  # same ms, not seen yet
                (T0 + 1500, 10.5, 1, "Q", "@", 6),
            ]
        ),
        "AAPL",
    )
    dedupe = Dedupe()

    kept = dedupe.add_page(first)
    dedupe.advance((first.last_ts_ms // 1000) * 1000)
    kept += dedupe.add_page(second)

    assert [t.price for t in kept] == [Decimal(f"10.{i}") for i in range(6)]
    assert [t.ts_ms for t in kept] == sorted(t.ts_ms for t in kept)
    assert (dedupe.kept, dedupe.duplicates) == (6, 2)
    assert merge_pages([second, first]) == kept  # any order, any overlap


def test_dedupe_forgets_keys_before_the_horizon_and_treats_older_rows_as_repeats():
    dedupe = Dedupe()
    trades = [Trade("AAPL", Decimal(1), Decimal(1), T0 + i * 1000) for i in range(3)]
    keys = [(t.ts_ms, i) for i, t in enumerate(trades)]
    assert dedupe.add(trades, keys) == trades

    dedupe.advance(T0 + 2000)
    assert dedupe._seen == {keys[2]}  # one second's worth kept
    assert dedupe.add(trades, keys) == []
    assert dedupe.duplicates == 3
    dedupe.advance(T0)  # never backwards
    assert dedupe.add(trades[:1], keys[:1]) == []
    with pytest.raises(ValueError):
        dedupe.add(trades, keys[:2])


# -- paging -------------------------------------------------------------------------


def test_a_short_page_ends_the_range():
    assert next_page(100, 200, 7, 10, 150_999) == NextPage(True, None)
    assert next_page(100, 200, 0, 10, None) == NextPage(True, None)


def test_a_full_page_continues_from_the_second_of_its_last_print():
    assert next_page(100, 200, 10, 10, 150_999) == NextPage(False, 150)
    assert next_page(100, 200, 10, 10, 101_000) == NextPage(False, 101)


def test_a_full_page_reaching_the_end_of_the_range_ends_it():
    assert next_page(100, 200, 10, 10, 200_000) == NextPage(True, None)
    assert next_page(100, 200, 10, 10, 199_999) == NextPage(False, 199)


def test_a_full_page_inside_one_second_is_reported_not_repeated():
    # More than `limit` prints in second 100: asking from 100 again would
    # return the same page forever.
    step = next_page(100, 200, 10, 10, 100_999)
    assert step == NextPage(False, 101, stuck=True)
    assert next_page(199, 200, 10, 10, 199_500) == NextPage(True, None, stuck=True)
    assert next_page(100, 200, 10, 10, None) == NextPage(False, 101, stuck=True)


def test_bad_paging_arguments_raise():
    with pytest.raises(ValueError):
        next_page(200, 200, 1, 10, None)
    with pytest.raises(ValueError):
        next_page(100, 200, 1, 0, None)


def serve(tape: list[tuple], from_s: int, to_s: int, limit: int) -> bytes:
    """A pure stand-in for the endpoint: rows with from <= ts/1000 < to, sorted
    by (ts, seq), at most `limit`."""
    rows = sorted(
        (r for r in tape if from_s * 1000 <= r[0] < to_s * 1000),
        key=lambda r: (r[0], r[5]),
    )[:limit]
    return orjson.dumps(page_body(rows))


def fetch_all(tape, from_s, to_s, limit):
    dedupe, trades, stuck, requests = Dedupe(), [], [], 0
    start = from_s
    while True:
        requests += 1
        assert requests < 1000, "paging does not end"
        page = parse_page(serve(tape, start, to_s, limit), "AAPL")
        trades += dedupe.add_page(page)
        step = next_page(start, to_s, page.rows, limit, page.last_ts_ms)
        if step.stuck:
            stuck.append(start)
        if step.done:
            return trades, stuck, requests, dedupe
        dedupe.advance(step.from_s * 1000)
        start = step.from_s


def test_paging_a_range_by_time_returns_every_print_once():
    base = 1_790_000_000
    tape = []
    seq = 0
    for second in range(base, base + 30):
        for i in range(second % 7 + 1):  # 1..7 prints a second, some sharing a ms
            seq += 1
            ts = second * 1000 + (i // 2) * 100
            tape.append((ts, 10 + seq / 100, 100, "Q", "@ TI" if i % 3 else "@", seq))

    trades, stuck, requests, dedupe = fetch_all(tape, base, base + 30, limit=9)

    assert stuck == []
    assert [(t.ts_ms, t.price) for t in trades] == [
        (r[0], Decimal(str(r[1]))) for r in tape
    ]
    assert requests > len(tape) // 9  # pages overlap by the boundary second
    assert dedupe.duplicates > 0
    # A range inside the tape: its edges are whole seconds, `to` exclusive.
    trades, *_ = fetch_all(tape, base + 10, base + 12, limit=9)
    assert {t.ts_ms // 1000 for t in trades} == {base + 10, base + 11}
    assert len(trades) == sum(1 for r in tape if base + 10 <= r[0] // 1000 < base + 12)


def test_paging_reports_a_second_with_more_prints_than_the_limit_and_moves_on():
    base = 1_790_000_000
    tape = [(base * 1000 + i, 10.0, 1, "Q", "@", i) for i in range(5)]
    tape += [((base + 1) * 1000 + i, 11.0, 1, "Q", "@", 100 + i) for i in range(12)]
    tape += [((base + 2) * 1000 + i, 12.0, 1, "Q", "@", 200 + i) for i in range(3)]

    trades, stuck, requests, _ = fetch_all(tape, base, base + 3, limit=10)

    assert stuck == [base + 1]  # once, then past it
    assert requests < 10
    seconds = [t.ts_ms // 1000 for t in trades]
    assert seconds.count(base) == 5 and seconds.count(base + 2) == 3
    assert seconds.count(base + 1) == 10  # the 2 beyond the limit are out of reach
