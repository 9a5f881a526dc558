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
        (
            "COLLECTOR_CONDITIONS",
            "some",
            "COLLECTOR_CONDITIONS='some' is not one of eodhd, all",
        ),
        ("API_THROTTLE", "lots", "API_THROTTLE='lots' is not a rate"),
        ("API_THROTTLE", "0/min", "API_THROTTLE='0/min' is not a rate"),
        ("API_TOKENS", "hunter2", "API_TOKENS holds a token of 7 characters"),
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


def run(*args: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environ.update({"DATABASE_URL": "sqlite:///:memory:", **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_names_what_production_needs_in_check_deploy():
    result = run("check", "--deploy", COLLECTOR_METRICS_HOST="0.0.0.0")
    assert result.returncode != 0  # the missing key is an error
    text = result.stderr + result.stdout
    assert "api.E101" in text and "DJANGO_SECRET_KEY is not set" in text
    assert "api.W102" in text
    ready = run(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="kq3-Vd8!zP0_wR7#yT2%mL5^nB9&cX4*jH6(gF1)sA3e-Qw8=Zu4+Ny7~Rb2",
        DJANGO_HTTPS="true",
        DJANGO_HSTS_INCLUDE_SUBDOMAINS="true",
        DJANGO_HSTS_PRELOAD="true",
        COLLECTOR_DATA_DIR="/var/lib/eodhd-collector",
    )
    # HTTPS, HSTS, secure cookies: Django's own deploy warnings are gone too.
    assert ready.returncode == 0, ready.stderr
    assert "no issues" in ready.stdout


def test_it_warns_when_the_spool_would_not_survive_a_reboot():
    text = run("check", "--deploy", COLLECTOR_DATA_DIR="/tmp/spool").stderr
    assert "api.W103" in text


def test_it_refuses_to_serve_the_web_app_without_a_secret_key_in_one_line():
    code = "import backend.wsgi"
    refused = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": "sqlite:///:memory:", "DJANGO_DEBUG": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 3
    assert refused.stderr.strip().splitlines() == [
        "Configuration error: DJANGO_SECRET_KEY is not set; the web app needs one "
        "key shared by all its workers (set it, or DJANGO_DEBUG=true for local use)"
    ]
    served = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": "sqlite:///:memory:",
            "DJANGO_SECRET_KEY": "k" * 50,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 0, served.stderr


def test_it_shows_the_effective_defaults_in_help():
    result = run("run_websocket_collector_v2", "--help", COLLECTOR_GRACE_SECONDS="5")
    help_text = " ".join(result.stdout.split())
    assert "(default 5.0, from COLLECTOR_GRACE_SECONDS)" in help_text
    cleanup = run("cleanup_old_data", "--help", RETENTION_SECOND_BARS="3d")
    assert "(default 3d, from RETENTION_SECOND_BARS)" in " ".join(
        cleanup.stdout.split()
    )
