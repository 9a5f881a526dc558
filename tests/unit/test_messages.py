from decimal import Decimal

import pytest

from api.market.messages import Malformed, Quote, Status, Trade, parse_frame

T = 1790329995797


def test_it_parses_a_us_trade_exactly_as_written():
    raw = (
        b'{"s":"AAPL","p":335.95,"c":[14,37,41],"v":48,"dp":false,'
        b'"ms":"open","t":1790329995797}'
    )
    assert parse_frame(raw) == Trade(
        "AAPL", Decimal("335.95"), Decimal("48"), T, (14, 37, 41), False, "open"
    )
    assert str(parse_frame(raw).price) == "335.95"


def test_it_accepts_str_as_well_as_bytes():
    raw = '{"s":"MSFT","p":141,"c":[],"v":10,"t":1790329995797}'
    assert parse_frame(raw) == parse_frame(raw.encode())
    assert parse_frame(raw) == Trade("MSFT", Decimal(141), Decimal(10), T)


def test_it_keeps_an_int_looking_price_as_an_integer_decimal():
    trade = parse_frame(b'{"s":"MSFT","p":141,"v":1,"t":1790329995797}')
    assert trade.price == Decimal("141")
    assert str(trade.price) == "141"


def test_it_accepts_fractional_volume():
    trade = parse_frame(b'{"s":"TSLA","p":250.1,"v":0.3,"t":1790329995797}')
    assert trade.size == Decimal("0.3")
    assert trade.size + Decimal("0.7") == Decimal("1")


def test_it_defaults_absent_conditions_status_and_dark_pool():
    trade = parse_frame(b'{"s":"TSLA","p":1.5,"v":2,"t":1790329995797}')
    assert trade.conditions == ()
    assert trade.market_status is None
    assert trade.dark_pool is False


def test_it_accepts_empty_conditions_and_dark_pool_true():
    trade = parse_frame(
        b'{"s":"TSLA","p":1.5,"v":2,"c":[],"dp":true,"t":1790329995797}'
    )
    assert trade.conditions == ()
    assert trade.dark_pool is True


@pytest.mark.parametrize("status", ["open", "extended-hours", "extended hours", "x"])
def test_it_accepts_any_market_status_string(status):
    raw = f'{{"s":"A","p":1,"v":1,"ms":"{status}","t":1790329995797}}'
    assert parse_frame(raw).market_status == status


def test_it_accepts_size_zero():
    assert parse_frame(b'{"s":"A","p":1,"v":0,"t":1790329995797}').size == 0


def test_it_accepts_a_timestamp_as_an_integer_string():
    assert parse_frame(b'{"s":"A","p":1,"v":1,"t":"1790329995797"}').ts_ms == T


def test_it_parses_a_crypto_trade_with_string_numbers():
    raw = (
        b'{"s":"BTC-USD","p":"84588","q":"0.002","dc":"0.2196","dd":"185.7",'
        b'"t":1790329995797}'
    )
    assert parse_frame(raw) == Trade("BTC-USD", Decimal("84588"), Decimal("0.002"), T)


def test_it_parses_a_us_quote():
    raw = b'{"s":"AAPL","ap":317.297,"as":160,"bp":316.988,"bs":40,"t":1784115291977}'
    assert parse_frame(raw) == Quote(
        "AAPL",
        bid=Decimal("316.988"),
        ask=Decimal("317.297"),
        bid_size=Decimal(40),
        ask_size=Decimal(160),
        ts_ms=1784115291977,
    )


def test_it_parses_a_forex_quote_and_ignores_its_string_changes():
    raw = (
        b'{"s":"EURUSD","a":1.13896,"b":1.13895,"dc":"0.0619","dd":"0.0007",'
        b'"ppms":true,"t":1790329995797}'
    )
    assert parse_frame(raw) == Quote(
        "EURUSD", Decimal("1.13895"), Decimal("1.13896"), None, None, T
    )


@pytest.mark.parametrize(
    "raw, code, message, authorized",
    [
        ('{"status_code":200,"message":"Authorized"}', 200, "Authorized", True),
        ('{"status":200,"message":"Authorized"}', 200, "Authorized", True),
        ('{"status":403,"message":"Server error"}', 403, "Server error", False),
        ('{"status_code":422,"message":"Symbols limit reached"}', 422, None, False),
        ('{"status":500,"message":"Server error"}', 500, "Server error", False),
        ('{"status_code":200,"message":"Hello"}', 200, "Hello", False),
    ],
)
def test_it_parses_status_frames(raw, code, message, authorized):
    status = parse_frame(raw)
    assert type(status) is Status
    assert status.code == code
    if message is not None:
        assert status.message == message
    assert status.is_authorized is authorized
    assert parse_frame(raw.encode()) == status


