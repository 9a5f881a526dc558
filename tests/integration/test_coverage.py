"""Coverage: what the collector observed, recorded exactly through a forced
reconnect, a silent (stale) connection, a shutdown, a crash and restart, and a
failover between collectors; and the gaps as the read API reports them."""

import math
import signal
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from api.models import Coverage, SecondSnapshot, Ticker
from api.simulator import FeedServer, SimOptions
from tests.integration.process import start_collector
from tests.integration.test_collector import collector, feed, received
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def intervals(symbol: str) -> list[Coverage]:
    return list(Coverage.objects.filter(ticker__symbol=symbol).order_by("start"))


def epoch(value: datetime) -> float:
    return value.timestamp()


def assert_every_bar_observed(symbol: str) -> None:
    rows = intervals(symbol)
    seconds = SecondSnapshot.objects.filter(ticker__symbol=symbol).values_list(
        "timestamp", flat=True
    )
    assert seconds
    for second in seconds:
        s = epoch(second)
        assert any(epoch(r.start) < s + 1 and s < epoch(r.until) for r in rows), second


def test_coverage_through_a_forced_reconnect_and_a_shutdown(client):
    with feed(
        rate=500, seed=21, jitter_ms=0, drop_after=[400], max_trades=1200
    ) as server:
        with collector(server) as app:
            assert wait_until(lambda: received(app) == 1200, 30)
            assert app.shutdown() == 0
        log = server.connection_log
    assert len(log) == 2
    for symbol in ("AAPL", "MSFT", "TSLA"):
        rows = intervals(symbol)
        assert [(r.stream, r.end_reason) for r in rows] == [
            ("us", "reconnect"),
            ("us", "shutdown"),
        ]
        assert rows[0].detail == "connection dropped"
        assert rows[0].end <= rows[1].start
        assert rows[0].collector == rows[1].collector
        assert_every_bar_observed(symbol)
    first, second = intervals("AAPL")
    # The time between the two connections is the one gap the API reports.
    body = client.get(
        "/api/coverage/",
        {
            "symbol": "AAPL",
            "start_time": first.start.isoformat(),
            "end_time": second.end.isoformat(),
        },
    ).json()
    assert [(g["start"], g["end"]) for g in body["gaps"]] == [
        (iso(first.end), iso(second.start))
    ]
    assert [i["end_reason"] for i in body["intervals"]] == ["reconnect", "shutdown"]
    assert body["intervals"][0]["first_second_partial"] is True
    [summary] = body["symbols"]
    gap = (second.start - first.end).total_seconds()
    assert summary["gap_seconds"] == pytest.approx(gap, abs=0.002)
    assert summary["gaps"] == 1


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_a_silent_connection_was_observed_only_until_its_last_data():
    with feed(rate=500, seed=5, jitter_ms=0, silence_after=100) as server:
        with collector(server, stale_after=1.0) as app:
            assert wait_until(lambda: server.connections >= 2, 15)
            assert wait_until(lambda: received(app) >= 150, 10)
            assert app.shutdown() == 0
        last_sent = max(t["t"] for t in server.sent_trades(connection=0)) / 1000
    rows = intervals("AAPL")
    assert rows[0].end_reason == "stale"
    # It ends at the last batch of data, not when the silence was noticed.
    assert last_sent <= epoch(rows[0].end) <= last_sent + 0.5
    assert epoch(rows[1].start) - epoch(rows[0].end) >= 1.0  # the silence: a gap
    assert_every_bar_observed("AAPL")


