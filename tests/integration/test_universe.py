"""Collectors on the symbol universe: an edit in the database reaches a running
collector within seconds, on its live connection; several collectors split the
universe by capacity, and the symbols of one that dies are claimed by another."""

import signal
import time
from datetime import UTC, datetime

import pytest

from api.models import Coverage, SecondSnapshot, UniverseSymbol
from api.simulator import FeedServer, SimOptions
from tests.integration import reference
from tests.integration.process import start_collector
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    return output


def stored(symbol: str, after: float = 0) -> bool:
    since = datetime.fromtimestamp(after, tz=UTC)
    return SecondSnapshot.objects.filter(
        ticker__symbol=symbol, timestamp__gte=since
    ).exists()


def live_symbols(server) -> list[set[str]]:
    return [set(r.symbols) for r in server.connection_log if r.ended is None]


def test_a_universe_edit_subscribes_and_unsubscribes_on_the_live_connection(
    tmp_path,
):
    UniverseSymbol.objects.create(symbol="AAPL")
    UniverseSymbol.objects.create(symbol="MSFT")
    UniverseSymbol.objects.create(symbol="TSLA", enabled=False)
    options = SimOptions(rate=150, seed=227, jitter_ms=0)
    with FeedServer(options=options) as server:
        proc = start_collector(
            server, "--universe", "--grace", "0.5", "--spool-dir", str(tmp_path)
        )
        try:
            assert wait_until(lambda: stored("AAPL") and stored("MSFT"), 30)
            assert live_symbols(server) == [{"AAPL", "MSFT"}]
            UniverseSymbol.objects.filter(symbol="TSLA").update(enabled=True)
            edited_at = time.time()
            assert wait_until(
                lambda: live_symbols(server) == [{"AAPL", "MSFT", "TSLA"}], 10
            )
            subscribed_in = time.time() - edited_at
            assert wait_until(lambda: stored("TSLA"), 10)
            UniverseSymbol.objects.filter(symbol="MSFT").update(enabled=False)
            disabled_at = time.time()
            assert wait_until(lambda: live_symbols(server) == [{"AAPL", "TSLA"}], 10)
            unsubscribed_in = time.time() - disabled_at
            time.sleep(8)  # past the lock's release: MSFT's last bars written
            server.set_silent(True)
            time.sleep(1.5)
        finally:
            output = stop(proc)
        sent = server.sent_trades(connection=0)
        connections = len(server.connection_log)
    assert proc.returncode == 0, output
    print(f"subscribed {subscribed_in:.1f} s, unsubscribed {unsubscribed_in:.1f} s")
    assert connections == 1, output  # no reconnect: all on the live socket
    assert "universe changed: +TSLA" in output
    assert "universe changed: -MSFT" in output
    assert "no longer writing MSFT" in output
    assert "➕ subscribed to MSFT" not in output  # never again
    # Every bar of what the socket carried is stored exactly, MSFT up to the
    # unsubscribe included.
    assert reference.stored_second_bars() == reference.second_bars(sent)
    ends = dict(
        Coverage.objects.filter(ticker__symbol="MSFT").values_list("end_reason", "end")
    )
    assert "unsubscribed" in ends
    tsla = Coverage.objects.get(ticker__symbol="TSLA")
    assert tsla.start.timestamp() >= edited_at - 0.5


def test_collectors_split_the_universe_by_capacity_and_claim_a_dead_ones_symbols(
    tmp_path,
):
    symbols = ["AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "META"]
    for symbol in symbols:
        UniverseSymbol.objects.create(symbol=symbol)
    options = SimOptions(rate=300, seed=229, jitter_ms=0)
    with FeedServer(options=options) as server:
        small = start_collector(
            server, "--universe", "--capacity", "3", "--grace", "0.5",
            "--spool-dir", str(tmp_path / "a"),
        )  # fmt: skip
        big = None
        try:
            assert wait_until(lambda: len(live_symbols(server)) == 1, 30)
            assert wait_until(lambda: len(live_symbols(server)[0]) == 3, 10)
            first = live_symbols(server)[0]
            big = start_collector(
                server, "--universe", "--capacity", "10", "--grace", "0.5",
                "--spool-dir", str(tmp_path / "b"),
            )  # fmt: skip
            assert wait_until(lambda: len(live_symbols(server)) == 2, 30)
            # The rest, and only the rest, goes to the second.
            assert wait_until(
                lambda: live_symbols(server)[1] == set(symbols) - first, 10
            )
            assert wait_until(lambda: all(stored(s) for s in symbols), 15)
            time.sleep(2)
            assert live_symbols(server)[0] == first  # nothing moved meanwhile
            killed_at = time.time()
            small.kill()
            small.wait(timeout=10)
            assert wait_until(
                lambda: any(s == set(symbols) for s in live_symbols(server)), 15
            )
            assert wait_until(lambda: all(stored(s, killed_at + 1) for s in first), 15)
            took_over_in = time.time() - killed_at
            time.sleep(2)
            server.set_silent(True)
            time.sleep(1.5)
        finally:
            if small.poll() is None:
                small.kill()
            big_output = stop(big) if big is not None else ""
        streams = {
            r.index: reference.second_bars(server.sent_trades(connection=r.index))
            for r in server.connection_log
        }
    assert big.returncode == 0, big_output
    print(f"the dead collector's symbols were taken over in {took_over_in:.1f} s")
    assert took_over_in < 15
    # Every stored second is exactly one connection's: never a mixture.
    for key, bar in reference.stored_second_bars().items():
        assert any(stream.get(key) == bar for stream in streams.values()), key
