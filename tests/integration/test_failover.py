"""Two collectors for the same symbols: one writes, the other stands by and takes
over when the writer dies. The simulator gives every connection its own random
stream, so each stored row tells which collector wrote it."""

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

SYMBOLS = "AAPL,MSFT"


def stored_after(epoch: float) -> bool:
    since = datetime.fromtimestamp(epoch, tz=UTC)
    return SecondSnapshot.objects.filter(timestamp__gte=since).exists()


def test_it_lets_one_collector_write_and_the_standby_take_over_after_sigkill(
    tmp_path,
):
    options = SimOptions(rate=200, seed=53, jitter_ms=0)
    args = ("--symbols", SYMBOLS, "--grace", "0.5")
    with FeedServer(options=options) as server:
        leader = start_collector(server, *args, "--spool-dir", str(tmp_path / "a"))
        standby = None
        try:
            assert wait_until(lambda: SecondSnapshot.objects.count() >= 4, 30)
            standby = start_collector(server, *args, "--spool-dir", str(tmp_path / "b"))
            assert server.wait_for_connections(2, timeout=30)
            time.sleep(4)
            killed_at = time.time()
            leader.kill()
            leader.wait(timeout=10)
            assert wait_until(lambda: stored_after(killed_at + 1), 15)
            took_over_in = time.time() - killed_at
            time.sleep(3)
            server.set_silent(True)
            time.sleep(1.5)
        finally:
            if leader.poll() is None:
                leader.kill()
            if standby is not None:
                standby.send_signal(signal.SIGTERM)
                output, _ = standby.communicate(timeout=30)
        first = reference.second_bars(server.sent_trades(connection=0))
        second = reference.second_bars(server.sent_trades(connection=1))
    assert standby.returncode == 0, output
    assert "standby" in output
    assert "is the writer" in output
    assert took_over_in < 15

    stored = reference.stored_second_bars()
    # A second is written by its end + grace (0.5 s) + one writer cycle (~1 s).
    closed = killed_at - 3
    before = {k: v for k, v in stored.items() if k[1] < closed}
    after = {k: v for k, v in stored.items() if k[1] > killed_at + 1}
    # While the leader lived, only it wrote: every row is exactly its stream's.
    assert before and all(first[key] == bar for key, bar in before.items())
    # Every second the leader had written is stored.
    assert set(before) == {k for k in first if k[1] < closed}
    # After the takeover every second of the standby's stream is stored, exactly.
    assert after and all(second[key] == bar for key, bar in after.items())
    last = max(second for _, second in after)
    assert set(after) == {k for k in second if killed_at + 1 < k[1] <= last}
    # 100-trade bars: numbered on without a gap or a repeat.
    for symbol in SYMBOLS.split(","):
        numbers = sorted(
            TickCandle100.objects.filter(ticker__symbol=symbol).values_list(
                "candle_number", flat=True
            )
        )
        assert numbers == list(range(1, len(numbers) + 1))
