"""The monitoring set-up in deploy/prometheus, checked with the real tools: the
configuration and alert rules pass promtool (with their unit tests), and a real
Prometheus scrapes a real collector running against the simulated feed.

Needs Debian's `prometheus` package (it provides /usr/bin/prometheus and
/usr/bin/promtool); the tests are skipped without it."""

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from api.simulator import FeedServer, SimOptions
from tests.integration.process import ROOT, free_port, start_collector

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found (apt-get install prometheus provides it)",
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not found (apt-get install prometheus provides it)",
)

# Loopback only: a proxy set in the environment must not see these requests.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def alert_names() -> set[str]:
    return set(re.findall(r"^\s*- alert:\s*(\w+)\s*$", ALERTS.read_text(), re.M))


@needs_promtool
def test_it_passes_promtool_check_config():
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@needs_promtool
def test_it_passes_promtool_check_rules_with_every_alert_labelled():
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout
    # Every alert pages or opens a ticket, and says what and why.
    text = ALERTS.read_text()
    alerts = len(alert_names())
    assert len(re.findall(r"^ +severity: (?:page|ticket)$", text, re.M)) == alerts
    assert len(re.findall(r"^ +summary: \S", text, re.M)) == alerts
    assert len(re.findall(r"^ +description: \S", text, re.M)) == alerts


@needs_promtool
def test_it_passes_the_alert_unit_tests_and_they_cover_every_alert():
    result = promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tested = set(re.findall(r"alertname:\s*(\w+)", ALERTS_TEST.read_text()))
    assert tested == alert_names()


# A real scrape -------------------------------------------------------------------


def get_json(url: str, timeout: float = 5) -> dict:
    with HTTP.open(url, timeout=timeout) as response:
        return json.loads(response.read())


def is_ready(base: str) -> bool:
    try:
        with HTTP.open(f"{base}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:  # refused while it starts, 503 while it loads
        return False


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = get_json(url)
    assert body["status"] == "success", body
    return body["data"]["result"]


def poll(what, ok, deadline: float):
    """`what()` as soon as `ok` accepts it, or the last answer at the deadline."""
    while True:
        answer = what()
        if ok(answer) or time.monotonic() >= deadline:
            return answer
        time.sleep(0.25)


def start_prometheus(tmp_path: Path, target: str) -> tuple[subprocess.Popen, str]:
    """Prometheus scraping `target` every second, with the repository's alert
    rules (copied next to its configuration, as in deploy/)."""
    config_dir = tmp_path / "prometheus"
    config_dir.mkdir()
    shutil.copy(ALERTS, config_dir / "alerts.yml")
    config = config_dir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "rule_files:\n"
        "  - alerts.yml\n"
        "scrape_configs:\n"
        "  - job_name: collector\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = free_port()
    with open(tmp_path / "prometheus.log", "w") as log:  # the child keeps it open
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


def stop_prometheus(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def show(name: str, series: list[dict]) -> None:
    for item in series:
        labels = {k: v for k, v in item["metric"].items() if k != "__name__"}
        print(f"{name} {labels} = {item['value'][1]}")


def value(series: list[dict]) -> float:
    return float(series[0]["value"][1])


@needs_prometheus
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_is_scraped_by_a_real_prometheus_with_the_alert_rules_loaded(tmp_path):
    metrics_port = free_port()
    target = f"127.0.0.1:{metrics_port}"
    options = SimOptions(rate=100, seed=83, jitter_ms=0)
    found: dict[str, list[dict]] = {}
    with FeedServer(options=options) as server:
        # Prometheus first: it starts while the collector does.
        prometheus, base = start_prometheus(tmp_path, target)
        try:
            proc = start_collector(
                server,
                "--symbols",
                "AAPL,MSFT",
                "--grace",
                "0.5",
                "--spool-dir",
                str(tmp_path / "spool"),
                "--metrics-port",
                str(metrics_port),
            )
            try:
                deadline = time.monotonic() + 30
                assert poll(lambda: is_ready(base), bool, deadline), (
                    tmp_path / "prometheus.log"
                ).read_text()
                expected = {
                    'up{job="collector"}': lambda s: value(s) == 1,
                    "collector_trades_accepted_total": lambda s: value(s) > 0,
                    "collector_build_info": lambda s: s[0]["metric"].get("version"),
                    "process_resident_memory_bytes": lambda s: value(s) > 0,
                    'collector_writer_role{role="writer"}': lambda s: value(s) == 1,
                    'collector_symbol_last_trade_timestamp_seconds{symbol="AAPL"}': (
                        lambda s: value(s) > 0
                    ),
                }
                for expr, ok in expected.items():
                    found[expr] = poll(
                        lambda expr=expr: query(base, expr),
                        lambda s, ok=ok: len(s) == 1 and ok(s),
                        deadline,
                    )
                rules = poll(
                    lambda: get_json(f"{base}/api/v1/rules")["data"]["groups"],
                    lambda groups: all(
                        rule["health"] == "ok"
                        for group in groups
                        for rule in group["rules"]
                    ),
                    deadline,
                )
                firing = query(base, 'ALERTS{alertstate="firing"}')
            finally:
                proc.send_signal(signal.SIGTERM)
                output, _ = proc.communicate(timeout=30)
        finally:
            stop_prometheus(prometheus)

    assert proc.returncode == 0, output
    for expr, series in found.items():
        show(expr, series)
    for expr, ok in expected.items():
        assert len(found[expr]) == 1 and ok(found[expr]), (expr, found[expr])

    up = found['up{job="collector"}'][0]["metric"]
    assert up["instance"] == target
    info = found["collector_build_info"][0]["metric"]
    assert set(info) >= {"version", "python", "django", "websocket_client"}
    assert info["version"] not in {"", "unknown"}
    writer = found['collector_writer_role{role="writer"}'][0]["metric"]
    assert writer["lock"] == "AAPL-MSFT"
    last_trade = value(
        found['collector_symbol_last_trade_timestamp_seconds{symbol="AAPL"}']
    )
    assert abs(time.time() - last_trade) < 60
    assert value(found["process_resident_memory_bytes"]) > 10 * 2**20

    # Every alert of alerts.yml is loaded and evaluates without error against
    # the real series; a healthy collector fires none of them.
    loaded = {
        rule["name"]: rule["health"]
        for group in rules
        for rule in group["rules"]
        if rule["type"] == "alerting"
    }
    print("alert rules:", loaded)
    assert set(loaded) == alert_names()
    assert set(loaded.values()) == {"ok"}, loaded
    assert firing == [], firing
