"""The writer's memory is bounded during an outage; with a spool nothing is lost."""

import queue
import threading
from decimal import Decimal

from api.collector.aggregator import WriteBatch
from api.collector.spool import Spool
from api.collector.writer import Writer
from api.market.bars import SecondBar


def bar(second: int) -> SecondBar:
    one = Decimal(1)
    return SecondBar(
        "AAPL", second, one, one, one, one, one, 1, one, 0, 0, None, None, False
    )


def writer(**kwargs) -> Writer:
    return Writer(
        inbox=queue.Queue(),
        stop=threading.Event(),
        upstream_done=lambda: True,
        max_pending=1000,
        **kwargs,
    )


def test_it_drops_the_oldest_past_the_limit_without_a_spool_and_counts_them():
    w = writer()
    for second in range(1, 1102):
        w.add(WriteBatch(bars=[(bar(second), None)]))
    assert w.waiting <= 1000
    assert min(k[1] for k in w.pending_bars) == 1102 - w.waiting
    assert w.stats.overflow_dropped == 1101 - w.waiting


def test_it_keeps_the_oldest_on_disk_past_the_limit_with_a_spool(tmp_path):
    spool = Spool(tmp_path)
    w = writer(spool=spool)
    for second in range(1, 1102):
        w.add(WriteBatch(bars=[(bar(second), None)]))
    assert w.waiting <= 1000
    assert w.stats.overflow_dropped == 0
    on_disk = {second for _, second in spool.load().bars}
    in_memory = {second for _, second in w.pending_bars}
    assert on_disk | in_memory == set(range(1, 1102))