@pytest.mark.postgres
def test_a_crash_is_closed_where_the_bars_were_stored_at_the_next_start(tmp_path):
    args = ("--symbols", "AAPL", "--grace", "0.5", "--spool-dir", str(tmp_path))
    with FeedServer(options=SimOptions(rate=200, seed=31, jitter_ms=0)) as server:
        first = start_collector(server, *args)
        try:
            # Its interval is stored, and its reach follows the stored bars.
            assert wait_until(
                lambda: any(r.seen_through > r.start for r in intervals("AAPL")), 30
            )
            first.kill()
            first.wait(10)
            [dead] = intervals("AAPL")
            assert dead.end is None  # nobody closed it yet
            second = start_collector(server, *args)
            try:
                assert wait_until(lambda: len(intervals("AAPL")) == 2, 30)
                assert wait_until(
                    lambda: intervals("AAPL")[0].end_reason == "crash", 30
                )
            finally:
                second.send_signal(signal.SIGTERM)
                output, _ = second.communicate(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
    assert second.returncode == 0, output
    old, new = intervals("AAPL")
    # Closed where its bars were stored: seconds after that are a gap.
    assert old.end == dead.seen_through
    assert old.collector != new.collector
    assert new.end_reason == "shutdown"
    assert new.start > old.end
    stored_after = SecondSnapshot.objects.filter(
        ticker__symbol="AAPL", timestamp__gte=old.end, timestamp__lt=new.start
    )
    # No bar claims the unobserved time between the crash and the restart
    # (except the second the crash cut).
    assert stored_after.count() <= 1


@pytest.mark.postgres
def test_a_standby_that_takes_over_leaves_no_gap(tmp_path, client):
    options = SimOptions(rate=200, seed=53, jitter_ms=0)
    args = ("--symbols", "AAPL", "--grace", "0.5")
    with FeedServer(options=options) as server:
        leader = start_collector(server, *args, "--spool-dir", str(tmp_path / "a"))
        standby = None
        try:
            assert wait_until(lambda: len(intervals("AAPL")) == 1, 30)
            standby = start_collector(server, *args, "--spool-dir", str(tmp_path / "b"))
            assert server.wait_for_connections(2, timeout=30)
            listening = datetime.now(tz=UTC)
            # The leader stored bars (and its reach) past the moment the standby
            # began listening.
            assert wait_until(lambda: intervals("AAPL")[0].seen_through > listening, 20)
            leader.kill()
            leader.wait(timeout=10)
            # The standby stores its interval when it becomes the writer, and
            # closes the dead leader's.
            assert wait_until(lambda: len(intervals("AAPL")) == 2, 20)
            assert wait_until(lambda: intervals("AAPL")[0].end is not None, 20)
            time.sleep(2)
        finally:
            if leader.poll() is None:
                leader.kill()
            if standby is not None:
                standby.send_signal(signal.SIGTERM)
                output, _ = standby.communicate(timeout=30)
    assert standby.returncode == 0, output
    old, new = intervals("AAPL")
    assert old.end_reason == "crash" and new.end_reason == "shutdown"
    # The standby was listening before the leader died: no time unobserved.
    assert new.start < old.end
    body = client.get(
        "/api/coverage/",
        {"symbol": "AAPL", "start_time": iso(old.start), "end_time": iso(new.end)},
    ).json()
    assert body["gaps"] == []


@pytest.fixture
def bars_with_a_gap(db):
    ticker = Ticker.objects.create(symbol="QLD")
    t0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    for i in range(10):
        SecondSnapshot.objects.create(
            ticker=ticker,
            timestamp=t0 + timedelta(seconds=i),
            ohlc_1sec_open=Decimal(1),
            ohlc_1sec_high=Decimal(1),
            ohlc_1sec_low=Decimal(1),
            ohlc_1sec_close=Decimal(1),
            ohlc_1sec_volume=Decimal(1),
            ohlc_1sec_tick_count=1,
            ohlc_1sec_eligible_count=1,
        )
    for start, end in ((2, 4.5), (6.25, None)):
        Coverage.objects.create(
            ticker=ticker,
            stream="us",
            collector="elsewhere:1:0",
            start=t0 + timedelta(seconds=start),
            end=None if end is None else t0 + timedelta(seconds=end),
            seen_through=t0 + timedelta(seconds=8),
            end_reason="" if end is None else "reconnect",
        )
    return t0


def test_the_bars_say_which_parts_of_their_window_were_not_observed(
    client, bars_with_a_gap
):
    t0 = bars_with_a_gap
    window = {"start_time": iso(t0), "end_time": iso(t0 + timedelta(seconds=10))}
    meta = client.get("/api/second-candles/", window).json()["metadata"]
    # Before the first interval nothing is known; after the open one's stored
    # reach (its collector long gone) it is a gap.
    assert meta["coverage_from"] == {"QLD": iso(t0 + timedelta(seconds=2))}

    def at(seconds: float) -> str:
        return iso(t0 + timedelta(seconds=seconds))

    assert meta["gaps"] == [
        {"symbol": "QLD", "start": at(4.5), "end": at(6.25)},
        {"symbol": "QLD", "start": at(8), "end": at(10)},
    ]
    resampled = client.get("/api/second-candles/", {**window, "interval": "5s"})
    assert resampled.json()["metadata"]["gaps"] == meta["gaps"]
    quotes = client.get("/api/quote-candles/", window).json()["metadata"]
    assert quotes["gaps"] == [] and quotes["coverage_from"] == {"QLD": None}
    assert math.isclose(
        client.get("/api/coverage/", {**window, "symbol": "QLD"}).json()["symbols"][0][
            "observed_seconds"
        ],
        (4.5 - 2) + (8 - 6.25),
    )