def test_it_reads_a_missing_status_message_as_empty():
    assert parse_frame(b'{"status":500}') == Status(500, "")


GOOD = {"s": '"AAPL"', "p": "335.95", "v": "48", "t": "1790329995797"}


def trade_frame(**fields: str | None) -> str:
    """A valid us trade with some fields replaced (raw JSON) or removed (None)."""
    merged = {**GOOD, **fields}
    body = ",".join(f'"{k}":{v}' for k, v in merged.items() if v is not None)
    return "{" + body + "}"


def test_the_trade_frame_helper_builds_a_valid_frame():
    assert parse_frame(trade_frame()) == Trade(
        "AAPL", Decimal("335.95"), Decimal(48), T
    )


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "invalid json"),
        (b"{", "invalid json"),
        (b"\xff\xfe", "invalid json"),
        (b'{"s":"A","p":NaN,"v":1,"t":1790329995797}', "invalid json"),
        (b'{"s":"A","p":Infinity,"v":1,"t":1790329995797}', "invalid json"),
        (b'{"s":"A","p":1e400,"v":1,"t":1790329995797}', "invalid json"),
        (b"[1,2]", "not a json object"),
        (b'"AAPL"', "not a json object"),
        (b"null", "not a json object"),
        (b"42", "not a json object"),
        (b"{}", "unknown frame"),
        (b'{"action":"subscribe"}', "unknown frame"),
    ],
)
def test_it_reports_frames_that_are_not_messages(raw, reason):
    assert parse_frame(raw) == Malformed(reason, raw.decode("utf-8", errors="replace"))


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"p": "0"}, "p: not positive"),
        ({"p": "0.0"}, "p: not positive"),
        ({"p": "-1.5"}, "p: negative"),
        ({"p": '"0"'}, "p: not positive"),
        ({"p": '"-3"'}, "p: negative"),
        ({"p": "true"}, "p: not a number"),
        ({"p": "false"}, "p: not a number"),
        ({"p": "[1]"}, "p: not a number"),
        ({"p": "{}"}, "p: not a number"),
        ({"p": '"abc"'}, "p: not a number"),
        ({"p": '"NaN"'}, "p: not a number"),
        ({"p": '"nan"'}, "p: not a number"),
        ({"p": '"Infinity"'}, "p: not a number"),
        ({"p": '"-inf"'}, "p: not a number"),
        ({"p": '"1_000"'}, "p: not a number"),
        ({"p": '" 12"'}, "p: not a number"),
        ({"p": '""'}, "p: not a number"),
        ({"p": '"١٢"'}, "p: not a number"),
        ({"p": '"1e"'}, "p: not a number"),
        ({"p": '"1.2.3"'}, "p: not a number"),
        ({"p": "1000000000"}, "p: too large"),
        ({"p": "1e9"}, "p: too large"),
        ({"p": "9223372036854775807"}, "p: too large"),
        ({"p": '"1e99999"'}, "p: too large"),
        ({"p": "1e-300"}, "p: too precise"),
        ({"p": '"1e-99999"'}, "p: too precise"),
        ({"p": '"1.00000000000000000000001"'}, "p: too precise"),
        ({"p": '"123456789.123456789123"'}, "p: too precise"),
        ({"v": None}, "v: missing"),
        ({"v": "null"}, "v: missing"),
        ({"v": "-1"}, "v: negative"),
        ({"v": "-0.5"}, "v: negative"),
        ({"v": "true"}, "v: not a number"),
        ({"v": '"x"'}, "v: not a number"),
        ({"v": "1e12"}, "v: too large"),
        ({"v": "1000000000000"}, "v: too large"),
        ({"s": None}, "s: not a short non-empty string"),
        ({"s": '""'}, "s: not a short non-empty string"),
        ({"s": "1"}, "s: not a short non-empty string"),
        ({"s": '["AAPL"]'}, "s: not a short non-empty string"),
        ({"s": '"' + "A" * 33 + '"'}, "s: not a short non-empty string"),
        ({"s": '"AA\\nPL"'}, "s: not a short non-empty string"),
        ({"t": None}, "t: missing"),
        ({"t": "null"}, "t: missing"),
        ({"t": '"soon"'}, "t: not an integer"),
        ({"t": '"1790329995797.5"'}, "t: not an integer"),
        ({"t": "1790329995797.5"}, "t: not an integer"),
        ({"t": "true"}, "t: not an integer"),
        ({"t": "[1]"}, "t: not an integer"),
        ({"t": "-1"}, "t: out of range"),
        ({"t": "0"}, "t: out of range"),
        ({"t": "946684799999"}, "t: out of range"),  # 1999-12-31T23:59:59.999
        ({"t": "4102444800000"}, "t: out of range"),  # 2100-01-01
        ({"t": "1790329995"}, "t: out of range"),  # seconds, not milliseconds
        ({"c": '"14"'}, "c: not a list of ints"),
        ({"c": "14"}, "c: not a list of ints"),
        ({"c": "[1.5]"}, "c: not a list of ints"),
        ({"c": "[true]"}, "c: not a list of ints"),
        ({"c": '["14"]'}, "c: not a list of ints"),
        ({"c": "[-1]"}, "c: not a list of ints"),
        ({"c": "{}"}, "c: not a list of ints"),
        ({"dp": "1"}, "dp: not a boolean"),
        ({"dp": '"false"'}, "dp: not a boolean"),
        ({"ms": "1"}, "ms: not a string"),
        ({"ms": "[]"}, "ms: not a string"),
    ],
)
def test_it_reports_malformed_trades_with_a_reason(fields, reason):
    raw = trade_frame(**fields)
    for frame in (raw, raw.encode()):
        result = parse_frame(frame)
        assert type(result) is Malformed
        assert result.reason == reason
        assert result.excerpt == raw[:120]


