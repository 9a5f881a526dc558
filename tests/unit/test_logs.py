import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from api.logs import JsonFormatter, RedactFilter, RepeatFilter

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


def test_it_bounds_10000_identical_errors_in_a_minute_to_a_few_lines():
    clock = Clock()
    logger, lines = capture(RepeatFilter(interval=60.0, clock=clock))
    for i in range(10_000):
        clock.now = i * 0.005  # 10,000 errors within 50 s
        logger.error("database write failed: %s", f"attempt {i}")
    clock.now = 61.0
    logger.error("database write failed: %s", "attempt last")
    assert lines == [
        "database write failed: attempt 0",
        "database write failed: attempt last (repeated 9999 times in the last 61 s)",
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


def test_it_formats_json_lines():
    record = logging.LogRecord(
        "api.x", logging.WARNING, __file__, 1, "hi %s", ("you",), None
    )
    record.threadName = "writer"
    payload = json.loads(JsonFormatter().format(record))
    assert payload["level"] == "WARNING"
    assert payload["logger"] == "api.x"
    assert payload["thread"] == "writer"
    assert payload["message"] == "hi you"


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
