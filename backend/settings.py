"""Settings, all taken from the environment (a `.env` file beside manage.py is read
when present; real environment variables win over it)."""

import secrets
import warnings
from pathlib import Path

from dotenv import load_dotenv

from backend.env import (
    env_bool,
    env_choice,
    env_database,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_str,
    env_tokens,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env", override=False)

DEBUG = env_bool("DJANGO_DEBUG", False)
# Without a configured key a random one is made per process: fine for the collector
# and for a demo, and it never leaves a guessable default. The web app refuses to
# start without one (backend/wsgi.py): each worker would sign its own sessions.
SECRET_KEY_CONFIGURED = bool(env_str("DJANGO_SECRET_KEY"))
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or "insecure-" + secrets.token_hex(32)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# HTTPS: one switch for serving the web app over TLS (redirect, HSTS, secure
# cookies); behind a proxy that terminates TLS, trust its X-Forwarded-Proto.
DJANGO_HTTPS = env_bool("DJANGO_HTTPS", False)
SECURE_SSL_REDIRECT = DJANGO_HTTPS
# The container's own health check asks over plain HTTP from inside.
SECURE_REDIRECT_EXEMPT = [r"^api/health/$"]
SESSION_COOKIE_SECURE = DJANGO_HTTPS
CSRF_COOKIE_SECURE = DJANGO_HTTPS
SECURE_HSTS_SECONDS = (
    env_int("DJANGO_HSTS_SECONDS", 31_536_000, 0) if DJANGO_HTTPS else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The debug page (DEBUG on) never shows the database URL, passwords or the key.
DEFAULT_EXCEPTION_REPORTER_FILTER = "api.debug.SecretsFilter"

INSTALLED_APPS = [
    "api",  # first, so its admin/index.html (the chart link) extends the admin's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "api.access.ApiAccessMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backend.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "backend.wsgi.application"

# Database: SQLite is the embedded default; PostgreSQL for production.
DATA_DIR = Path(env_str("COLLECTOR_DATA_DIR") or BASE_DIR / "data")
_default_db = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": env_database(
        "DATABASE_URL", _default_db, conn_max_age=env_int("CONN_MAX_AGE", 60, 0)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _name = Path(DATABASES["default"]["NAME"])
    if str(_name) != ":memory:" and not _name.is_absolute():
        DATABASES["default"]["NAME"] = str(BASE_DIR / _name)
    # WAL lets the web process read while the collector writes; the busy timeout and
    # IMMEDIATE transactions make concurrent writers wait instead of failing with
    # "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The app serves its own static files (admin, chart, API docs) with whitenoise,
# in every mode: with DJANGO_SERVE_STATIC the hashed, compressed copies made by
# `collectstatic` (which must have run: the image does it and sets this);
# otherwise straight from the apps' static folders, so `runserver` with DEBUG off
# (or gunicorn from a checkout) shows a styled admin and a working chart.
DJANGO_SERVE_STATIC = env_bool("DJANGO_SERVE_STATIC", False)
WHITENOISE_USE_FINDERS = not DJANGO_SERVE_STATIC
WHITENOISE_AUTOREFRESH = DEBUG
# Without collectstatic there is no STATIC_ROOT yet, and whitenoise says so on
# every start: expected here, the finders serve the files.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if DJANGO_SERVE_STATIC
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

# EODHD: the key travels in the WebSocket URL's query string, so it is never logged.
EODHD_API_KEY = env_str("EODHD_API_KEY")
EODHD_WS_URL = env_url(
    "EODHD_WS_URL", "wss://ws.eodhistoricaldata.com/ws/us", ("ws", "wss")
)
EODHD_API_BASE = env_url("EODHD_API_BASE", "https://eodhd.com/api", ("http", "https"))
# The account's daily API calls, shared by every process on the key through the
# database (api/budget.py), and what one tick-history request costs.
EODHD_DAILY_CALLS = env_int("EODHD_DAILY_CALLS", 100_000, 1)
EODHD_TICKS_CALL_COST = env_int("EODHD_TICKS_CALL_COST", 10, 1)
# Rows one tick-history response holds at most (a shorter page ends a range).
EODHD_TICKS_PAGE_ROWS = env_int("EODHD_TICKS_PAGE_ROWS", 10_000, 1)
# Symbols per WebSocket connection (EODHD: 50; accounts can have it raised): a
# collector opens as many connections as its symbols need.
EODHD_SYMBOLS_PER_CONNECTION = env_int("EODHD_SYMBOLS_PER_CONNECTION", 50, 1)

# Collector tuning (command-line options override these).
COLLECTOR_GRACE_SECONDS = env_float("COLLECTOR_GRACE_SECONDS", 2.0, 0.0)
# --universe: the most symbols one collector claims (--capacity overrides).
COLLECTOR_CAPACITY = env_int("COLLECTOR_CAPACITY", 500, 1)
COLLECTOR_REVISION_WINDOW_SECONDS = env_float(
    "COLLECTOR_REVISION_WINDOW_SECONDS", 300.0, 0.0
)
# Default for --conditions: which prints move a bar (docs/conditions.md).
COLLECTOR_CONDITIONS = env_choice("COLLECTOR_CONDITIONS", "eodhd", ("eodhd", "all"))
COLLECTOR_STALE_AFTER_SECONDS = env_float("COLLECTOR_STALE_AFTER_SECONDS", 120.0, 1.0)
COLLECTOR_MAX_PENDING_BARS = env_int("COLLECTOR_MAX_PENDING_BARS", 500_000, 1000)
# Bound on one database call of the collector (a stuck one is abandoned), and how
# long it waits for the database at startup before giving up with one line.
COLLECTOR_DB_TIMEOUT_SECONDS = env_float("COLLECTOR_DB_TIMEOUT_SECONDS", 8.0, 1.0)
COLLECTOR_STARTUP_DB_WAIT_SECONDS = env_float(
    "COLLECTOR_STARTUP_DB_WAIT_SECONDS", 60.0, 0.0
)
COLLECTOR_LOG_FILE = env_str("COLLECTOR_LOG_FILE")
COLLECTOR_LOG_FORMAT = env_str("COLLECTOR_LOG_FORMAT", "text").lower()

COLLECTOR_METRICS_HOST = env_str("COLLECTOR_METRICS_HOST", "127.0.0.1")
# The chart page without a staff login (make demo sets it; off by default).
CHART_PUBLIC = env_bool("CHART_PUBLIC", False)
# Optional bearer tokens and throttling for /api/ (api/access.py); off by default.
API_TOKENS = env_tokens("API_TOKENS")
API_THROTTLE = env_rate("API_THROTTLE")
# Pushed updates (/api/stream/): open streams per web process, at most.
SSE_MAX_CLIENTS = env_int("SSE_MAX_CLIENTS", 200, 1)
# cleanup_old_data's retention per model (its options override these).
RETENTION_TICKS = env_str("RETENTION_TICKS", "1h")
RETENTION_SECOND_BARS = env_str("RETENTION_SECOND_BARS", "7d")
RETENTION_MINUTE_BARS = env_str("RETENTION_MINUTE_BARS", "3650d")
RETENTION_TICK_CANDLES = env_str("RETENTION_TICK_CANDLES", "30d")
RETENTION_QUOTE_BARS = env_str("RETENTION_QUOTE_BARS", "7d")

COLLECTOR_LOG_MAX_MB = env_int("COLLECTOR_LOG_MAX_MB", 50, 1)
COLLECTOR_LOG_BACKUPS = env_int("COLLECTOR_LOG_BACKUPS", 5, 0)

_LOG_HANDLERS = {
    "console": {
        "class": "logging.StreamHandler",
        "formatter": COLLECTOR_LOG_FORMAT if COLLECTOR_LOG_FORMAT == "json" else "text",
        "filters": ["redact", "repeats"],
    },
}
if COLLECTOR_LOG_FILE:
    _LOG_HANDLERS["file"] = {
        "class": "logging.handlers.RotatingFileHandler",
        "filename": COLLECTOR_LOG_FILE,
        "maxBytes": COLLECTOR_LOG_MAX_MB * 1024 * 1024,
        "backupCount": COLLECTOR_LOG_BACKUPS,
        "encoding": "utf-8",
        "formatter": _LOG_HANDLERS["console"]["formatter"],
        "filters": ["redact", "repeats"],
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "api.logs.RedactFilter"},
        "repeats": {"()": "api.logs.RepeatFilter", "interval": 60.0},
    },
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)-7s [%(threadName)s] %(message)s",
        },
        "json": {"()": "api.logs.JsonFormatter"},
    },
    "handlers": _LOG_HANDLERS,
    "root": {"handlers": list(_LOG_HANDLERS), "level": "INFO"},
    "loggers": {
        "django": {"level": "WARNING"},
        "websocket": {"level": "WARNING"},
        "websockets": {"level": "WARNING"},
    },
}
