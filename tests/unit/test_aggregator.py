"""The aggregator's unit of work, called directly: no thread, a clock the test
holds. What it publishes, to whom, stamped with which scores."""

import queue
import threading
from decimal import Decimal

from api.collector.aggregator import Aggregator
from api.collector.outputs import Fanout, Output, Policy
from api.market.messages import Trade
from api.pipeline.ingest import Ingest
from api.pipeline.kinds import MINUTE, SECOND, TICK100
from api.pipeline.messages import FINISHED, Bars, Closes, Finished, Renumber, Trades
from api.sentiment.holder import LatestScores
from api.sentiment.scoring import Scores

T0 = 1_796_000_040  # a minute boundary


class HeldClock:
    def __init__(self, now: float) -> None:
        self.now_value = now

    def now(self) -> float:
        return self.now_value

    def monotonic(self) -> float:
        return self.now_value


def trade(second: float, price: str = "10", symbol: str = "AAPL") -> Trade:
    return Trade(symbol, Decimal(price), Decimal(1), int(second * 1000))


def build(sentiment_size: int = 100, **ingest) -> tuple[Aggregator, HeldClock, dict]:
    clock = HeldClock(T0)
    outputs = {
        "writer": Output("writer", (Bars, Finished), Policy.BLOCK),
        "sentiment": Output(
            "sentiment", (Trades, Closes), Policy.DROP, maxsize=sentiment_size
        ),
    }
    scores = LatestScores()
    app = Aggregator(
        inbox=queue.Queue(),
        fanout=Fanout(list(outputs.values())),
        stop=threading.Event(),
        upstream_done=lambda: True,
        scores=scores,
        ingest=Ingest(grace=0.5, revision_window=30, start_second=T0, **ingest),
        clock=clock,
    )
    return app, clock, outputs


def drain(output: Output) -> list:
    got = []
    while not output.queue.empty():
        got.append(output.queue.get_nowait())
    return got


def test_it_publishes_closed_bars_to_the_writer_and_trades_and_closes_to_sentiment():
    app, clock, outputs = build()
    app.scores.publish("AAPL", Scores(12.5, None, 3.0, None, computed_at=T0 + 1))
    out = Bars()
    app.take([trade(T0 + 0.2, "10"), trade(T0 + 0.7, "11"), trade(T0 + 1.1, "9")], out)
    assert not out  # nothing closed yet
    clock.now_value = T0 + 1.6  # second T0 ended 0.6 s ago: past the grace
    app.close(clock.now(), out)
    ((bar, scores),) = out.by_kind[SECOND]
    assert (bar.second, bar.open, bar.close, bar.tick_count) == (
        T0,
        Decimal(10),
        Decimal(11),
        2,
    )
    assert scores.composite == 12.5
    assert MINUTE not in out.by_kind or not out.by_kind[MINUTE]
    sentiment = drain(outputs["sentiment"])
    assert [type(m) for m in sentiment] == [Trades, Closes]
    assert sentiment[1].closes == [("AAPL", T0, Decimal(11))]


def test_a_second_without_a_close_tells_sentiment_nothing():
    app, clock, outputs = build()
    odd_lot = Trade("AAPL", Decimal("10"), Decimal(5), int((T0 + 0.2) * 1000), (37,))
    out = Bars()
    app.take([odd_lot, trade(T0 + 1.2, "11")], out)
    clock.now_value = T0 + 2.6
    app.close(clock.now(), out)
    bars = [bar for bar, _ in out.by_kind[SECOND]]
    assert [(b.second, b.close, b.volume) for b in bars] == [
        (T0, None, Decimal(5)),
        (T0 + 1, Decimal(11), Decimal(1)),
    ]
    [_, closes] = drain(outputs["sentiment"])
    assert closes.closes == [("AAPL", T0 + 1, Decimal(11))]


def test_it_keeps_a_bars_first_scores_when_a_late_trade_revises_it():
    app, clock, _ = build()
    app.scores.publish("AAPL", Scores(1.0, None, None, None, computed_at=T0))
    out = Bars()
    app.take([trade(T0 + 0.5)], out)
    clock.now_value = T0 + 2
    app.close(clock.now(), out)
    app.scores.publish("AAPL", Scores(99.0, None, None, None, computed_at=T0 + 2))
    late = Bars()
    app.take([trade(T0 + 0.9, "12")], late)  # arrives after its second closed
    app.close(clock.now(), late)
    ((bar, scores),) = late.by_kind[SECOND]
    assert bar.revision and bar.high == Decimal(12)
    assert scores.composite == 1.0  # stamped when the second first closed


def test_it_builds_minute_bars_from_the_same_trades():
    app, clock, _ = build()
    out = Bars()
    app.take([trade(T0 + s, str(10 + s)) for s in range(0, 60, 10)], out)
    clock.now_value = T0 + 60.6
    app.close(clock.now(), out)
    ((minute, _),) = out.by_kind[MINUTE]
    assert (minute.second, minute.open, minute.close, minute.tick_count) == (
        T0,
        Decimal(10),
        Decimal(60),
        6,
    )
    assert len(out.by_kind[SECOND]) == 6


def test_it_hands_on_100_trade_bars_as_they_complete_and_renumbers_on_order():
    app, _, _ = build(next_numbers={"AAPL": 41})
    out = Bars()
    app.take([trade(T0 + i / 1000) for i in range(150)], out)
    assert [c.number for c in out.by_kind[TICK100]] == [41]
    app.control.put(Renumber({"AAPL": 7}))
    app._obey()  # another collector wrote; the partial bar is dropped
    out = Bars()
    app.take([trade(T0 + 1 + i / 1000) for i in range(100)], out)
    assert [c.number for c in out.by_kind[TICK100]] == [7]


def test_it_finishes_by_closing_everything_and_saying_so_last():
    saved = []
    app, _, outputs = build()
    app.save_partial = lambda ticks, seeds: saved.append((ticks.pending_count(), seeds))
    app.take([trade(T0 + 0.5), trade(T0 + 30)], Bars())
    app.finish()
    messages = drain(outputs["writer"])
    assert messages[-1] is FINISHED
    (bars,) = messages[:-1]
    assert sorted(b.second for b, _ in bars.by_kind[SECOND]) == [T0, T0 + 30]
    # The minute was still open: its running totals are saved for the next run.
    ((count, seeds),) = saved
    assert count == 2
    assert list(seeds[MINUTE]) == [("AAPL", T0)]
    assert seeds[MINUTE][("AAPL", T0)].count == 2


def test_it_drops_and_counts_what_sentiment_cannot_take():
    app, _, outputs = build(sentiment_size=1)
    for i in range(3):
        app.take([trade(T0 + i / 10)], Bars())
    assert outputs["sentiment"].dropped == 2
    assert outputs["sentiment"].queue.qsize() == 1
