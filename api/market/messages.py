"""EODHD WebSocket frames -> typed messages. Pure: no I/O, no clock.

parse_frame() sits on the hot path (one call per frame) and never raises: anything
it cannot trust comes back as Malformed with a short reason.
"""

from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation

import orjson

# Limits on what a sane feed sends; anything beyond is a broken frame.
MAX_PRICE = 1e9
MAX_SIZE = 1e12
MAX_DIGITS = 20  # significant digits, and digits after the point
MAX_SYMBOL_LEN = 32
MAX_CONDITIONS = 64
T_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
T_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
EXCERPT_LEN = 120

_ZERO = Decimal(0)
_NUMERIC_CHARS = str.maketrans("", "", "0123456789.+-eE")


@dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    price: Decimal
    size: Decimal
    ts_ms: int
    conditions: tuple[int, ...] = ()
    dark_pool: bool = False
    market_status: str | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal | None
    ask_size: Decimal | None
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Status:
    code: int
    message: str

    @property
    def is_authorized(self) -> bool:
        return self.code == 200 and self.message == "Authorized"


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str
    excerpt: str


Message = Trade | Quote | Status | Malformed

# Memoised number conversions (see _trade). Module-level so every caller shares
# them; single dict operations are atomic under the GIL, so a second thread
# calling parse_frame can at worst cause a redundant conversion.
_CACHE_MAX = 50_000
_price_floats: dict[float, Decimal] = {}
_size_floats: dict[float, Decimal] = {}
_size_ints: dict[int, Decimal] = {}


def _remember(cache: dict, key: float, value: Decimal) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()  # crude but bounded; refills with what is current
    cache[key] = value


def _trade_builder():
    # A frozen dataclass __init__ goes through object.__setattr__ per field
    # (~0.8 us for Trade here); the slot descriptors' setters do the same work
    # in about half that. Equality, hashing and repr stay the dataclass's own.
    setters = [getattr(Trade, field.name).__set__ for field in fields(Trade)]
    if len(setters) != 7:
        raise RuntimeError("Trade fields changed: update _trade_builder")
    s0, s1, s2, s3, s4, s5, s6 = setters
    new = object.__new__

    def build(symbol, price, size, ts_ms, conditions, dark_pool, market_status):
        trade = new(Trade)
        s0(trade, symbol)
        s1(trade, price)
        s2(trade, size)
        s3(trade, ts_ms)
        s4(trade, conditions)
        s5(trade, dark_pool)
        s6(trade, market_status)
        return trade

    return build


_new_trade = _trade_builder()


def parse_frame(raw: bytes | str) -> Message:
    """Parse one text frame. Never raises."""
    try:
        obj = orjson.loads(raw)
    except Exception:  # JSONDecodeError, or TypeError for a non-text input
        return Malformed("invalid json", _excerpt(raw))
    try:
        if type(obj) is not dict:
            return Malformed("not a json object", _excerpt(raw))
        p = obj.get("p")
        if p is not None:
            result = _trade(obj, p)
        elif "status_code" in obj or "status" in obj:
            result = _status(obj)
        elif "bp" in obj or "b" in obj:
            result = _quote(obj)
        else:
            result = "unknown frame"
    except Exception as exc:  # a bug here must not kill the receiver
        result = f"parser error: {type(exc).__name__}"
    if type(result) is str:
        return Malformed(result, _excerpt(raw))
    return result


def _trade(obj: dict, p: object) -> Trade | str:
    # Feeds repeat prices and sizes endlessly: memoised conversions skip most
    # repr()/Decimal() work. Only valid results are cached, per input type, so
    # 141 and 141.0 keep their own spelling.
    price = _price_floats.get(p) if type(p) is float else None
    if price is None:
        price = _decimal(p, MAX_PRICE)
        if type(price) is str:
            return "p: " + price
        if not price:
            return "p: not positive"
        if type(p) is float:
            _remember(_price_floats, p, price)

    v = obj.get("v")
    if v is None:
        v = obj.get("q")  # crypto
        if v is None:
            return "v: missing"
    kind = type(v)
    if kind is int:
        size = _size_ints.get(v)
    elif kind is float:
        size = _size_floats.get(v)
    else:
        size = None
    if size is None:
        size = _decimal(v, MAX_SIZE)
        if type(size) is str:
            return "v: " + size
        if kind is int:
            _remember(_size_ints, v, size)
        elif kind is float:
            _remember(_size_floats, v, size)

    symbol = obj.get("s")
    if (
        type(symbol) is not str
        or not 0 < len(symbol) <= MAX_SYMBOL_LEN
        or not symbol.isprintable()
    ):
        return "s: not a short non-empty string"

    t = obj.get("t")
    if type(t) is not int or not T_MIN_MS <= t < T_MAX_MS:
        t = _timestamp(t)
        if type(t) is str:
            return t

    c = obj.get("c")
    if not c:
        if c is None or type(c) is list:
            conditions = ()
        else:
            return "c: not a list of ints"
    elif type(c) is list and len(c) <= MAX_CONDITIONS:
        for code in c:
            if type(code) is not int or not 0 <= code < 2**31:
                return "c: not a list of ints"
        conditions = tuple(c)
    else:
        return "c: not a list of ints"

    dp = obj.get("dp", False)
    if dp is None:
        dp = False
    elif type(dp) is not bool:
        return "dp: not a boolean"

    ms = obj.get("ms")
    if ms is not None and type(ms) is not str:
        return "ms: not a string"

    return _new_trade(symbol, price, size, t, conditions, dp, ms)


