"""EODHD news client and the per-symbol store of known articles.

The client never raises for network, HTTP or JSON errors: it returns None and sets
`next_allowed_at`, which the poller respects. It never reads the clock either; the
caller passes `now` (epoch seconds) so the budget and backoff are testable.
"""

import logging
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import requests

from api.redact import mask_token
from api.sentiment.scoring import Article

logger = logging.getLogger(__name__)

BACKOFF_BASE = 5.0  # first retry after a 5xx/network/body error
BACKOFF_MAX = 900.0
RATE_LIMIT_BACKOFF = 60.0  # 429: the limit is per minute
FORBIDDEN_BACKOFF = 3600.0  # 403: a key/plan problem will not fix itself soon
PAGE_LIMIT = 50
ARTICLE_MAX_AGE = 24 * 3600.0  # decayed to ~1e-23 of its impact by then
ARTICLES_PER_SYMBOL = 500

_CRYPTO_RE = re.compile(r"^[A-Z0-9]+-[A-Z]{3,4}$")  # BTC-USD, ETH-USDT


def eodhd_symbol(symbol: str) -> str:
    """REST symbols carry an exchange suffix: AAPL -> AAPL.US, BTC-USD -> BTC-USD.CC;
    a symbol that already has one is kept."""
    symbol = symbol.strip().upper()
    if "." in symbol:
        return symbol
    if _CRYPTO_RE.match(symbol):
        return f"{symbol}.CC"
    return f"{symbol}.US"


