import logging

from api.workers.throttle import LogThrottle


def test_it_logs_the_first_then_once_per_interval_with_the_suppressed_count(caplog):
    logger = logging.getLogger("test.throttle")
    throttle = LogThrottle(logger, interval=60.0)
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        logged = [
            throttle.log(logging.WARNING, "db", t / 1000, "db down: %s", "boom")
            for t in range(10_000)  # 10,000 errors within 10 s
        ]
        assert throttle.log(logging.WARNING, "db", 61.0, "db down: %s", "boom")
    assert logged.count(True) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "db down: boom",
        "db down: boom (repeated 9999 times in the last 61 s)",
    ]


def test_it_throttles_each_key_on_its_own():
    throttle = LogThrottle(logging.getLogger("test.throttle"), interval=60.0)
    assert throttle.log(logging.INFO, "a", 0.0, "a")
    assert throttle.log(logging.INFO, "b", 0.0, "b")
    assert not throttle.log(logging.INFO, "a", 1.0, "a")
