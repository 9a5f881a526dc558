"""Keep secrets out of logs: EODHD's key travels in the URL's query string, and
a response or a traceback may echo it (or the database password) in any form.

Masked two ways: every `api_token=` value by pattern, and every configured
secret by value, wherever it appears."""

import re

_TOKEN = re.compile(r"(api_token=)[^&#\s,;'\")]*", re.IGNORECASE)
MIN_SECRET = 4  # shorter values would mask ordinary words


def mask_token(text: str) -> str:
    """Replace every api_token value in a URL (or any text) with ***."""
    return _TOKEN.sub(r"\1***", text)


def configured_secrets() -> list[str]:
    """The values that must never be logged: the EODHD key and the database
    passwords. Read from settings at call time, never at import."""
    from django.conf import settings

    if not settings.configured:
        return []
    values = [getattr(settings, "EODHD_API_KEY", "")]
    for database in getattr(settings, "DATABASES", {}).values():
        values.append(database.get("PASSWORD") or "")
        values.append(database.get("OPTIONS", {}).get("sslpassword") or "")
    # Longest first, so a secret that contains another is masked whole.
    return sorted({v for v in values if len(v) >= MIN_SECRET}, key=len, reverse=True)


def mask_secrets(text: str, secrets: list[str] | None = None) -> str:
    """Both maskings: by pattern, then every configured secret by value."""
    text = mask_token(text)
    for secret in configured_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text
