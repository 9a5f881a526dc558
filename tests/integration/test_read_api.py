"""The read API as people build on it: hostile input is a 400 (never a 500),
epoch times, last=N, cursor pages that survive a revision, CSV of a whole day,
time zones, exact decimals, caching of settled windows, HEAD, /api/symbols/."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from django.utils import timezone

from api.models import SecondSnapshot, TickCandle100, Ticker

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
URLS = [
    "/api/second-candles/",
    "/api/minute-candles/",
    "/api/tick-candles/",
    "/api/quote-candles/",
    "/api/realtime-sentiment/",
]


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def add_seconds(ticker: Ticker, start: datetime, count: int) -> None:
    SecondSnapshot.objects.bulk_create(
        SecondSnapshot(
            ticker=ticker,
            timestamp=start + timedelta(seconds=i),
            ohlc_1sec_open=Decimal("100.0000000001") + i,
            ohlc_1sec_high=Decimal("101") + i,
            ohlc_1sec_low=Decimal("99") + i,
            ohlc_1sec_close=Decimal("100.5") + i,
            ohlc_1sec_volume=Decimal("0.0000012345"),
            ohlc_1sec_tick_count=3,
            ohlc_1sec_eligible_count=2,
        )
        for i in range(count)
    )


@pytest.fixture
def qld(db) -> Ticker:
    return Ticker.objects.create(symbol="QLD")


HOSTILE = [
    {"end_time": "0001-01-01T00:00:00Z"},
    {"start_time": "9999-12-31T23:59:59Z"},
    {"start_time": "0001-01-01T00:00:00+14:00"},
    {"start_time": "99999999999999"},
    {"start_time": "1e400"},
    {"start_time": "-5"},
    {"symbol": "\x00"},
    {"symbol": "A" * 500},
    {"symbol": "QLD'; DROP TABLE api_ticker;--"},
    {"limit": "-1"},
    {"limit": "1.5"},
    {"last": "0"},
    {"last": "5", "limit": "5"},
    {"cursor": "not-a-cursor"},
    {"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"},
    {"format": "xml"},
    {"tz": "Mars/Olympus_Mons"},
    {"tz": "../../etc/passwd"},
    {"decimals": "maybe"},
    {"interval": "7m"},
    {"colour": "blue"},
    {"start_time": iso(T0), "end_time": iso(T0 + timedelta(days=40)), "format": "csv"},
]


@pytest.mark.parametrize("url", URLS)
def test_hostile_input_is_a_400_with_a_message_never_a_500(client, qld, url):
    for params in HOSTILE:
        if "interval" in params and url != "/api/second-candles/":
            continue
        response = client.get(url, params)
        assert response.status_code == 400, (params, response.content[:200])
        body = response.json()
        assert body["error"] == "bad_request" and body["message"], params


def test_interval_elsewhere_is_an_unknown_parameter(client, qld):
    response = client.get("/api/tick-candles/", {"interval": "1m"})
    assert response.status_code == 400
    assert "unknown parameter 'interval'" in response.json()["message"]


def test_head_answers_like_get_without_a_body(client, qld):
    add_seconds(qld, T0, 3)
    params = {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=1))}
    head = client.head("/api/second-candles/", params)
    assert head.status_code == 200 and head.content == b""
    assert head["Content-Type"] == "application/json"


def test_epoch_seconds_and_milliseconds_mean_the_same_window(client, qld):
    add_seconds(qld, T0, 10)
    start, end = T0 + timedelta(seconds=2), T0 + timedelta(seconds=7)
    by_iso = client.get(
        "/api/second-candles/", {"start_time": iso(start), "end_time": iso(end)}
    ).json()
    by_s = client.get(
        "/api/second-candles/",
        {"start_time": str(int(start.timestamp())), "end_time": str(end.timestamp())},
    ).json()
    by_ms = client.get(
        "/api/second-candles/",
        {
            "start_time": str(int(start.timestamp() * 1000)),
            "end_time": str(int(end.timestamp() * 1000)),
        },
    ).json()
    assert by_iso["data"] == by_s["data"] == by_ms["data"]
    assert len(by_iso["data"]) == 5
    assert by_ms["metadata"]["start_time"] == "2026-03-02T14:30:02Z"


def test_last_n_is_the_newest_n_oldest_first(client, qld):
    add_seconds(qld, T0, 30)
    window = {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=1))}
    body = client.get("/api/second-candles/", {**window, "last": "5"}).json()
    stamps = [item["timestamp"] for item in body["data"]]
    assert stamps == [iso(T0 + timedelta(seconds=s)) for s in range(25, 30)]
    assert body["metadata"]["truncated"] is True  # older bars exist
    assert body["metadata"]["next"] is None
    everything = client.get("/api/second-candles/", {**window, "last": "30"}).json()
    assert everything["metadata"]["truncated"] is False


def test_last_n_without_a_start_reaches_back_a_week(client, qld):
    add_seconds(qld, timezone.now().replace(microsecond=0) - timedelta(days=3), 4)
    body = client.get("/api/second-candles/", {"last": "3"}).json()
    assert len(body["data"]) == 3


def test_truncated_only_when_more_rows_exist(client, qld):
    add_seconds(qld, T0, 5)
    window = {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=1))}
    exact = client.get("/api/second-candles/", {**window, "limit": "5"}).json()
    assert exact["metadata"]["truncated"] is False and exact["metadata"]["next"] is None


def walk(client, url: str, params: dict, between=None) -> list[dict]:
    items, page = [], client.get(url, params).json()
    while True:
        items.extend(page["data"])
        following = page["metadata"]["next"]
        if following is None:
            return items
        if between is not None:
            between()
            between = None
        page = client.get(following).json()


def test_cursor_pages_cover_every_bar_once_across_a_revision(client, qld):
    add_seconds(qld, T0, 30)
    window = {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=1))}

    def revise():
        # A late print revises a bar already read and one not yet read.
        SecondSnapshot.objects.filter(timestamp=T0 + timedelta(seconds=2)).update(
            ohlc_1sec_close=Decimal(1)
        )
        SecondSnapshot.objects.filter(timestamp=T0 + timedelta(seconds=20)).update(
            ohlc_1sec_close=Decimal(2)
        )

    items = walk(
        client, "/api/second-candles/", {**window, "limit": "7"}, between=revise
    )
    stamps = [item["timestamp"] for item in items]
    assert stamps == [iso(T0 + timedelta(seconds=s)) for s in range(30)]
    assert items[20]["close"] == 2.0  # read after its revision
    assert items[2]["close"] == 102.5  # read before it


def test_cursor_pages_of_candles_completed_at_the_same_time(client, qld):
    for number in range(1, 11):
        TickCandle100.objects.create(
            ticker=qld,
            candle_number=number,
            completed_at=T0 + timedelta(seconds=number // 4),  # repeats
            open=1, high=1, low=1, close=1, total_volume=100, eligible_count=100,
            first_tick_time=T0, last_tick_time=T0, duration_seconds=0,
        )  # fmt: skip
    window = {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=1))}
    items = walk(client, "/api/tick-candles/", {**window, "limit": "3"})
    assert [item["candle_number"] for item in items] == list(range(1, 11))


def test_a_whole_day_as_csv_is_streamed_with_exact_decimals(client, qld):
    day = 23_400
    add_seconds(qld, T0, day)
    response = client.get(
        "/api/second-candles/",
        {
            "start_time": iso(T0),
            "end_time": iso(T0 + timedelta(seconds=day)),
            "format": "csv",
        },
    )
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == day  # not capped at the JSON limit's default
    assert rows[0]["timestamp"] == "2026-03-02T14:30:00Z"
    assert rows[0]["open"] == "100.0000000001"  # exact, never a float
    assert rows[0]["volume"] == "0.0000012345"
    assert rows[-1]["timestamp"] == iso(T0 + timedelta(seconds=day - 1))
    assert list(rows[0]) == [
        "timestamp", "open", "high", "low", "close", "volume", "tick_count",
        "eligible_count", "composite_score", "news_component", "technical_component",
    ]  # fmt: skip


def test_time_zone_and_exact_decimal_strings_on_request(client, qld):
    add_seconds(qld, T0, 1)
    body = client.get(
        "/api/second-candles/",
        {
            "start_time": iso(T0),
            "end_time": iso(T0 + timedelta(minutes=1)),
            "tz": "America/New_York",
            "decimals": "string",
        },
    ).json()
    [item] = body["data"]
    assert item["timestamp"] == "2026-03-02T09:30:00-05:00"
    assert item["open"] == "100.0000000001"
    assert item["volume"] == "0.0000012345"
    assert item["tick_count"] == 3  # counts stay numbers


def test_a_settled_window_is_cacheable_and_revalidated_by_etag(client, qld):
    add_seconds(qld, T0, 3)
    params = {"start_time": iso(T0), "end_time": iso(T0 + timedelta(minutes=1))}
    first = client.get("/api/second-candles/", params)
    assert first["Cache-Control"] == "public, max-age=300"
    etag = first["ETag"]
    again = client.get("/api/second-candles/", params, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    live = client.get("/api/second-candles/")  # the last hour: still changing
    assert live["Cache-Control"] == "no-cache" and "ETag" not in live


def test_it_lists_the_symbols_with_their_newest_bar(client, qld):
    add_seconds(qld, T0, 2)
    Ticker.objects.create(symbol="EMPTY", company_name="Nothing yet")
    body = client.get("/api/symbols/").json()
    assert body == {
        "count": 2,
        "symbols": [
            {
                "symbol": "EMPTY",
                "company_name": "Nothing yet",
                "exchange": "US",
                "last_second_bar": None,
            },
            {
                "symbol": "QLD",
                "company_name": "",
                "exchange": "US",
                "last_second_bar": "2026-03-02T14:30:01Z",
            },
        ],
    }
