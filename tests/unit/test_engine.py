"""The sentiment workers on literals: SentimentEngine fed through its inbox the way
the aggregator feeds it, LatestScores, and NewsPoller with a fake or stubbed
client. Only the 1 s loop test runs a thread."""

import json
import logging
import queue
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from api.logs import RepeatFilter
from api.market.messages import Trade
from api.pipeline.messages import Closes, Trades
from api.sentiment import engine as engine_module
from api.sentiment.engine import NewsPoller, SentimentEngine, SharedArticles
from api.sentiment.holder import LatestScores
from api.sentiment.news import NewsClient
from api.sentiment.scoring import Article, Scores
from api.workers.clock import Clock

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC).timestamp()
DECAY = 1 - 0.0383  # what is left of an impact after one minute


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


def make_engine(symbols=("AAPL", "MSFT"), clock=None, **kwargs) -> SentimentEngine:
    return SentimentEngine(
        inbox=queue.Queue(),
        scores=LatestScores(),
        symbols=list(symbols),
        stop=threading.Event(),
        articles=SharedArticles(),
        clock=clock or FixedClock(NOW),
        **kwargs,
    )


def trade(price: str, size: str, ts: float, symbol: str = "AAPL") -> Trade:
    return Trade(symbol, Decimal(price), Decimal(size), round(ts * 1000))


def closes(*items: tuple[float, str], symbol: str = "AAPL") -> tuple:
    return Closes([(symbol, int(second), Decimal(c)) for second, c in items])


def run_once(engine: SentimentEngine, now: float) -> None:
    engine.clock.t = now
    engine.drain()
    engine.compute_all(now)


def test_it_computes_every_component_from_what_the_aggregator_handed_over():
    engine = make_engine()
    engine.inbox.put(closes((NOW - 40, "150.00"), (NOW - 30, "200.00")))
    engine.inbox.put(closes((NOW - 10, "201.00"), (NOW - 1, "203.00")))
    engine.inbox.put(
        Trades(
            [
                trade("202.00", "50", NOW - 90),  # first trade: no side yet
                trade("202.50", "1000", NOW - 80),  # buy, but out of the 60 s
                trade("203.00", "100", NOW - 20),  # uptick: buy 100
                trade("203.10", "300", NOW - 15),  # uptick: buy 300
                trade("203.10", "100", NOW - 10),  # unchanged: still a buy
                trade("202.90", "200", NOW - 5),  # downtick: sell 200
                trade("500.00", "999", NOW - 5, symbol="ZVZZT"),  # not ours
            ],
        )
    )
    engine.articles.merge(
        "AAPL",
        [
            Article("https://news.example/a", NOW - 60, 0.9),  # +25, 1 min old
            Article("https://news.example/b", NOW - 600, -0.5),  # -5, 10 min old
        ],
    )
    run_once(engine, NOW)

    scores = engine.scores.latest("AAPL", NOW)
    news = 25 * DECAY - 5 * DECAY**10
    technical = 22.5  # 200 -> 203 over the last 30 s is +1.5 %, x 15 points
    flow = 300 / 700 * 100  # buy 500, sell 200
    assert scores.news == pytest.approx(news, abs=1e-9)
    assert scores.technical == pytest.approx(technical, abs=1e-9)
    assert scores.flow == pytest.approx(flow, abs=1e-9)
    assert scores.composite == pytest.approx(
        0.45 * news + 0.30 * technical + 0.25 * flow, abs=1e-9
    )
    assert scores.computed_at == NOW
    # Nothing known about MSFT: every score unknown, none of them 0.
    assert engine.scores.latest("MSFT", NOW) == Scores(None, None, None, None, NOW)


def test_it_smooths_momentum_second_by_second():
    engine = make_engine()
    engine.inbox.put(closes((NOW - 30, "200.00"), (NOW - 10, "201.00")))
    engine.inbox.put(closes((NOW - 1, "203.00")))
    run_once(engine, NOW)
    engine.inbox.put(closes((NOW, "204.00")))
    run_once(engine, NOW + 1)  # the 200.00 close has left the 30 s window

    raw = (204 - 201) / 201 * 100 * 15
    assert engine.scores.latest("AAPL", NOW + 1).technical == pytest.approx(
        0.8 * 22.5 + 0.2 * raw, abs=1e-9
    )


def test_it_sorts_closes_by_time_before_measuring_momentum():
    engine = make_engine()
    engine.inbox.put(closes((NOW - 1, "99.00"), (NOW - 20, "100.00")))
    run_once(engine, NOW)
    # Oldest 100.00 to newest 99.00: -1 %, a falling price gives a negative score.
    assert engine.scores.latest("AAPL", NOW).technical == pytest.approx(-15.0)


