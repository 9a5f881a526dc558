"""Who may read the API, and how often: optional bearer tokens and throttling,
both off by default (local use needs neither), both set by the environment.

- `API_TOKENS` (comma-separated, each at least 16 characters): when set, every
  `/api/` request needs `Authorization: Bearer <token>`, or a logged-in staff
  session (the admin, the chart), or the chart's own cookie when the operator
  made the chart public (`CHART_PUBLIC`): the chart page signs one for its
  visitor, good for 12 hours, so its requests and its event stream (a browser's
  EventSource cannot send headers) are let in. Otherwise a 401 with
  `WWW-Authenticate: Bearer`.
- `API_THROTTLE` (`N/s`, `N/min`, `N/hour`, `N/day`): at most N requests per
  client per window (a fixed window), counted per token, staff user, or client
  address; beyond it a 429 with `Retry-After`. Each counted response carries
  `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds).
  An event stream counts once, when it opens. Counts live in Django's cache
  ("default": per web process unless `CACHES` names a shared one).

Open whatever the settings: `/api/health/` (probes), `/api/schema/` and
`/api/docs/` (the API's description is not a secret).
"""

import hashlib
import hmac
import math
import time

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.http import JsonResponse

from backend.env import Rate

OPEN_PATHS = ("/api/health/", "/api/schema/", "/api/docs/")
CHART_COOKIE = "chart_access"
CHART_COOKIE_AGE = 12 * 3600
_SALT = "api.access.chart"


def chart_cookie() -> str:
    return signing.dumps("chart", salt=_SALT)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _bearer(request) -> str | None:
    kind, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if kind.lower() == "bearer" and value.strip() else None


def client(request) -> str | None:
    """Who is asking, as a throttling key; None when not allowed in."""
    token = _bearer(request)
    tokens = settings.API_TOKENS
    if token is not None and any(hmac.compare_digest(token, t) for t in tokens):
        return "token:" + _digest(token)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return f"user:{user.pk}"
    address = "addr:" + request.META.get("REMOTE_ADDR", "?")
    if not tokens:
        return address
    if settings.CHART_PUBLIC and CHART_COOKIE in request.COOKIES:
        try:
            signing.loads(
                request.COOKIES[CHART_COOKIE], salt=_SALT, max_age=CHART_COOKIE_AGE
            )
            return address
        except signing.BadSignature:
            return None
    return None


def _throttled(key: str, rate: Rate) -> tuple[bool, dict]:
    now = time.time()
    window = int(now // rate.period)
    name = f"api-throttle:{key}:{rate.period}:{window}"
    cache.add(name, 0, timeout=rate.period + 1)
    try:
        used = cache.incr(name)
    except ValueError:  # expired between add and incr
        cache.set(name, 1, timeout=rate.period + 1)
        used = 1
    reset = max(1, math.ceil((window + 1) * rate.period - now))
    headers = {
        "X-RateLimit-Limit": str(rate.count),
        "X-RateLimit-Remaining": str(max(0, rate.count - used)),
        "X-RateLimit-Reset": str(reset),
    }
    return used > rate.count, headers


class ApiAccessMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if not path.startswith("/api/") or path.startswith(OPEN_PATHS):
            return self.get_response(request)
        if not settings.API_TOKENS and settings.API_THROTTLE is None:
            return self.get_response(request)  # the default: open, unlimited
        key = client(request)
        if key is None:
            response = JsonResponse(
                {
                    "error": "unauthorized",
                    "message": "this API needs a token: Authorization: Bearer <token>",
                },
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="api"'
            return response
        rate = settings.API_THROTTLE
        if rate is None:
            return self.get_response(request)
        over, headers = _throttled(key, rate)
        if over:
            response = JsonResponse(
                {
                    "error": "throttled",
                    "message": f"more than {rate.count} requests in "
                    f"{rate.period} s; retry after {headers['X-RateLimit-Reset']} s",
                },
                status=429,
            )
            response["Retry-After"] = headers["X-RateLimit-Reset"]
        else:
            response = self.get_response(request)
        for name, value in headers.items():
            response[name] = value
        return response
