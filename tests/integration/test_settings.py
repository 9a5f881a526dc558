"""A wrong setting fails at startup with one readable line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_check(**env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATABASE_URL", "mysql2://nobody@nowhere/db", "not a supported database URL"),
        ("DATABASE_URL", "not a url", "not a supported database URL"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG='maybe' is not a boolean"),
        ("EODHD_WS_URL", "http://example.invalid/ws/us", "EODHD_WS_URL"),
        ("CONN_MAX_AGE", "soon", "CONN_MAX_AGE='soon' is not an integer"),
    ],
)
def test_it_fails_with_one_clear_line_on_a_bad_setting(name, value, expected):
    result = run_check(**{name: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_it_masks_the_password_of_a_bad_database_url():
    result = run_check(DATABASE_URL="mysql2://user:hunter2@db/x")
    assert result.returncode != 0
    assert "hunter2" not in result.stderr
    assert "***" in result.stderr


def test_it_reports_a_bad_collector_setting_as_a_system_check():
    result = run_check(COLLECTOR_LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "api.E001" in result.stderr
    assert "COLLECTOR_LOG_FORMAT='xml'" in result.stderr


def test_it_starts_with_good_settings():
    result = run_check(DATABASE_URL="sqlite:///:memory:")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