def normalise_url(url: str) -> str:
    """Dedupe key: lower-case scheme and host, no query, fragment or trailing slash
    (the same article is served with different tracking query strings)."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


def parse_published(value: str) -> float:
    """ISO 8601 to epoch seconds; a timestamp without a zone is UTC."""
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_article(item: object) -> Article | None:
    """One news item, or None if it is malformed. An item without a numeric
    polarity is skipped: it cannot be scored, and 0 would be a made-up value."""
    if not isinstance(item, dict):
        return None
    url, published, sentiment = (
        item.get("link"),
        item.get("date"),
        item.get("sentiment"),
    )
    if not isinstance(url, str) or not url.strip() or not isinstance(published, str):
        return None
    if not isinstance(sentiment, dict):
        return None
    polarity = sentiment.get("polarity")
    if isinstance(polarity, bool) or not isinstance(polarity, int | float):
        return None
    # Compared before any float conversion: a huge JSON integer would overflow.
    if not -1 <= polarity <= 1:
        return None  # out of range or NaN: not a polarity we can trust
    try:
        normalise_url(url)  # its dedupe key must exist (urlsplit can refuse)
        published_at = parse_published(published)
    except ValueError:
        return None
    title = item.get("title")
    return Article(
        url=url.strip(),
        published_at=published_at,
        polarity=float(polarity),
        title=title if isinstance(title, str) else "",
    )


def _utc_day(now: float) -> date:
    return datetime.fromtimestamp(now, tz=UTC).date()


def _next_utc_midnight(now: float) -> float:
    day = _utc_day(now) + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


class NewsClient:
    def __init__(
        self,
        api_base: str,
        api_token: str,
        session: requests.Session | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        daily_call_budget: int = 100_000,
        cost_per_request: int = 5,
        shared: Callable[[int], bool | None] | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.api_token = api_token
        self.session = session or requests.Session()
        self.timeout = (connect_timeout, read_timeout)
        self.daily_call_budget = daily_call_budget
        self.cost_per_request = cost_per_request
        # The key's budget shared with every process on it (api.budget): True
        # counted, False spent for today, None no answer (the own count rules).
        self.shared = shared
        self.next_allowed_at = 0.0
        self.calls_used_today = 0
        self.consecutive_failures = 0
        self._budget_day: date | None = None
        self._forbidden_logged = False

    def _roll_day(self, now: float) -> None:
        day = _utc_day(now)
        if day != self._budget_day:
            self._budget_day = day
            self.calls_used_today = 0

    def can_call(self, now: float) -> bool:
        self._roll_day(now)
        if now < self.next_allowed_at:
            return False
        return self.calls_used_today + self.cost_per_request <= self.daily_call_budget

    def fetch(self, symbol: str, day: date, now: float) -> list[Article] | None:
        """The day's articles for `symbol`, or None on any failure (or when the
        backoff/budget does not allow a call now)."""
        if not self.can_call(now):
            return None
        params = {
            "s": eodhd_symbol(symbol),
            "from": day.isoformat(),
            "to": day.isoformat(),
            "limit": PAGE_LIMIT,
            "offset": 0,
            "api_token": self.api_token,
            "fmt": "json",
        }
        # Count the call before sending: a request that fails may still be billed.
        if self.shared is not None and self.shared(self.cost_per_request) is False:
            # Other processes on this key spent today's budget.
            self.next_allowed_at = _next_utc_midnight(now)
            self.calls_used_today = max(self.calls_used_today, self.daily_call_budget)
            logger.warning(
                "news %s: the key's daily budget of %d calls is spent (shared by "
                "every process on it); polling again after midnight UTC",
                symbol,
                self.daily_call_budget,
            )
            return None
        self.calls_used_today += self.cost_per_request
        try:
            response = self.session.get(
                f"{self.api_base}/news", params=params, timeout=self.timeout
            )
        except requests.RequestException as exc:
            # Exception text can contain the full URL, token included.
            logger.warning(
                "news %s: network error %s; retrying in %ss",
                symbol,
                mask_token(str(exc)),
                self._fail(now),
            )
            return None
        status = response.status_code
        if status == 402:
            # Daily calls used up: nothing will succeed before the next UTC day.
            self.next_allowed_at = _next_utc_midnight(now)
            self.calls_used_today = max(self.calls_used_today, self.daily_call_budget)
            logger.warning("news %s: 402, daily API calls used up", symbol)
            return None
        if status == 403:
            self.next_allowed_at = now + FORBIDDEN_BACKOFF
            if not self._forbidden_logged:
                self._forbidden_logged = True
                logger.error(
                    "news %s: 403 forbidden, check the API key and plan; "
                    "retrying in %ss",
                    symbol,
                    FORBIDDEN_BACKOFF,
                )
            return None
        if status == 429:
            self.consecutive_failures += 1
            self.next_allowed_at = now + max(RATE_LIMIT_BACKOFF, self._backoff())
            logger.warning("news %s: 429, per-minute limit hit", symbol)
            return None
        if status != 200:
            logger.warning(
                "news %s: HTTP %s; retrying in %ss", symbol, status, self._fail(now)
            )
            return None
        try:
            payload = response.json()
        except ValueError:
            logger.warning(
                "news %s: bad JSON %r; retrying in %ss",
                symbol,
                mask_token(response.text[:200]),
                self._fail(now),
            )
            return None
        if not isinstance(payload, list):
            # EODHD sometimes answers 200 with {"error": ...} or {"message": ...}.
            logger.warning(
                "news %s: error body %r; retrying in %ss",
                symbol,
                mask_token(str(payload)[:200]),
                self._fail(now),
            )
            return None
        self.consecutive_failures = 0
        self._forbidden_logged = False
        articles = [a for a in map(parse_article, payload) if a is not None]
        if len(articles) < len(payload):
            logger.info(
                "news %s: skipped %s malformed items",
                symbol,
                len(payload) - len(articles),
            )
        return articles

    def _backoff(self) -> float:
        exponent = max(0, self.consecutive_failures - 1)
        return min(BACKOFF_MAX, BACKOFF_BASE * 2**exponent)

    def _fail(self, now: float) -> float:
        """Record a failure, back off exponentially; returns the delay."""
        self.consecutive_failures += 1
        delay = self._backoff()
        self.next_allowed_at = now + delay
        return delay


class ArticleStore:
    """Known articles per symbol, one per normalised URL. Not thread-safe: the
    caller holds a lock. Failed polls never reach it, so an outage keeps them."""

    def __init__(
        self,
        max_age: float = ARTICLE_MAX_AGE,
        max_per_symbol: int = ARTICLES_PER_SYMBOL,
    ) -> None:
        self.max_age = max_age
        self.max_per_symbol = max_per_symbol
        self._by_symbol: dict[str, dict[str, Article]] = {}

    def merge(self, symbol: str, articles: Iterable[Article]) -> int:
        """Add the articles not yet known; returns how many were new."""
        known = self._by_symbol.setdefault(symbol, {})
        added = 0
        for article in articles:
            key = normalise_url(article.url)
            if key not in known:
                known[key] = article
                added += 1
        if len(known) > self.max_per_symbol:
            newest = sorted(known.items(), key=lambda kv: kv[1].published_at)
            self._by_symbol[symbol] = dict(newest[-self.max_per_symbol :])
        return added

    def articles(
        self, symbol: str, now: float, max_age: float | None = None
    ) -> list[Article]:
        """Known articles no older than `max_age` (default: the store's). Those
        older than the store's own max_age are dropped for good."""
        known = self._by_symbol.get(symbol)
        if not known:
            return []
        expired = [k for k, a in known.items() if a.published_at < now - self.max_age]
        for key in expired:
            del known[key]
        cutoff = now - (self.max_age if max_age is None else max_age)
        return [a for a in known.values() if a.published_at >= cutoff]
