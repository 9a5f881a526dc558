import json
import threading
import time
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from api.sentiment.news import (
    BACKOFF_BASE,
    FORBIDDEN_BACKOFF,
    RATE_LIMIT_BACKOFF,
    ArticleStore,
    NewsClient,
    eodhd_symbol,
    mask_token,
    normalise_url,
)
from api.sentiment.scoring import Article

TOKEN = "s3cr3t-token"
DAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 11, 28, tzinfo=UTC).timestamp()

ARTICLES = [
    {
        "date": "2026-11-27T14:30:00+00:00",
        "title": "Apple beats",
        "link": "https://News.example.com/apple-beats/?utm=1",
        "symbols": ["AAPL.US"],
        "sentiment": {"polarity": 0.85, "neg": 0.0, "neu": 0.2, "pos": 0.8},
    },
    {
        "date": "2026-11-27T14:00:00Z",
        "title": "Apple slips",
        "link": "https://news.example.com/apple-slips",
        "sentiment": {"polarity": -0.45},
    },
    {
        "date": "2026-11-27T13:00:00",  # no zone: UTC
        "title": "Naive date",
        "link": "https://news.example.com/naive",
        "sentiment": {"polarity": 0.1},
    },
    {"date": "2026-11-27T13:00:00", "link": "https://x/no-sentiment"},
    {"date": "not a date", "link": "https://x/bad-date", "sentiment": {"polarity": 1}},
    {"date": "2026-11-27T13:00:00", "sentiment": {"polarity": 0.5}},  # no link
    "not an object",
]


class FakeNewsApi:
    """The news endpoint on 127.0.0.1: answers with queued (status, body, delay)."""

    def __init__(self) -> None:
        self.responses: list[tuple[int, bytes, float]] = []
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests.append(self.path)
                status, body, delay = api.responses.pop(0)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.closed = False
        # A short poll interval keeps shutdown() quick.
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def answer(self, status: int, body: object = b"", delay: float = 0.0) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.responses.append((status, raw, delay))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    server = FakeNewsApi()
    yield server
    server.close()


def client_for(api: FakeNewsApi, **kwargs) -> NewsClient:
    return NewsClient(api.base, TOKEN, **kwargs)


def test_it_parses_known_articles(api):
    api.answer(200, ARTICLES)
    articles = client_for(api).fetch("AAPL", DAY, NOW)
    assert articles == [
        Article(
            url="https://News.example.com/apple-beats/?utm=1",
            published_at=NOW - 30 * 60,
            polarity=0.85,
            title="Apple beats",
        ),
        Article(
            url="https://news.example.com/apple-slips",
            published_at=NOW - 60 * 60,
            polarity=-0.45,
            title="Apple slips",
        ),
        Article(
            url="https://news.example.com/naive",
            published_at=NOW - 2 * 60 * 60,
            polarity=0.1,
            title="Naive date",
        ),
    ]


def test_it_sends_the_right_params(api):
    api.answer(200, [])
    assert client_for(api).fetch("aapl", DAY, NOW) == []
    url = urlsplit(api.requests[0])
    assert url.path == "/api/news"
    assert parse_qs(url.query) == {
        "s": ["AAPL.US"],
        "from": ["2026-11-27"],
        "to": ["2026-11-27"],
        "limit": ["50"],
        "offset": ["0"],
        "api_token": [TOKEN],
        "fmt": ["json"],
    }


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("AAPL", "AAPL.US"),
        ("BRK-B", "BRK-B.US"),
        ("BTC-USD", "BTC-USD.CC"),
        ("VOD.LSE", "VOD.LSE"),
        ("eth-usdt", "ETH-USDT.CC"),
    ],
)
def test_it_adds_the_exchange_suffix(symbol, expected):
    assert eodhd_symbol(symbol) == expected


