"""Keep secrets out of logs: EODHD's key travels in the URL's query string."""

import re

_TOKEN = re.compile(r"(api_token=)[^&#\s,;'\")]*", re.IGNORECASE)


def mask_token(text: str) -> str:
    """Replace every api_token value in a URL (or any text) with ***."""
    return _TOKEN.sub(r"\1***", text)
