"""Optional bearer tokens and throttling of the read API (api/access.py): off by
default, and when on, a 401/429 that says what to do, a chart that still reads
the API for its visitors, and the probes and the API's description left open."""

from datetime import UTC, datetime

import pytest

from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import override_settings

from api.models import Ticker
from backend.env import Rate

pytestmark = pytest.mark.django_db

TOKEN = "t0ken-of-at-least-16-chars"
OTHER = "another-token-0123456789"
BARS = "/api/second-candles/"
WINDOW = {"start_time": "2026-03-02T14:30:00Z", "end_time": "2026-03-02T14:31:00Z"}


@pytest.fixture(autouse=True)
def fresh_counts():
    cache.clear()
    Ticker.objects.create(symbol="QLD")
    yield
    cache.clear()


def status(client, authorization: str) -> int:
    return client.get(BARS, WINDOW, HTTP_AUTHORIZATION=authorization).status_code


def test_everything_is_open_by_default(client):
    assert client.get(BARS, WINDOW).status_code == 200
    response = client.get("/api/symbols/")
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


@override_settings(API_TOKENS=(TOKEN, OTHER))
def test_with_tokens_a_request_without_one_is_a_401_that_says_what_to_do(client):
    response = client.get(BARS, WINDOW)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "Authorization: Bearer" in response.json()["message"]
    wrong = client.get(BARS, WINDOW, HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    assert wrong.status_code == 401
    assert status(client, f"Bearer {TOKEN}") == 200
    assert status(client, f"bearer {OTHER}") == 200
    assert client.get("/api/stream/", {"symbols": "QLD"}).status_code == 401


@override_settings(API_TOKENS=(TOKEN,))
def test_probes_and_the_description_stay_open(client):
    for path in ("/api/health/", "/api/schema/", "/api/docs/"):
        assert client.get(path).status_code == 200, path


@override_settings(API_TOKENS=(TOKEN,))
def test_a_staff_session_reads_without_a_token(client):
    user = User.objects.create_user("ops", password="pw-for-tests", is_staff=True)
    client.force_login(user)
    assert client.get(BARS, WINDOW).status_code == 200
    plain = User.objects.create_user("someone", password="pw-for-tests")
    client.force_login(plain)
    assert client.get(BARS, WINDOW).status_code == 401


@override_settings(API_TOKENS=(TOKEN,), CHART_PUBLIC=True)
def test_the_public_chart_signs_its_visitor_a_cookie_for_the_api(client):
    assert client.get(BARS, WINDOW).status_code == 401
    page = client.get("/chart/")
    assert page.status_code == 200
    cookie = page.cookies["chart_access"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert client.get(BARS, WINDOW).status_code == 200  # the cookie came back
    client.cookies["chart_access"] = cookie.value[:-2] + "xx"  # tampered
    assert client.get(BARS, WINDOW).status_code == 401


@override_settings(API_TOKENS=(TOKEN,), CHART_PUBLIC=False)
def test_the_chart_cookie_means_nothing_once_the_chart_is_closed(client):
    from api.access import chart_cookie

    client.cookies["chart_access"] = chart_cookie()
    assert client.get(BARS, WINDOW).status_code == 401


@override_settings(API_THROTTLE=Rate(3, 60))
def test_throttling_counts_per_client_and_says_when_to_retry(client):
    seen = [client.get(BARS, WINDOW) for _ in range(4)]
    assert [r.status_code for r in seen] == [200, 200, 200, 429]
    assert [r["X-RateLimit-Remaining"] for r in seen] == ["2", "1", "0", "0"]
    assert seen[0]["X-RateLimit-Limit"] == "3"
    retry = int(seen[3]["Retry-After"])
    assert 1 <= retry <= 60
    assert seen[3].json()["error"] == "throttled"
    # Another client has its own count; probes are never throttled.
    other = client.get(BARS, WINDOW, REMOTE_ADDR="10.0.0.9")
    assert other.status_code == 200
    assert client.get("/api/health/").status_code == 200


@override_settings(API_TOKENS=(TOKEN, OTHER), API_THROTTLE=Rate(2, 3600))
def test_with_tokens_each_token_has_its_own_count(client):
    assert [status(client, f"Bearer {TOKEN}") for _ in range(3)] == [200, 200, 429]
    assert status(client, f"Bearer {OTHER}") == 200  # same address, another token
    assert client.get(BARS, WINDOW).status_code == 401  # no token: not counted in


def test_the_window_resets(client, monkeypatch):
    import api.access

    now = [datetime(2026, 3, 2, 14, 30, 0, tzinfo=UTC).timestamp()]
    monkeypatch.setattr(api.access.time, "time", lambda: now[0])
    with override_settings(API_THROTTLE=Rate(1, 1)):
        assert client.get(BARS, WINDOW).status_code == 200
        assert client.get(BARS, WINDOW).status_code == 429
        now[0] += 1.0
        assert client.get(BARS, WINDOW).status_code == 200