def test_it_stops_until_the_next_utc_day_on_402(api):
    api.answer(402, {"message": "limit reached"})
    client = client_for(api)
    assert client.fetch("AAPL", DAY, NOW) is None
    assert client.next_allowed_at == MIDNIGHT
    assert not client.can_call(MIDNIGHT - 1)
    assert client.can_call(MIDNIGHT)
    assert client.calls_used_today == 0  # a new day, a new budget


def test_it_backs_off_long_and_logs_once_on_403(api, caplog):
    api.answer(403, {"message": "forbidden"})
    api.answer(403, {"message": "forbidden"})
    client = client_for(api)
    assert client.fetch("AAPL", DAY, NOW) is None
    assert client.next_allowed_at == NOW + FORBIDDEN_BACKOFF
    later = NOW + FORBIDDEN_BACKOFF
    assert client.fetch("AAPL", DAY, later) is None
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1


def test_it_backs_off_a_minute_on_429(api):
    api.answer(429, {"message": "too many"})
    client = client_for(api)
    assert client.fetch("AAPL", DAY, NOW) is None
    assert client.next_allowed_at == NOW + RATE_LIMIT_BACKOFF
    assert not client.can_call(NOW + RATE_LIMIT_BACKOFF - 0.5)
    assert client.can_call(NOW + RATE_LIMIT_BACKOFF)


def test_it_backs_off_exponentially_and_resets_on_success(api):
    for _ in range(3):
        api.answer(500, b"oops")
    api.answer(200, [])
    api.answer(503, b"")
    client = client_for(api)
    now = NOW
    for delay in (5.0, 10.0, 20.0):  # BACKOFF_BASE * 2**n
        assert client.fetch("AAPL", DAY, now) is None
        assert client.next_allowed_at == now + delay
        assert client.fetch("AAPL", DAY, now + delay - 1) is None  # not allowed yet
        now += delay
    assert client.fetch("AAPL", DAY, now) == []
    assert client.fetch("AAPL", DAY, now) is None
    assert client.next_allowed_at == now + BACKOFF_BASE
    assert len(api.requests) == 5  # the refused calls never reached the server


@pytest.mark.parametrize(
    "body",
    [
        {"error": "Wrong API token"},
        {"message": "Upgrade your plan"},
        b"<html>no</html>",
    ],
)
def test_it_treats_a_200_error_body_or_bad_json_as_an_error(api, body):
    api.answer(200, body)
    client = client_for(api)
    assert client.fetch("AAPL", DAY, NOW) is None
    assert client.next_allowed_at == NOW + BACKOFF_BASE


def test_it_gives_up_on_a_slow_server_and_backs_off(api, caplog):
    api.answer(200, [], delay=1.0)
    client = client_for(api, read_timeout=0.2)
    started = time.monotonic()
    assert client.fetch("AAPL", DAY, NOW) is None
    assert time.monotonic() - started < 0.9
    assert client.next_allowed_at == NOW + BACKOFF_BASE
    assert TOKEN not in caplog.text


def test_it_returns_none_when_the_server_is_unreachable(api, caplog):
    api.close()
    client = client_for(api, connect_timeout=0.5)
    assert client.fetch("AAPL", DAY, NOW) is None
    assert client.next_allowed_at == NOW + BACKOFF_BASE
    # requests puts the full URL in the error; the log gets it masked.
    assert "api_token=***" in caplog.text
    assert TOKEN not in caplog.text


def test_it_accounts_the_daily_budget(api):
    for _ in range(3):
        api.answer(200, [])
    client = client_for(api, daily_call_budget=12, cost_per_request=5)
    assert client.fetch("AAPL", DAY, NOW) == []
    assert client.calls_used_today == 5
    assert client.fetch("MSFT", DAY, NOW) == []
    assert client.calls_used_today == 10
    assert not client.can_call(NOW)  # 10 + 5 > 12
    assert client.fetch("AAPL", DAY, NOW) is None
    assert len(api.requests) == 2
    assert client.can_call(MIDNIGHT)  # the budget resets at UTC midnight
    assert client.calls_used_today == 0
    assert client.fetch("AAPL", DAY, MIDNIGHT) == []
    assert client.calls_used_today == 5


