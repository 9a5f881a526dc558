from api.market.health import Observation, judge


def obs(**overrides) -> Observation:
    values = {
        "market_open": True,
        "connected": True,
        "seconds_since_data": 1.0,
        "seconds_connected": 300.0,
        "stale_after": 120.0,
    }
    values.update(overrides)
    return Observation(**values)


def test_it_is_healthy_when_connected_with_fresh_data():
    verdict = judge(obs())
    assert (verdict.healthy, verdict.state) == (True, "ok")


def test_it_is_stale_after_stale_after_seconds_without_data():
    assert judge(obs(seconds_since_data=119.9)).state == "ok"
    verdict = judge(obs(seconds_since_data=120.0))
    assert (verdict.healthy, verdict.state, verdict.stale) == (False, "stale", True)
    assert verdict.reason == "no data for 120 s (limit 120 s)"


def test_it_starts_the_clock_fresh_on_a_new_connection():
    # No trade yet on a connection 5 s old: not stale, whatever came before.
    assert judge(obs(seconds_since_data=None, seconds_connected=5.0)).state == "ok"
    assert judge(obs(seconds_since_data=None, seconds_connected=121.0)).stale


def test_it_never_calls_silence_stale_while_the_market_is_closed():
    verdict = judge(obs(market_open=False, seconds_since_data=10_000.0))
    assert (verdict.healthy, verdict.state) == (True, "closed")


def test_it_is_unhealthy_while_disconnected_during_the_session():
    verdict = judge(obs(connected=False, seconds_since_data=None))
    assert (verdict.healthy, verdict.state) == (False, "connecting")


def test_it_flags_a_writer_that_falls_behind():
    assert judge(obs(bars_waiting=10, max_waiting=10)).state == "writer behind"
    late = obs(bars_waiting=3, seconds_since_commit=31.0, commit_expected_within=30.0)
    assert judge(late).state == "writer behind"
    nothing_waiting = obs(
        bars_waiting=0, seconds_since_commit=500.0, commit_expected_within=30.0
    )
    assert judge(nothing_waiting).state == "ok"