def test_it_forgets_a_momentum_older_than_its_window():
    engine = make_engine()
    engine.inbox.put(closes((NOW - 5, "100.00"), (NOW, "101.00")))
    run_once(engine, NOW)
    assert engine.scores.latest("AAPL", NOW).technical == pytest.approx(15.0)
    # One close left in the window: the smoother bridges the gap ...
    run_once(engine, NOW + 26)
    assert engine.scores.latest("AAPL", NOW + 26).technical == pytest.approx(15.0)
    # ... but not beyond 30 s without a known momentum.
    run_once(engine, NOW + 31)
    assert engine.scores.latest("AAPL", NOW + 31).technical is None
    # Trading again: the new momentum starts afresh, not blended with the old.
    engine.inbox.put(closes((NOW + 40, "100.00"), (NOW + 41, "102.00")))
    run_once(engine, NOW + 41)
    assert engine.scores.latest("AAPL", NOW + 41).technical == pytest.approx(30.0)


def test_it_leaves_news_unknown_when_news_is_off():
    engine = make_engine(news_enabled=False)
    engine.articles.merge("AAPL", [Article("https://news.example/a", NOW, 0.9)])
    engine.inbox.put(closes((NOW - 2, "100.00"), (NOW - 1, "100.50")))
    run_once(engine, NOW)
    scores = engine.scores.latest("AAPL", NOW)
    assert scores.news is None
    assert scores.technical == pytest.approx(7.5)  # +0.5 % x 15
    assert scores.composite == pytest.approx(7.5)  # renormalised over technical


def test_it_publishes_nothing_for_a_symbol_whose_computation_fails(monkeypatch, caplog):
    engine = make_engine()
    engine.inbox.put(closes((NOW - 2, "100.00"), (NOW - 1, "101.00")))
    engine.inbox.put(closes((NOW - 2, "50.00"), (NOW - 1, "50.00"), symbol="MSFT"))
    run_once(engine, NOW)
    assert engine.scores.latest("AAPL", NOW).technical == pytest.approx(15.0)

    real = engine_module.technical_momentum

    def broken(closes, now, *args):
        if closes[-1][1] == 101.0:
            raise ZeroDivisionError("boom")
        return real(closes, now, *args)

    monkeypatch.setattr(engine_module, "technical_momentum", broken)
    with caplog.at_level(logging.ERROR, logger="api.sentiment.engine"):
        run_once(engine, NOW + 1)
        run_once(engine, NOW + 2)

    # Not the previous scores, not zeros: nothing, so bars get NULLs.
    assert engine.scores.latest("AAPL", NOW + 2) is None
    assert engine.scores.latest("MSFT", NOW + 2).technical == 0.0  # flat: known 0
    assert engine.errors == 2
    failures = [r for r in caplog.records if "sentiment for AAPL failed" in r.message]
    # Each failure is logged under one key; the log's repeat filter shows the
    # first and holds back the rest for a minute.
    assert [r.dedupe for r in failures] == ["sentiment AAPL"] * 2
    assert failures[0].symbol == "AAPL"
    repeats = RepeatFilter(interval=60.0)
    assert [repeats.filter(r) for r in failures] == [True, False]


def test_it_publishes_every_second_from_its_own_thread():
    start = time.time()
    engine = make_engine(symbols=["AAPL"], clock=Clock())
    engine.inbox.put(closes((start - 3, "100.00"), (start - 2, "100.20")))
    engine.start()
    try:
        seen: list[float] = []
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            latest = engine.scores.latest("AAPL", time.time())
            if latest is not None and (not seen or latest.computed_at != seen[-1]):
                seen.append(latest.computed_at)
            time.sleep(0.01)
    finally:
        engine.stop.set()
        engine.join(2)
    assert not engine.is_alive() and engine.failure is None
    assert len(seen) == 3
    assert latest.technical == pytest.approx(3.0)  # +0.2 % x 15
    gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    assert all(0.9 <= gap <= 1.3 for gap in gaps), gaps


def test_it_treats_scores_older_than_max_age_as_unknown():
    holder = LatestScores(max_age=5.0)
    scores = Scores(10.0, 20.0, None, 0.0, computed_at=NOW)
    holder.publish("AAPL", scores)
    assert holder.latest("AAPL", NOW + 5.0) is scores
    assert holder.latest("AAPL", NOW + 5.001) is None
    assert holder.latest("MSFT", NOW) is None
    holder.forget("AAPL")
    assert holder.latest("AAPL", NOW) is None


def test_it_describes_the_latest_composites_for_the_log_line():
    engine = make_engine(symbols=["AAPL", "MSFT", "A", "B", "C", "D", "E"])
    engine.scores.publish("AAPL", Scores(12.34, None, 12.34, None, NOW))
    engine.scores.publish("MSFT", Scores(None, None, None, None, NOW))
    engine.scores.publish("A", Scores(-3.06, None, None, -3.06, NOW - 10))  # stale
    assert (
        engine.describe() == "AAPL +12.3, MSFT null, A null, B null, C null (+2 more)"
    )


# NewsPoller -----------------------------------------------------------------------


