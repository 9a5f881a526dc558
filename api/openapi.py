"""The read API's OpenAPI 3.1 schema, generated from the same descriptions the
views read (api/readapi.py: the series, their fields and parameters), so the
schema cannot drift from the code: a test walks every operation with
schemathesis against the running API."""

from api import observed, readapi, resample

PATHS = {
    "second": "/api/second-candles/",
    "minute": "/api/minute-candles/",
    "tick": "/api/tick-candles/",
    "quote": "/api/quote-candles/",
    "sentiment": "/api/realtime-sentiment/",
}

_TIME_TEXT = (
    "ISO 8601 (UTC when no offset; `Z` allowed) or epoch seconds or milliseconds "
    "(a number from 10^11 is milliseconds); 1970-2099."
)
_NULLABLE_NUMBER = {"type": ["number", "string", "null"]}
_TYPES = {
    readapi.TIME: {"type": ["string", "null"], "format": "date-time"},
    readapi.DECIMAL: {
        **_NULLABLE_NUMBER,
        "description": "a JSON number, or an exact decimal string with "
        "decimals=string; null when unknown (e.g. no eligible print)",
    },
    readapi.INT: {"type": "integer"},
    readapi.FLOAT: {"type": ["number", "null"]},
}


_ONE = "\\s*[A-Za-z0-9][A-Za-z0-9.\\-_:/^=]{0,31}\\s*"


def _param(name: str, schema: dict, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


COMMON_PARAMETERS = [
    _param(
        "symbol",
        {
            "type": "string",
            "default": "QLD",
            "pattern": f"^{_ONE}(,{_ONE}){{0,{readapi.MAX_SYMBOLS - 1}}}$",
        },
        f"The symbol (case-insensitive), or up to {readapi.MAX_SYMBOLS} "
        "comma-separated: the response then has `tickers` instead of `ticker`, "
        "every item names its `symbol`, items are ordered by time then symbol, "
        "limit and cursor page the merged list and last=N is the newest N of each "
        "symbol (CSV: a leading symbol column).",
    ),
    _param("start_time", {"type": "string"}, "Window start, inclusive. " + _TIME_TEXT),
    _param("end_time", {"type": "string"}, "Window end, exclusive. " + _TIME_TEXT),
    _param(
        "limit",
        {"type": "integer", "minimum": 1, "default": readapi.DEFAULT_LIMIT},
        f"Items per page (capped at {readapi.MAX_LIMIT}; metadata.limit_capped).",
    ),
    _param(
        "last",
        {"type": "integer", "minimum": 1},
        "The newest N items of the window, oldest first (not with limit or cursor; "
        "without start_time the window reaches back 7 days).",
    ),
    _param("cursor", {"type": "string"}, "From metadata.next: the following page."),
    _param(
        "format",
        {"type": "string", "enum": ["json", "csv"], "default": "json"},
        "csv streams every row of the window (at most 31 days).",
    ),
    _param("tz", {"type": "string"}, "IANA time zone for timestamps (default UTC)."),
    _param(
        "decimals",
        {"type": "string", "enum": ["float", "string"], "default": "float"},
        "Prices and volumes as JSON numbers or as exact decimal strings.",
    ),
]
INTERVAL = _param(
    "interval",
    {"type": "string", "enum": list(resample.INTERVALS), "default": "1s"},
    "Resample (api/resample.py): first/last non-null price by time, volume summed, "
    "VWAP volume-weighted, the score of the bucket's last bar; 1-minute bars read "
    "when they exist.",
)

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}
METADATA = {
    "type": "object",
    "required": ["count", "start_time", "end_time", "timeframe", "limit", "truncated"],
    "properties": {
        "count": {"type": "integer"},
        "start_time": {"type": "string", "format": "date-time"},
        "end_time": {"type": "string", "format": "date-time"},
        "end_inclusive": {"type": "boolean"},
        "timeframe": {"type": "string"},
        "limit": {"type": "integer"},
        "max_limit": {"type": "integer"},
        "limit_capped": {"type": "boolean"},
        "truncated": {"type": "boolean"},
        "next": {"type": ["string", "null"]},
        "source": {"type": "string"},
        "gaps": {
            "type": "array",
            "description": "Time in the window no collector observed (after the "
            "symbol's coverage began; see /api/coverage/).",
            "items": {"$ref": "#/components/schemas/Gap"},
        },
        "coverage_from": {
            "type": "object",
            "description": "Per symbol, when its coverage records begin (null: "
            "none recorded, nothing known about gaps).",
            "additionalProperties": {"type": ["string", "null"]},
        },
    },
}
GAP = {
    "type": "object",
    "required": ["symbol", "start", "end"],
    "properties": {
        "symbol": {"type": "string"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
    },
}


INTERVAL_ITEM = {
    "type": "object",
    "required": ["symbol", "stream", "start", "end", "open", "seen_through"],
    "properties": {
        "symbol": {"type": "string"},
        "stream": {"type": "string"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": ["string", "null"], "format": "date-time"},
        "open": {"type": "boolean"},
        "seen_through": {"type": "string", "format": "date-time"},
        "end_reason": {
            "type": ["string", "null"],
            "enum": ["reconnect", "stale", "market_close", "shutdown", "crash", None],
        },
        "detail": {"type": "string"},
        "collector": {"type": "string"},
        "source": {"type": "string"},
        "first_second_partial": {"type": "boolean"},
        "last_second_partial": {"type": "boolean"},
    },
}


def _item(fields) -> dict:
    return {
        "type": "object",
        "required": [f.key for f in fields],
        "properties": {
            "symbol": {"type": "string", "description": "with several symbols"},
            **{f.key: _TYPES[f.kind] for f in fields},
        },
    }


def _operation(series: readapi.Series) -> dict:
    items = _item(series.fields)
    if "interval" in series.extra_params:
        items = {"oneOf": [items, _item(readapi.RESAMPLED)]}
    parameters = list(COMMON_PARAMETERS)
    if "interval" in series.extra_params:
        parameters.append(INTERVAL)
    return {
        "get": {
            "operationId": f"{series.name}_bars",
            "summary": series.doc,
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "The window's items",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["data", "metadata"],
                                "properties": {
                                    "ticker": {"type": "string"},
                                    "tickers": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                    },
                                    "data": {"type": "array", "items": items},
                                    "metadata": METADATA,
                                },
                            }
                        },
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "304": {"description": "Not modified (If-None-Match, settled window)"},
                "400": _error_response("A bad parameter"),
                "404": _error_response("An unknown symbol"),
                **GUARDED,
            },
            "security": SECURITY,
        }
    }


