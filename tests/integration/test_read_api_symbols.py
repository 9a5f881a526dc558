"""Several symbols in one request: `symbol=AAPL,MSFT` merges their items by time
then symbol, each item naming its symbol; cursors page the merged list exactly
once even where the symbols share timestamps; last=N is per symbol; CSV and
resampled bars carry a symbol column."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from api.models import Ticker
from tests.integration.test_read_api import add_seconds, iso, walk

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
WINDOW = {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=5))}


@pytest.fixture
def three(db) -> dict[str, Ticker]:
    tickers = {
        name: Ticker.objects.create(symbol=name) for name in ("MSFT", "AAPL", "TSLA")
    }
    add_seconds(tickers["AAPL"], T0, 40)  # the same seconds as MSFT's
    add_seconds(tickers["MSFT"], T0, 40)
    add_seconds(tickers["TSLA"], T0 + timedelta(seconds=10), 5)
    return tickers


def expected(three, names, seconds=None) -> list[tuple[str, str]]:
    """(timestamp, symbol) in the API's order: time, then the ticker's id."""
    keys = []
    for name in names:
        first, count = (10, 5) if name == "TSLA" else (0, 40)
        for s in range(first, first + count):
            keys.append((T0 + timedelta(seconds=s), three[name].pk, name))
    keys.sort()
    return [(iso(at), name) for at, _, name in keys]


def test_items_of_several_symbols_are_merged_by_time(client, three):
    body = client.get(
        "/api/second-candles/", {**WINDOW, "symbol": "aapl, MSFT,TSLA"}
    ).json()
    assert body["tickers"] == ["AAPL", "MSFT", "TSLA"]
    assert "ticker" not in body
    got = [(item["timestamp"], item["symbol"]) for item in body["data"]]
    assert got == expected(three, ["AAPL", "MSFT", "TSLA"])
    assert body["metadata"]["count"] == 85


@pytest.mark.parametrize("limit", ["1", "7", "40"])
def test_cursor_pages_cover_each_bar_of_each_symbol_once(client, three, limit):
    params = {**WINDOW, "symbol": "MSFT,AAPL,TSLA", "limit": limit}
    items = walk(client, "/api/second-candles/", params)
    got = [(item["timestamp"], item["symbol"]) for item in items]
    assert got == expected(three, ["AAPL", "MSFT", "TSLA"])


def test_last_n_is_the_newest_n_of_each_symbol(client, three):
    body = client.get(
        "/api/second-candles/", {**WINDOW, "symbol": "AAPL,TSLA", "last": "3"}
    ).json()
    got = [(item["timestamp"], item["symbol"]) for item in body["data"]]
    assert sorted(got) == sorted(
        [(iso(T0 + timedelta(seconds=s)), "AAPL") for s in (37, 38, 39)]
        + [(iso(T0 + timedelta(seconds=s)), "TSLA") for s in (12, 13, 14)]
    )
    assert [at for at, _ in got] == sorted(at for at, _ in got)
    assert body["metadata"]["truncated"] is True


def test_csv_of_several_symbols_has_a_symbol_column(client, three):
    response = client.get(
        "/api/second-candles/", {**WINDOW, "symbol": "TSLA,AAPL", "format": "csv"}
    )
    rows = list(
        csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    )
    assert list(rows[0])[:2] == ["symbol", "timestamp"]
    assert [(r["timestamp"], r["symbol"]) for r in rows] == expected(
        three, ["AAPL", "TSLA"]
    )
    assert "TSLA-AAPL" in response["Content-Disposition"]


def test_resampled_bars_of_several_symbols_page_by_bucket_then_symbol(client, three):
    params = {**WINDOW, "symbol": "AAPL,MSFT,TSLA", "interval": "5s", "limit": "3"}
    items = walk(client, "/api/second-candles/", params)
    got = [(item["timestamp"], item["symbol"], item["bars"]) for item in items]
    buckets = []
    for name in ("AAPL", "MSFT", "TSLA"):
        first, count = (10, 5) if name == "TSLA" else (0, 40)
        for b in range(first // 5, (first + count) // 5):
            buckets.append((T0 + timedelta(seconds=5 * b), three[name].pk, name))
    buckets.sort()
    assert got == [(iso(at), name, 5) for at, _, name in buckets]
    single = client.get(
        "/api/second-candles/", {**WINDOW, "symbol": "MSFT", "interval": "5s"}
    ).json()
    msft = [
        {k: v for k, v in item.items() if k != "symbol"}
        for item in items
        if item["symbol"] == "MSFT"
    ]
    assert msft == single["data"]  # the same bars as when read alone


def test_a_symbol_read_alone_keeps_the_single_symbol_shape(client, three):
    body = client.get("/api/second-candles/", {**WINDOW, "symbol": "AAPL,aapl"}).json()
    assert body["ticker"] == "AAPL" and "symbol" not in body["data"][0]


@pytest.mark.parametrize(
    "symbols, status, text",
    [
        ("AAPL,NOPE,ALSO", 404, "NOPE, ALSO"),
        (",".join(f"S{i}" for i in range(51)), 400, "at most 50"),
        ("AAPL,,MSFT;", 400, "is not a symbol"),
        (",", 400, "is not a symbol"),
        ("AAPL,", 400, "is not a symbol"),
    ],
)
def test_bad_symbol_lists(client, three, symbols, status, text):
    response = client.get("/api/second-candles/", {**WINDOW, "symbol": symbols})
    assert response.status_code == status
    assert text in response.json()["message"]