def test_it_counts_an_article_served_twice_once(api):
    first = dict(ARTICLES[0], link="https://news.example.com/apple-beats?utm=a")
    again = dict(ARTICLES[0], link="HTTPS://NEWS.example.com/apple-beats/?utm=b#top")
    api.answer(200, [first])
    api.answer(200, [again, ARTICLES[1]])
    client, store = client_for(api), ArticleStore()
    assert store.merge("AAPL", client.fetch("AAPL", DAY, NOW)) == 1
    assert store.merge("AAPL", client.fetch("AAPL", DAY, NOW + 60)) == 1
    urls = sorted(a.url for a in store.articles("AAPL", NOW + 60))
    assert urls == [
        "https://news.example.com/apple-beats?utm=a",
        "https://news.example.com/apple-slips",
    ]


def test_it_normalises_urls():
    assert (
        normalise_url("HTTPS://Example.COM/a/b/?x=1#frag") == "https://example.com/a/b"
    )


def test_it_drops_articles_older_than_a_day_for_good():
    store = ArticleStore()
    store.merge(
        "AAPL",
        [
            Article("https://a/old", NOW - 24 * 3600 - 1, 0.9),
            Article("https://a/new", NOW - 3600, 0.9),
        ],
    )
    assert [a.url for a in store.articles("AAPL", NOW)] == ["https://a/new"]
    assert [a.url for a in store.articles("AAPL", NOW, max_age=60)] == []
    assert store.articles("MSFT", NOW) == []
    # The old article is gone: re-serving it counts as new, the recent one does not.
    assert store.merge("AAPL", [Article("https://a/new", NOW - 3600, 0.9)]) == 0


def test_it_caps_articles_per_symbol_keeping_the_newest():
    store = ArticleStore(max_per_symbol=3)
    added = store.merge(
        "AAPL", [Article(f"https://a/{i}", NOW - 100 + i, 0.5) for i in range(5)]
    )
    assert added == 5
    assert sorted(a.url for a in store.articles("AAPL", NOW)) == [
        "https://a/2",
        "https://a/3",
        "https://a/4",
    ]


def test_it_masks_the_token():
    url = f"https://eodhd.com/api/news?s=AAPL.US&api_token={TOKEN}&fmt=json"
    assert (
        mask_token(url) == "https://eodhd.com/api/news?s=AAPL.US&api_token=***&fmt=json"
    )
    assert mask_token(f"/news?api_token={TOKEN}") == "/news?api_token=***"
    assert mask_token("https://eodhd.com/api/news?s=AAPL.US") == (
        "https://eodhd.com/api/news?s=AAPL.US"
    )


def test_a_budget_shared_with_other_processes_stops_calls_once_spent(api):
    api.answer(200, [])
    answers = [True, False]
    asked = []

    def shared(calls):
        asked.append(calls)
        return answers.pop(0)

    client = client_for(api, daily_call_budget=100, cost_per_request=5, shared=shared)
    assert client.fetch("AAPL", DAY, NOW) == []
    # Another process spent the rest: no request, nothing until midnight UTC.
    assert client.fetch("MSFT", DAY, NOW + 1) is None
    assert asked == [5, 5] and len(api.requests) == 1
    assert not client.can_call(MIDNIGHT - 1)
    assert client.can_call(MIDNIGHT)


def test_no_answer_from_the_shared_budget_falls_back_to_the_own_count(api):
    api.answer(200, [])
    client = client_for(
        api, daily_call_budget=100, cost_per_request=5, shared=lambda calls: None
    )
    assert client.fetch("AAPL", DAY, NOW) == []
    assert client.calls_used_today == 5 and len(api.requests) == 1