def _error_response(text: str) -> dict:
    return {"description": text, "content": {"application/json": {"schema": ERROR}}}


# Tokens and throttling are the operator's choice (api/access.py): without
# API_TOKENS no token is needed.
SECURITY = [{}, {"bearer": []}]
GUARDED = {
    "401": _error_response("A token is needed (API_TOKENS is set) and was not given"),
    "429": _error_response("Over API_THROTTLE; see Retry-After"),
}


def schema() -> dict:
    paths = {PATHS[name]: _operation(series) for name, series in readapi.SERIES.items()}
    paths["/api/symbols/"] = {
        "get": {
            "operationId": "symbols",
            "summary": "Every symbol the database knows, with its newest 1-second bar.",
            "responses": {
                "200": {
                    "description": "The symbols",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["symbols", "count"],
                                "properties": {
                                    "count": {"type": "integer"},
                                    "symbols": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "symbol": {"type": "string"},
                                                "company_name": {"type": "string"},
                                                "exchange": {"type": "string"},
                                                "last_second_bar": {
                                                    "type": ["string", "null"],
                                                    "format": "date-time",
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        }
                    },
                },
                **GUARDED,
            },
            "security": SECURITY,
        }
    }
    paths["/api/coverage/"] = {
        "get": {
            "operationId": "coverage",
            "summary": "What the collectors observed in a window: coverage "
            "intervals, the gaps between them, and a summary per symbol.",
            "parameters": [
                COMMON_PARAMETERS[0],
                COMMON_PARAMETERS[1],
                COMMON_PARAMETERS[2],
                _param(
                    "stream",
                    {"type": "string", "enum": list(observed.STREAMS)},
                    "Only this EODHD stream (default: all).",
                ),
            ],
            "responses": {
                "200": {
                    "description": "Intervals and gaps",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": [
                                    "symbols",
                                    "intervals",
                                    "gaps",
                                    "metadata",
                                ],
                                "properties": {
                                    "symbols": {
                                        "type": "array",
                                        "items": {"type": "object"},
                                    },
                                    "intervals": {
                                        "type": "array",
                                        "items": INTERVAL_ITEM,
                                    },
                                    "gaps": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Gap"},
                                    },
                                    "metadata": {"type": "object"},
                                },
                            }
                        }
                    },
                },
                "400": _error_response("A bad parameter"),
                "404": _error_response("An unknown symbol"),
                **GUARDED,
            },
            "security": SECURITY,
        }
    }
    paths["/api/health/"] = {
        "get": {
            "operationId": "health",
            "summary": "The newest 1-second bar per symbol and its age.",
            "responses": {
                "200": {
                    "description": "Per symbol",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["now", "symbols"],
                                "properties": {
                                    "now": {"type": "string", "format": "date-time"},
                                    "symbols": {"type": "object"},
                                },
                            }
                        }
                    },
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "EODHD collector read API",
            "version": "1",
            "description": (
                "Bars stored by the collector: 1-second, 1-minute, 100-trade and "
                "quote bars, and the sentiment scores. Windows are half-open. See "
                "README, 'Data and endpoints'."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {"Gap": GAP},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of API_TOKENS, when the operator set them "
                    "(api/access.py); throttled per token by API_THROTTLE.",
                }
            },
        },
    }
