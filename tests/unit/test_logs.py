import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from api.logs import JsonFormatter, RedactFilter, RepeatFilter
from api.redact import configured_secrets

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def capture(*filters: logging.Filter) -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler()
    for f in filters:
        handler.addFilter(f)
    logger = logging.getLogger(f"test.logs.{id(lines)}")
    logger.propagate = False
    logger.addHandler(handler)
    return logger, lines


def test_it_bounds_10000_errors_of_one_key_in_a_minute_to_a_few_lines():
    clock = Clock()
    logger, lines = capture(RepeatFilter(interval=60.0, clock=clock))
    for i in range(10_000):
        clock.now = i * 0.005  # 10,000 errors within 50 s
        logger.error("write failed: %s", f"attempt {i}", extra={"dedupe": "db"})
    clock.now = 61.0
    logger.error("write failed: %s", "attempt last", extra={"dedupe": "db"})
    assert lines == [
        "write failed: attempt 0",
        "write failed: attempt last (repeated 9999 times in the last 61 s)",
    ]


def test_it_bounds_identical_messages_without_a_key_too():
    clock = Clock()
    logger, lines = capture(RepeatFilter(interval=60.0, clock=clock))
    for i in range(1000):
        clock.now = i * 0.01
        logger.error("Internal Server Error: %s", "/api/a")
    assert lines == ["Internal Server Error: /api/a"]


def test_it_never_hides_a_different_error_that_shares_a_template():
    logger, lines = capture(RepeatFilter(interval=60.0, clock=Clock()))
    for path in ("/api/a", "/api/b", "/api/a", "/admin/"):
        logger.error("Internal Server Error: %s", path)
    assert lines == [
        "Internal Server Error: /api/a",
        "Internal Server Error: /api/b",
        "Internal Server Error: /admin/",
    ]


def test_it_never_holds_back_info_lines_or_different_errors():
    logger, lines = capture(RepeatFilter(interval=60.0, clock=Clock()))
    logger.setLevel(logging.INFO)
    for _ in range(3):
        logger.info("tick")
    logger.error("first kind")
    logger.error("second kind")
    assert lines == ["tick", "tick", "tick", "first kind", "second kind"]


def test_it_masks_the_api_token_in_any_record():
    logger, lines = capture(RedactFilter())
    logger.error("cannot reach %s", "wss://ws.example/ws/us?api_token=SECRET&x=1")
    assert lines == ["cannot reach wss://ws.example/ws/us?api_token=***&x=1"]


def test_it_knows_the_configured_secrets(settings):
    settings.EODHD_API_KEY = "k3y-VALUE-42"
    assert "k3y-VALUE-42" in configured_secrets()
    settings.EODHD_API_KEY = "abc"  # too short to mask safely: ordinary text
    assert "abc" not in configured_secrets()


def test_it_masks_the_configured_key_and_password_by_value_even_in_tracebacks(
    monkeypatch,
):
    secrets = ["k3y-VALUE-42", "hunter2-db"]
    monkeypatch.setattr("api.logs.configured_secrets", lambda: secrets)
    logger, lines = capture(RedactFilter())
    # A news error body that echoes the request, not as a query string.
    logger.error("news failed: %s", "{'api_token': 'k3y-VALUE-42', 'q': 'AAPL'}")
    try:
        raise RuntimeError("connect to postgres://u:hunter2-db@db/x with k3y-VALUE-42")
    except RuntimeError:
        logger.exception("boom")
    text = "\n".join(lines)
    assert "k3y-VALUE-42" not in text and "hunter2-db" not in text
    assert "news failed: {'api_token': '***', 'q': 'AAPL'}" in text
    assert "RuntimeError: connect to postgres://u:***@db/x with ***" in text


def test_it_formats_json_lines_with_the_fields_passed_along():
    record = logging.LogRecord(
        "api.x", logging.WARNING, __file__, 1, "hi %s", ("you",), None
    )
    record.threadName = "writer"
    record.symbol, record.reason = "AAPL", "invalid json"  # as extra= sets them
    payload = json.loads(JsonFormatter().format(record))
    assert payload["level"] == "WARNING"
    assert payload["logger"] == "api.x"
    assert payload["thread"] == "writer"
    assert payload["message"] == "hi you"
    assert (payload["symbol"], payload["reason"]) == ("AAPL", "invalid json")
    assert "args" not in payload and "msg" not in payload


def test_it_writes_a_rotating_log_file_when_configured(tmp_path):
    log_file = tmp_path / "collector.log"
    env = {
        **os.environ,
        "COLLECTOR_LOG_FILE": str(log_file),
        "COLLECTOR_LOG_FORMAT": "json",
    }
    env.pop("DATABASE_URL", None)
    code = (
        "import logging; log = logging.getLogger('api.test');"
        "log.warning('to the file %s', 'ws://h/ws/us?api_token=abc')"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    lines = log_file.read_text().splitlines()
    assert [json.loads(line)["message"] for line in lines] == [
        "to the file ws://h/ws/us?api_token=***"
    ]


def test_it_never_shows_the_database_url_or_a_secret_on_the_debug_page(
    rf, settings, monkeypatch
):
    from api.debug import SecretsFilter

    monkeypatch.setattr("api.debug.configured_secrets", lambda: ["k3y-VALUE-42"])
    request = rf.get("/")
    request.META["DATABASE_URL"] = "postgres://u:hunter2@db/market"
    request.META["SOME_NOTE"] = "the key is k3y-VALUE-42"
    meta = SecretsFilter().get_safe_request_meta(request)
    assert meta["DATABASE_URL"] == "********************"
    assert meta["SOME_NOTE"] == "the key is ***"