class FakeNewsClient:
    def __init__(self) -> None:
        self.daily_call_budget = 100_000
        self.cost_per_request = 5
        self.allowed = True
        self.answers: dict[str, list[Article] | None] = {}
        self.calls: list[tuple[str, date, float]] = []

    def can_call(self, now: float) -> bool:
        return self.allowed

    def fetch(self, symbol: str, day: date, now: float) -> list[Article] | None:
        self.calls.append((symbol, day, now))
        return self.answers.get(symbol, [])


def make_poller(client, clock, symbols=("AAPL", "MSFT"), poll_interval=60.0):
    return NewsPoller(
        client=client,
        articles=SharedArticles(),
        symbols=list(symbols),
        stop=threading.Event(),
        clock=clock,
        poll_interval=poll_interval,
    )


def test_it_polls_each_symbol_only_when_due():
    client, clock = FakeNewsClient(), FixedClock(NOW)
    poller = make_poller(client, clock)
    client.answers["AAPL"] = [Article("https://news.example/a", NOW - 60, 0.9)]
    assert poller.poll_due() is True
    assert client.calls == [("AAPL", date(2026, 11, 27), NOW)] + [
        ("MSFT", date(2026, 11, 27), NOW)
    ]
    clock.t = NOW + 59.9
    assert poller.poll_due() is False
    clock.t = NOW + 60
    client.answers["AAPL"] = None  # this poll fails
    assert poller.poll_due() is True
    assert [c[0] for c in client.calls] == ["AAPL", "MSFT", "AAPL", "MSFT"]
    assert (poller.polls, poller.failures) == (4, 1)
    # The failed poll kept what the first one brought.
    assert poller.articles.articles("AAPL", NOW + 60) == [
        Article("https://news.example/a", NOW - 60, 0.9)
    ]


def test_it_does_not_poll_when_the_client_refuses_a_call():
    client, clock = FakeNewsClient(), FixedClock(NOW)
    poller = make_poller(client, clock)
    client.allowed = False  # backing off, or the day's budget is spent
    assert poller.poll_due() is False
    assert client.calls == []
    client.allowed = True
    assert poller.poll_due() is True
    assert len(client.calls) == 2


class StubResponse:
    def __init__(self, body: str) -> None:
        self.status_code = 200
        self.text = body

    def json(self) -> object:
        return json.loads(self.text)


class StubSession:
    """Stands in for requests.Session: every GET answers 200 with `body`."""

    def __init__(self, body: str = "[]") -> None:
        self.body = body
        self.requests: list[dict] = []

    def get(self, url: str, params: dict, timeout: tuple) -> StubResponse:
        self.requests.append(params)
        return StubResponse(self.body)


def test_it_spreads_polls_so_the_daily_budget_lasts_the_whole_day():
    session = StubSession()
    client = NewsClient("http://news.invalid/api", "k", session, daily_call_budget=1000)
    midnight = datetime(2026, 11, 27, tzinfo=UTC).timestamp()
    clock = FixedClock(midnight)
    poller = make_poller(client, clock, poll_interval=60.0)
    # 2 symbols x 5 calls every 864 s is 1000 calls in 86 400 s.
    assert poller.poll_interval == pytest.approx(864.0)
    polled_at = []
    for minute in range(24 * 60):
        clock.t = midnight + minute * 60
        before = len(session.requests)
        poller.poll_due()
        polled_at += [clock.t] * (len(session.requests) - before)
    assert 5 * len(polled_at) <= 1000
    assert client.calls_used_today == 5 * len(polled_at)
    # Still polling in the last hour of the UTC day, after the US session.
    assert max(polled_at) >= midnight + 23 * 3600


def test_it_survives_news_items_it_cannot_use_and_a_client_that_raises(caplog):
    good = {
        "date": "2026-11-27T14:59:00+00:00",
        "link": "https://news.example/good",
        "sentiment": {"polarity": 0.9},
    }
    huge = dict(good, link="https://news.example/huge")
    bad_link = dict(good, link="https://[broken/x")
    body = json.dumps([good, bad_link, huge]).replace(
        '"polarity": 0.9}}]', '"polarity": 1' + "0" * 400 + "}}]"
    )
    assert body.count("0" * 400) == 1  # only the last item's polarity is huge
    session = StubSession(body)
    client = NewsClient("http://news.invalid/api", "k", session)
    poller = make_poller(client, FixedClock(NOW), symbols=["AAPL"], poll_interval=1)

    assert poller.poll_due() is True
    assert poller.failures == 0
    assert poller.articles.articles("AAPL", NOW) == [
        Article("https://news.example/good", NOW - 60, 0.9)
    ]

    def explode(symbol, day, now):
        raise RuntimeError("unexpected")

    client.fetch = explode
    poller.clock.t = NOW + poller.poll_interval
    with caplog.at_level(logging.ERROR, logger="api.sentiment.engine"):
        assert poller.poll_due() is True
    assert poller.failures == 1
    assert "news for AAPL failed unexpectedly" in caplog.text
    assert len(poller.articles.articles("AAPL", NOW + 10)) == 1
