"""Small strict readers for settings taken from the environment.

Each one fails with an ImproperlyConfigured that names the variable and says what
was expected, so a wrong value stops the process at startup with one clear line.
"""

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import dj_database_url

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean (use one of 1/0, true/false, yes/no, on/off)"
    )


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).lower() or default
    if value not in choices:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not one of {', '.join(choices)}"
        )
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = env_str(name, default)
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a valid URL (expected {'/'.join(schemes)}://host/...)"
        )
    if "api_token" in parts.query:
        raise ImproperlyConfigured(
            f"{name} must not contain api_token: the key goes in EODHD_API_KEY"
        )
    return value


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


_ENGINES = {
    "django.db.backends.sqlite3": "sqlite",
    "django.db.backends.postgresql": "postgres",
}


# Client-side bounds for every PostgreSQL connection, unless the URL sets its own:
# a connect that gets no answer fails, and a link that goes silent is noticed by
# the kernel (keepalives while idle, tcp_user_timeout while data waits for its
# acknowledgement) instead of blocking a thread until the OS gives up, hours later.
POSTGRES_CLIENT_DEFAULTS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # milliseconds
}


def env_database(name: str, default: str, conn_max_age: int) -> dict:
    """Parse a database URL; only SQLite (embedded) and PostgreSQL are supported.

    Every option in the URL's query string (sslmode, sslrootcert, sslcert, sslkey,
    sslpassword, options, target_session_attrs, application_name, ...) is handed
    to the driver: each connection the collector opens is built from these."""
    url = env_str(name, default) or default
    scheme = urlsplit(url).scheme
    try:
        config = dj_database_url.parse(
            url, conn_max_age=conn_max_age, conn_health_checks=True
        )
    except Exception:  # the library raises several types for bad URLs
        config = {}
    if config.get("ENGINE") not in _ENGINES or not config.get("NAME"):
        raise ImproperlyConfigured(
            f"{name}={_masked(url)!r} is not a supported database URL "
            f"(scheme {scheme or 'missing'!r}; use sqlite:///path/to/db.sqlite3 "
            "or postgres://user:password@host:5432/dbname)"
        )
    if config["ENGINE"] == "django.db.backends.postgresql":
        options = config.setdefault("OPTIONS", {})
        for key, value in POSTGRES_CLIENT_DEFAULTS.items():
            options.setdefault(key, value)
    return config


_PERIODS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60}
_PERIODS |= {"h": 3600, "hour": 3600, "day": 86400, "d": 86400}


@dataclass(frozen=True)
class Rate:
    count: int
    period: int  # seconds

    def __str__(self) -> str:
        return f"{self.count}/{self.period}s"


def env_rate(name: str) -> Rate | None:
    """`600/min` -> Rate(600, 60); unset or empty -> None (no throttling)."""
    raw = os.environ.get(name, "")
    text = raw.strip().lower()
    if not text:
        return None
    count, _, unit = text.partition("/")
    if not count.strip().isdigit() or int(count) < 1 or unit.strip() not in _PERIODS:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a rate (e.g. 600/min; units: s, min, hour, day)"
        )
    return Rate(int(count), _PERIODS[unit.strip()])


def env_tokens(name: str) -> tuple[str, ...]:
    """Secrets, comma-separated; each long enough not to be guessed."""
    tokens = tuple(env_list(name))
    short = [t for t in tokens if len(t) < 16]
    if short:
        raise ImproperlyConfigured(
            f"{name} holds a token of {len(short[0])} characters; use at least 16 "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return tokens
