"""Logging pieces for settings.LOGGING: JSON lines, secret masking, and a filter
that keeps a broken feed or database from flooding the log."""

import json
import logging
import threading
import time
from datetime import UTC, datetime

from api.redact import configured_secrets, mask_secrets


class RedactFilter(logging.Filter):
    """Masks secrets in every record, whoever logged it: api_token values by
    pattern, the configured key and passwords by value - in the message and in
    the traceback, which is rendered here once so the handlers print the masked
    text."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = configured_secrets()
        message = record.getMessage()
        masked = mask_secrets(message, secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info, secrets)
        return True


class RepeatFilter(logging.Filter):
    """The one place repeated warnings and errors are held back: the first goes
    through, then at most one per `interval` seconds, saying how many were
    suppressed meanwhile.

    Repeated means the same logger, level and *key*: the `dedupe` field a caller
    passes with `extra=` for a family of messages that differ in detail (every
    malformed frame, every failed write), else the rendered message itself - so
    two different errors that share a template are never hidden."""

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
        dedupe = getattr(record, "dedupe", None)
        key = (record.name, record.levelno, dedupe or record.getMessage())
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


# What every LogRecord has; anything else was passed with extra= and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "_repeat_verdict",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: the time, level, logger,
    thread and message, and every field passed with `extra=` (symbol, reason,
    ...) as a field of its own."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                payload[name] = value
        if record.exc_info or record.exc_text:
            payload["exception"] = record.exc_text or self.formatException(
                record.exc_info
            )
        return json.dumps(payload, ensure_ascii=False, default=str)
