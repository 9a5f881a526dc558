"""Per-symbol ownership: collectors given overlapping symbol sets never both
write a symbol, and killing one hands exactly its symbols to the others. Each
simulator connection streams its own random trades, so every stored row tells
which collector wrote it."""

import signal
import time
from datetime import UTC, datetime

import pytest

from api.models import SecondSnapshot, TickCandle100
from api.simulator import FeedServer, SimOptions
from tests.integration import reference
from tests.integration.process import start_collector
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    return output


def rows_of(symbol: str) -> dict:
    return {k: v for k, v in reference.stored_second_bars().items() if k[0] == symbol}


def numbers_of(symbol: str) -> list[int]:
    return sorted(
        TickCandle100.objects.filter(ticker__symbol=symbol).values_list(
            "candle_number", flat=True
        )
    )


def stored(symbol: str, after: float) -> bool:
    since = datetime.fromtimestamp(after, tz=UTC)
    return SecondSnapshot.objects.filter(
        ticker__symbol=symbol, timestamp__gte=since
    ).exists()


def test_overlapping_symbol_sets_never_give_one_symbol_two_writers(tmp_path):
    options = SimOptions(rate=200, seed=211, jitter_ms=0)
    with FeedServer(options=options) as server:
        first = start_collector(
            server, "--symbols", "AAPL,MSFT", "--grace", "0.5",
            "--spool-dir", str(tmp_path / "a"),
        )  # fmt: skip
        second = None
        try:
            assert wait_until(lambda: stored("MSFT", 0), 30)
            second = start_collector(
                server, "--symbols", "MSFT,TSLA", "--grace", "0.5",
                "--spool-dir", str(tmp_path / "b"),
            )  # fmt: skip
            assert server.wait_for_connections(2, timeout=30)
            assert wait_until(lambda: stored("TSLA", 0), 30)
            time.sleep(4)
            server.set_silent(True)
            time.sleep(1.5)
        finally:
            # The one standing by for MSFT stops first: it must not take over.
            second_output = stop(second) if second is not None else ""
            first_output = stop(first)
        a = reference.second_bars(server.sent_trades(connection=0))
        b = reference.second_bars(server.sent_trades(connection=1))
        tick_a = reference.tick_candles(server.sent_trades(connection=0))
        tick_b = reference.tick_candles(server.sent_trades(connection=1))
    assert first.returncode == 0 and second.returncode == 0, second_output
    assert "this collector is the writer for AAPL-MSFT" in first_output
    assert "this collector is the writer for TSLA" in second_output
    assert "standby: another collector writes MSFT" in second_output
    # Each symbol is exactly one collector's stream: nothing mixed in.
    assert rows_of("AAPL") == {k: v for k, v in a.items() if k[0] == "AAPL"}
    assert rows_of("MSFT") == {k: v for k, v in a.items() if k[0] == "MSFT"}
    assert rows_of("TSLA") == {k: v for k, v in b.items() if k[0] == "TSLA"}
    candles = reference.stored_tick_candles()
    assert candles == tick_a | {k: v for k, v in tick_b.items() if k[0] == "TSLA"}
    for symbol in ("AAPL", "MSFT", "TSLA"):
        numbers = numbers_of(symbol)
        assert numbers == list(range(1, len(numbers) + 1))


def test_killing_a_collector_hands_exactly_its_symbols_to_the_others(tmp_path):
    options = SimOptions(rate=200, seed=223, jitter_ms=0)
    with FeedServer(options=options) as server:
        owner = start_collector(
            server, "--symbols", "AAPL,MSFT", "--grace", "0.5",
            "--spool-dir", str(tmp_path / "a"),
        )  # fmt: skip
        other = None
        try:
            assert wait_until(lambda: stored("MSFT", 0), 30)
            other = start_collector(
                server, "--symbols", "MSFT,TSLA", "--grace", "0.5",
                "--spool-dir", str(tmp_path / "b"),
            )  # fmt: skip
            assert server.wait_for_connections(2, timeout=30)
            assert wait_until(lambda: stored("TSLA", 0), 30)
            time.sleep(3)
            killed_at = time.time()
            owner.kill()
            owner.wait(timeout=10)
            assert wait_until(lambda: stored("MSFT", killed_at + 1), 15)
            took_over_in = time.time() - killed_at
            time.sleep(3)
            server.set_silent(True)
            time.sleep(1.5)
        finally:
            if owner.poll() is None:
                owner.kill()
            other_output = stop(other) if other is not None else ""
        a = reference.second_bars(server.sent_trades(connection=0))
        b = reference.second_bars(server.sent_trades(connection=1))
    assert other.returncode == 0, other_output
    print(f"MSFT taken over {took_over_in:.1f} s after its owner was killed")
    assert took_over_in < 15
    assert "is the writer for MSFT (" in other_output  # a takeover, MSFT only
    assert "writer for MSFT-TSLA" not in other_output

    # AAPL had no other collector: only the dead owner's stream, up to its end.
    aapl = rows_of("AAPL")
    assert aapl and all(a[k] == v for k, v in aapl.items())
    assert max(k[1] for k in aapl) < killed_at
    # TSLA was the survivor's all along.
    assert rows_of("TSLA") == {k: v for k, v in b.items() if k[0] == "TSLA"}
    # MSFT: one switch - the owner's stream up to it, the survivor's after it,
    # nothing missing on either side.
    msft = sorted(rows_of("MSFT").items())
    switch = max(k[1] for k, v in msft if a.get(k) == v and k[1] < killed_at)
    assert all(a[k] == v for k, v in msft if k[1] <= switch)
    assert {k for k, _ in msft if k[1] <= switch} == {
        k for k in a if k[0] == "MSFT" and k[1] <= switch
    }
    after = [(k, v) for k, v in msft if k[1] > switch]
    assert after and all(b[k] == v for k, v in after)
    last = max(k[1] for k, _ in after)
    assert {k for k, _ in after} == {
        k for k in b if k[0] == "MSFT" and switch < k[1] <= last
    }
    numbers = numbers_of("MSFT")
    assert numbers == list(range(1, len(numbers) + 1))