def test_it_accepts_the_edges_of_the_limits():
    trade = parse_frame(
        trade_frame(p="999999999.99", v="999999999999", t="946684800000")
    )
    assert trade.price == Decimal("999999999.99")
    assert trade.size == Decimal("999999999999")
    assert trade.ts_ms == 946_684_800_000
    assert parse_frame(trade_frame(p="1e-05")).price == Decimal("0.00001")
    assert parse_frame(trade_frame(t="1790329995797.0")).ts_ms == T


@pytest.mark.parametrize(
    "raw, reason",
    [
        (
            b'{"s":"AAPL","ap":1,"as":1,"bp":0,"bs":1,"t":1790329995797}',
            "bp: not positive",
        ),
        (b'{"s":"AAPL","ap":-1,"bp":1,"t":1790329995797}', "ap: negative"),
        (b'{"s":"AAPL","ap":1,"as":-1,"bp":1,"t":1790329995797}', "as: negative"),
        (b'{"s":"AAPL","ap":1,"bp":1,"bs":"x","t":1790329995797}', "bs: not a number"),
        (b'{"s":"AAPL","bp":1,"t":1790329995797}', "ap: missing"),
        (b'{"s":"EURUSD","a":"NaN","b":1.1,"t":1790329995797}', "a: not a number"),
        (b'{"s":"EURUSD","a":1.1,"b":1.1}', "t: missing"),
        (
            b'{"s":"","a":1.1,"b":1.1,"t":1790329995797}',
            "s: not a short non-empty string",
        ),
        (b'{"status":true,"message":"x"}', "status: not an integer code"),
        (b'{"status_code":"oops"}', "status: not an integer code"),
        (b'{"status":200,"message":7}', "message: not a string"),
    ],
)
def test_it_reports_malformed_quotes_and_statuses(raw, reason):
    assert parse_frame(raw) == Malformed(reason, raw.decode())


def test_it_cuts_the_excerpt_at_120_characters():
    raw = b'{"s":"' + b"A" * 300 + b'"}'
    result = parse_frame(raw)
    assert result.reason == "unknown frame"
    assert result.excerpt == raw[:120].decode()


def test_it_replaces_undecodable_bytes_in_the_excerpt():
    assert parse_frame(b'{"s":"\xff"}') == Malformed("invalid json", '{"s":"\ufffd"}')


@pytest.mark.parametrize("raw", [None, 42, 1.5, ["x"], object()])
def test_it_never_raises_even_on_non_text_input(raw):
    result = parse_frame(raw)
    assert type(result) is Malformed
    assert result.reason == "invalid json"


def test_it_gives_the_same_trade_from_a_memoised_conversion():
    raw = trade_frame(p="12.5", v="0.25")
    first, second = parse_frame(raw), parse_frame(raw)
    assert first == second == Trade("AAPL", Decimal("12.5"), Decimal("0.25"), T)


def test_a_trade_is_frozen_and_hashable():
    trade = parse_frame(trade_frame())
    with pytest.raises(AttributeError):
        trade.price = Decimal(1)
    assert hash(trade) == hash(Trade("AAPL", Decimal("335.95"), Decimal(48), T))
