"""A database link that goes *silent* - a partition, a failover behind a stale
address, a dead NAT entry: nothing is closed, packets just stop. The collector
runs as its own process against PostgreSQL through a proxy the test controls; the
frozen connections stay frozen after the heal (only new ones work again)."""

import signal
import time
from datetime import UTC, datetime

import pytest

from api.models import SecondSnapshot, TickCandle100
from api.simulator import FeedServer, SimOptions
from tests.integration import reference
from tests.integration.process import free_port, healthz, start_collector
from tests.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SYMBOLS = "AAPL,MSFT,TSLA"


def stored_after(epoch: float) -> bool:
    since = datetime.fromtimestamp(epoch, tz=UTC)
    return SecondSnapshot.objects.filter(timestamp__gte=since).exists()


def stop(proc, sig=signal.SIGTERM) -> tuple[str, float]:
    began = time.monotonic()
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=30)
    return output, time.monotonic() - began


def test_it_stores_every_bar_exactly_through_a_20s_black_hole(proxy, tmp_path):
    options = SimOptions(rate=200, seed=61, jitter_ms=0, max_trades=200 * 55)
    port = free_port()
    seen = []
    with FeedServer(options=options) as server:
        proc = start_collector(
            server,
            "--symbols",
            SYMBOLS,
            "--grace",
            "0.5",
            "--spool-dir",
            str(tmp_path),
            "--metrics-port",
            str(port),
            db_port=proxy.port,
        )
        try:
            assert wait_until(lambda: SecondSnapshot.objects.count() >= 6, 30)
            assert wait_until(lambda: healthz(port)[0] == 200, 10)
            proxy.blackhole()
            holed_at = time.monotonic()
            while time.monotonic() - holed_at < 20:
                status, body = healthz(port)
                seen.append((time.monotonic() - holed_at, status, body.get("state")))
                time.sleep(0.5)
            assert proc.poll() is None, "the collector must ride out the black hole"
            proxy.restore()  # new connections work; the frozen ones stay frozen
            healed_at = time.time()
            assert wait_until(lambda: stored_after(healed_at), 30)
            resumed_in = time.time() - healed_at
            assert server.wait_for_trades(options.max_trades, timeout=60)
            time.sleep(2)  # the last seconds close and are written
            assert wait_until(lambda: healthz(port)[0] == 200, 20)
        finally:
            output, _ = stop(proc)
        sent = server.sent_trades()
    assert proc.returncode == 0, output
    print(f"writes resumed {resumed_in:.1f} s after the heal")
    print("health during the hole:", [(round(t), s, st) for t, s, st in seen])
    assert resumed_in < 15, output
    # Health told the truth while it lasted: within 4 s of the hole (a call
    # hangs 2 s before it is suspect), and from then on, never ok.
    assert all(status == 503 for t, status, _ in seen if t >= 4), seen
    assert "database not answering" in {state for _, _, state in seen}
    assert "spool" in output
    assert "writer lock of AAPL-MSFT-TSLA regained" in output, output
    assert "standby" not in output  # unknown is never mistaken for standby
    assert reference.stored_second_bars() == reference.second_bars(sent)
    assert reference.stored_minute_bars() == reference.minute_bars(sent)
    assert reference.stored_tick_candles() == reference.tick_candles(sent)


def test_it_exits_cleanly_on_sigterm_in_a_black_hole_and_the_restart_stores_all(
    proxy, tmp_path
):
    options = SimOptions(rate=200, seed=67, jitter_ms=0)
    args = ("--symbols", SYMBOLS, "--grace", "0.5", "--spool-dir", str(tmp_path))
    with FeedServer(options=options) as server:
        first = start_collector(server, *args, db_port=proxy.port)
        try:
            assert wait_until(lambda: SecondSnapshot.objects.count() >= 6, 30)
            proxy.blackhole()
            time.sleep(7)
            # Pause the feed so the collector has read every frame sent.
            server.set_silent(True)
            time.sleep(1.0)
        finally:
            first_output, took = stop(first)
            print(first_output)
        proxy.restore()
        second = start_collector(server, *args, db_port=proxy.port)
        try:
            assert server.wait_for_connections(2, timeout=30)
            server.set_silent(False)
            restarted_at = time.time()
            assert wait_until(lambda: stored_after(restarted_at), 30)
            assert wait_until(lambda: server.trades_sent >= 10_000, 60)
            server.set_silent(True)
            time.sleep(1.5)
        finally:
            second_output, _ = stop(second)
            print(second_output)
        sent = server.sent_trades()
    assert first.returncode == 0, first_output
    print(f"SIGTERM in the black hole: exit {first.returncode} after {took:.1f} s")
    assert took <= 10, first_output
    assert "they are in the spool" in first_output, first_output
    assert second.returncode == 0, second_output
    assert "from the spool" in second_output, second_output
    assert "continuing 100-trade bar" in second_output, second_output
    assert "standby" not in second_output
    # As if nothing had happened: every bar of the whole stream, exactly.
    assert reference.stored_second_bars() == reference.second_bars(sent)
    assert reference.stored_minute_bars() == reference.minute_bars(sent)
    assert reference.stored_tick_candles() == reference.tick_candles(sent)


