"""Logging pieces for settings.LOGGING: JSON lines, secret masking, and a filter
that keeps a broken feed or database from flooding the log."""

import json
import logging
import threading
import time
from datetime import UTC, datetime

from api.redact import mask_token


class RedactFilter(logging.Filter):
    """Masks api_token values in every record, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_token(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class RepeatFilter(logging.Filter):
    """Lets the first of identical warnings/errors through, then at most one per
    `interval` seconds, saying how many were suppressed meanwhile. Identical means
    same logger, level and message template (not its arguments)."""

    def __init__(self, interval: float = 60.0, clock=time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple, list] = {}  # key -> [last shown, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        # One verdict per record, though every handler (console, file) asks.
        verdict = getattr(record, "_repeat_verdict", None)
        if verdict is None:
            verdict = record._repeat_verdict = self._judge(record)
        return verdict

    def _judge(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += 1
                return False
            suppressed = entry[1] if entry else 0
            since = now - entry[0] if entry else 0.0
            self._seen[key] = [now, 0]
            if len(self._seen) > 10_000:  # bounded, whatever the messages
                self._seen.clear()
        if suppressed:
            record.msg = (
                f"{record.getMessage()} (repeated {suppressed} times in the last "
                f"{since:.0f} s)"
            )
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)
