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
    full = judge(obs(bars_waiting=10, max_waiting=10))
    assert (full.state, full.severity) == ("writer behind", "failing")
    late = judge(obs(bars_waiting=3, oldest_waiting=12.5, wait_limit=12.0))
    assert (late.healthy, late.state, late.severity) == (
        False,
        "writer behind",
        "degraded",
    )
    assert late.reason == "3 bars waiting, the oldest for 12 s (limit 12 s)"
    assert judge(obs(bars_waiting=3, oldest_waiting=11.9, wait_limit=12.0)).healthy


def test_it_says_writer_behind_before_any_commit_and_after_the_close():
    # Nothing was ever written (no commit to time from): the wait still counts,
    # and a closed market does not hide it.
    verdict = judge(
        obs(
            market_open=False,
            bars_waiting=97,
            oldest_waiting=45.0,
            wait_limit=12.0,
            last_error="connection refused",
        )
    )
    assert (verdict.healthy, verdict.state) == (False, "writer behind")
    assert verdict.reason.endswith("(last error: connection refused)")


def test_it_flags_a_writer_thread_that_stopped_running():
    verdict = judge(obs(writer_silent=31.0, stuck_after=30.0, bars_waiting=5))
    assert (verdict.state, verdict.severity) == ("writer stuck", "failing")
    assert judge(obs(writer_silent=29.0, stuck_after=30.0)).healthy


def test_it_never_calls_an_unknown_writer_role_a_standby():
    verdict = judge(obs(role="unknown", bars_waiting=40, last_error="timeout"))
    assert (verdict.healthy, verdict.state) == (False, "leadership unknown")
    assert "40 bars kept and spooled" in verdict.reason
    standby = judge(obs(role="standby", bars_waiting=60, oldest_waiting=50.0))
    assert (standby.healthy, standby.state) == (True, "standby")


def test_it_is_degraded_while_bars_go_to_the_spool():
    verdict = judge(obs(spooling=True, last_error="server closed the connection"))
    assert (verdict.healthy, verdict.state, verdict.severity) == (
        False,
        "spooling",
        "degraded",
    )


def test_it_says_so_while_a_database_call_hangs():
    verdict = judge(obs(db_busy=2.5, db_busy_limit=2.0, bars_waiting=9))
    assert (verdict.healthy, verdict.state) == (False, "database not answering")
    assert verdict.reason == (
        "a database call has not returned for 2 s; 9 bars waiting go to the spool"
    )
    assert judge(obs(db_busy=0.01, db_busy_limit=2.0)).healthy