def _quote(obj: dict) -> Quote | str:
    if "bp" in obj:  # us-quote
        bid_key, ask_key = "bp", "ap"
        bid_size = _optional_size(obj, "bs")
        if type(bid_size) is str:
            return "bs: " + bid_size
        ask_size = _optional_size(obj, "as")
        if type(ask_size) is str:
            return "as: " + ask_size
    else:  # forex: no sizes
        bid_key, ask_key = "b", "a"
        bid_size = ask_size = None
    bid = _decimal(obj.get(bid_key), MAX_PRICE)
    if type(bid) is str:
        return bid_key + ": " + bid
    if not bid:
        return bid_key + ": not positive"
    ask = _decimal(obj.get(ask_key), MAX_PRICE)
    if type(ask) is str:
        return ask_key + ": " + ask
    if not ask:
        return ask_key + ": not positive"
    symbol = obj.get("s")
    if (
        type(symbol) is not str
        or not 0 < len(symbol) <= MAX_SYMBOL_LEN
        or not symbol.isprintable()
    ):
        return "s: not a short non-empty string"
    t = _timestamp(obj.get("t"))
    if type(t) is str:
        return t
    return Quote(symbol, bid, ask, bid_size, ask_size, t)


def _optional_size(obj: dict, key: str) -> Decimal | None | str:
    value = obj.get(key)
    if value is None:
        return None
    return _decimal(value, MAX_SIZE)


def _status(obj: dict) -> Status | str:
    code = obj.get("status_code")
    if code is None:
        code = obj.get("status")
    if type(code) is str and code.isascii() and code.isdigit() and len(code) <= 3:
        code = int(code)
    if type(code) is not int or not 0 <= code < 1000:
        return "status: not an integer code"
    message = obj.get("message", "")
    if message is None:
        message = ""
    elif type(message) is not str:
        return "message: not a string"
    return Status(code, message)


def _decimal(value: object, limit: float) -> Decimal | str:
    """A non-negative Decimal below limit, exactly as written, or a problem."""
    kind = type(value)
    if kind is float:
        if not value >= 0.0:  # also catches NaN
            return "negative"
        if value >= limit:
            return "too large"
        if value == 0.0:
            return _ZERO  # -0.0 included
        text = repr(value)
        # Without an exponent a float's repr has at most 17 significant digits
        # and 20 after the point: no check needed.
        return Decimal(text) if "e" not in text else _checked(Decimal(text))
    if kind is int:
        if value < 0:
            return "negative"
        if value >= limit:
            return "too large"
        return Decimal(value)
    if kind is str:
        # Decimal() alone would also take "1_000", " 1 ", "NaN" and non-ASCII digits.
        if not value or len(value) > 2 * MAX_DIGITS or value.translate(_NUMERIC_CHARS):
            return "not a number"
        try:
            number = Decimal(value)
        except InvalidOperation:
            return "not a number"
        if number < 0:
            return "negative"
        if number >= limit:
            return "too large"
        if not number:
            return _ZERO
        return _checked(number)
    if value is None:
        return "missing"
    return "not a number"


def _checked(number: Decimal) -> Decimal | str:
    # Finite by construction here; reject absurd precision ("1e-300", 40 digits).
    _, digits, exponent = number.as_tuple()
    if len(digits) > MAX_DIGITS or exponent < -MAX_DIGITS:
        return "too precise"
    return number


def _timestamp(t: object) -> int | str:
    if t is None:
        return "t: missing"
    if type(t) is float and t.is_integer():
        t = int(t)
    elif type(t) is str and t.isascii() and t.isdigit() and len(t) <= 15:
        t = int(t)
    if type(t) is not int:
        return "t: not an integer"
    if not T_MIN_MS <= t < T_MAX_MS:
        return "t: out of range"
    return t


def _excerpt(raw: object) -> str:
    try:
        if isinstance(raw, str):
            return raw[:EXCERPT_LEN]
        if isinstance(raw, bytes | bytearray | memoryview):
            return bytes(raw[:EXCERPT_LEN]).decode("utf-8", errors="replace")
        return repr(raw)[:EXCERPT_LEN]
    except Exception:
        return "<unprintable>"