def test_it_hands_the_writer_role_to_a_standby_when_the_writer_is_cut_off(
    proxy, tmp_path
):
    options = SimOptions(rate=150, seed=71, jitter_ms=0)
    args = ("--symbols", SYMBOLS, "--grace", "0.5")
    with FeedServer(options=options) as server:
        leader = start_collector(
            server, *args, "--spool-dir", str(tmp_path / "a"), db_port=proxy.port
        )
        standby = None
        try:
            assert wait_until(lambda: SecondSnapshot.objects.count() >= 6, 30)
            standby = start_collector(server, *args, "--spool-dir", str(tmp_path / "b"))
            assert server.wait_for_connections(2, timeout=30)
            time.sleep(3)
            proxy.blackhole()
            holed_at = time.time()
            assert wait_until(lambda: stored_after(holed_at + 1), 30)
            took_over_in = time.time() - holed_at
            time.sleep(max(0.0, holed_at + 22 - time.time()))
            proxy.restore()  # the old writer is back: it must stand by now
            # Its next election may wait out a connect into the hole (5 s) and a
            # backoff (3 s) first.
            time.sleep(12)
            server.set_silent(True)
            time.sleep(1.5)
        finally:
            leader_output, _ = stop(leader)
            if standby is not None:
                standby_output, _ = stop(standby)
        first = reference.second_bars(server.sent_trades(connection=0))
        second = reference.second_bars(server.sent_trades(connection=1))
    assert leader.returncode == 0, leader_output
    assert standby.returncode == 0, standby_output
    print(f"the standby took over {took_over_in:.1f} s after the writer's link died")
    assert took_over_in < 20, standby_output
    assert "🧍 standby" in leader_output  # back from the hole, it stands by
    assert "recent bars to write" in standby_output

    stored = reference.stored_second_bars()
    for symbol in SYMBOLS.split(","):
        rows = sorted((k, v) for k, v in stored.items() if k[0] == symbol)
        # One switch: every row up to it is the old writer's stream, every row
        # after it the new writer's - never a row of the old one after it.
        switch = max(k[1] for k, v in rows if first.get(k) == v and k[1] < holed_at)
        assert all(first[k] == v for k, v in rows if k[1] <= switch)
        after = [(k, v) for k, v in rows if k[1] > switch]
        assert after and all(second[k] == v for k, v in after)
        # Nothing missing on either side.
        assert {k for k, _ in rows if k[1] <= switch} == {
            k for k in first if k[0] == symbol and k[1] <= switch
        }
        last = max(k[1] for k, _ in after)
        assert {k for k, _ in after} == {
            k for k in second if k[0] == symbol and switch < k[1] <= last
        }
        numbers = sorted(
            TickCandle100.objects.filter(ticker__symbol=symbol).values_list(
                "candle_number", flat=True
            )
        )
        assert numbers == list(range(1, len(numbers) + 1))


def test_it_ends_its_own_orphaned_session_after_a_short_black_hole(proxy, tmp_path):
    # Shorter than the sessions' idle timeout: after the heal the server still
    # holds the old session - and its writer lock - behind the frozen link.
    options = SimOptions(rate=200, seed=101, jitter_ms=0, max_trades=200 * 25)
    with FeedServer(options=options) as server:
        proc = start_collector(
            server,
            "--symbols",
            SYMBOLS,
            "--grace",
            "0.5",
            "--spool-dir",
            str(tmp_path),
            db_port=proxy.port,
        )
        try:
            assert wait_until(lambda: SecondSnapshot.objects.count() >= 6, 30)
            proxy.blackhole()
            time.sleep(4)
            proxy.restore()
            healed_at = time.time()
            assert wait_until(lambda: stored_after(healed_at), 20)
            resumed_in = time.time() - healed_at
            assert server.wait_for_trades(options.max_trades, timeout=60)
            time.sleep(2)
        finally:
            output, _ = stop(proc)
        sent = server.sent_trades()
    assert proc.returncode == 0, output
    print(f"writes resumed {resumed_in:.1f} s after a 4-s black hole")
    assert "ended our own orphaned database session" in output, output
    assert "standby" not in output
    assert resumed_in < 10, output
    assert reference.stored_second_bars() == reference.second_bars(sent)
    assert reference.stored_minute_bars() == reference.minute_bars(sent)
    assert reference.stored_tick_candles() == reference.tick_candles(sent)
