"""The deploy kit: Dockerfile, .dockerignore, deploy/compose.yaml, .env.example,
the systemd units under deploy/systemd/ and the Kubernetes manifests under
deploy/k8s/.

The compose file is rendered by Debian's `docker-compose` (1.29) where it is
installed. It reads `../.env` beside the project, so the test renders a copy of
`deploy/` in a temporary directory, next to a `.env` made from `.env.example` with
a unique value for every secret: the real file is never touched, and each secret
can be followed to the services that get it.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
K8S = DEPLOY / "k8s"

SERVICES = {"db", "migrate", "collector", "standby", "web", "prometheus", "grafana"}
APP_SERVICES = {"migrate", "collector", "standby", "web"}
# Variables whose values must reach the containers only through the env file.
SECRETS = (
    "EODHD_API_KEY",
    "DJANGO_SECRET_KEY",
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
# The line a key is set on: NAME=value, or "# NAME=value" for a documented default.
ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


# --- helpers --------------------------------------------------------------------


def env_example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text().splitlines()


def env_example_values() -> dict[str, str]:
    """The keys .env.example sets (not the commented-out ones), with their values."""
    values = {}
    for line in env_example_lines():
        match = ENV_LINE.match(line)
        if match and not line.startswith("#"):
            values[match.group(1)] = match.group(2)
    return values


def env_example_mentions() -> set[str]:
    """Every key .env.example sets or shows commented out."""
    return {m.group(1) for line in env_example_lines() if (m := ENV_LINE.match(line))}


def settings_variables() -> set[str]:
    """The environment variables backend/settings.py reads through backend.env."""
    source = (ROOT / "backend" / "settings.py").read_text()
    return set(re.findall(r"\benv_[a-z]+\(\s*\"([A-Z][A-Z0-9_]*)\"", source))


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuations joined."""
    logical, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        assert stages, f"instruction before the first FROM: {line}"
        stages[-1].append((instruction, arguments.strip()))
    return stages


def arguments_of(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [arguments for name, arguments in stage if name == instruction]


def read_unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}}; keys may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = None
    for number, raw in enumerate((SYSTEMD / name).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert section is not None and equals, f"{name}:{number}: {raw!r}"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), f"{name}:{number}"
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{section}.{key} set {len(values)} times"
    return values[0]


def yaml_to_data(text: str, compose: str) -> dict:
    """Parse `docker-compose config` output. PyYAML is not a project requirement,
    but docker-compose 1.x is a Python program that depends on it: its own
    interpreter reads what it printed."""
    try:
        import yaml
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    shebang = Path(compose).read_bytes().split(b"\n", 1)[0]
    assert shebang.startswith(b"#!"), f"{compose} is not a Python script"
    interpreter = shebang[2:].decode().split()
    result = subprocess.run(
        [
            *interpreter,
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


def data_volume(service: dict) -> str:
    """The source of the volume a service mounts on /data."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source"), volume.get("target")
        else:
            source, target = volume.split(":")[:2]
        if target == "/data":
            sources.append(source)
    assert len(sources) == 1, service.get("volumes")
    return sources[0]


# --- docker-compose config --------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """`docker-compose config` of a copy of deploy/ beside a .env made from
    .env.example, every secret replaced by a unique value."""
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip(
            "docker-compose is not installed (Debian: apt-get install "
            "--no-install-recommends docker-compose)"
        )
    if b"python" not in Path(compose).read_bytes()[:100]:
        pytest.skip(f"{compose} is not Debian's docker-compose 1.x (a Python script)")
    root = tmp_path_factory.mktemp("compose")
    shutil.copytree(DEPLOY, root / "deploy")
    shutil.copy(ROOT / "Dockerfile", root / "Dockerfile")
    sentinels = {name: f"{name.lower()}-{secrets.token_hex(8)}" for name in SECRETS}
    lines = []
    for line in env_example_lines():
        match = ENV_LINE.match(line)
        if match and not line.startswith("#") and match.group(1) in sentinels:
            line = f"{match.group(1)}={sentinels[match.group(1)]}"
        lines.append(line)
    env_file = root / ".env"
    env_file.write_text("\n".join(lines) + "\n")
    command = [compose, "--env-file", str(env_file), "-f"]
    command.append(str(root / "deploy" / "compose.yaml"))
    # Nothing from this shell (CI exports DATABASE_URL, for one) may leak into the
    # interpolation: only the env file speaks.
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(root), "LANG": "C.UTF-8"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean,
        )

    config = run("config")
    assert config.returncode == 0, config.stderr
    return {
        "config": yaml_to_data(config.stdout, compose),
        "services": run("config", "--services").stdout.split(),
        "volumes": run("config", "--volumes").stdout.split(),
        "sentinels": sentinels,
        "env": dotenv_values(env_file),
    }


def test_it_renders_every_service_of_the_stack(rendered):
    assert set(rendered["services"]) == SERVICES
    assert set(rendered["config"]["services"]) == SERVICES
    assert set(rendered["volumes"]) == {
        "db-data",
        "collector-data",
        "standby-data",
        "prometheus-data",
        "grafana-data",
    }


def test_it_gives_the_collector_and_the_standby_their_own_data_volume(rendered):
    services = rendered["config"]["services"]
    collector = data_volume(services["collector"])
    standby = data_volume(services["standby"])
    assert collector == "collector-data"
    assert standby == "standby-data"
    # Same symbols, hence the same writer election: a hot standby, not a twin.
    assert services["collector"]["command"] == services["standby"]["command"]
    command = services["collector"]["command"]
    assert command[0] == "run_websocket_collector_v2"
    assert command[command.index("--symbols") + 1] == "AAPL,MSFT,TSLA"
    assert command[command.index("--metrics-host") + 1] == "0.0.0.0"
    assert command[command.index("--spool-dir") + 1] == "/data/spool"


def test_it_runs_migrations_first_and_the_app_after_them(rendered):
    services = rendered["config"]["services"]
    assert services["migrate"]["command"] == ["migrate", "--noinput"]
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["db"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in services["db"]["healthcheck"]["test"][1]
    for name in ("collector", "standby", "web"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
        assert services[name]["restart"] == "unless-stopped"
    # The collector needs up to 10 s to stop; Docker's default is 10 s.
    assert services["collector"]["stop_grace_period"] == "20s"


def test_it_runs_the_web_service_under_gunicorn_with_its_own_health_check(rendered):
    web = rendered["config"]["services"]["web"]
    assert web["entrypoint"] == ["gunicorn"]
    assert web["command"] == [
        "-c", "python:backend.gunicorn_conf",
        "backend.wsgi:application", "--bind", "0.0.0.0:8000",
    ]  # fmt: skip
    assert web["environment"]["HEALTHCHECK_URL"] == "http://127.0.0.1:8000/api/health/"
    assert [(p["published"], p["target"]) for p in web["ports"]] == [(8000, 8000)]


def test_it_wires_every_secret_from_the_env_file(rendered):
    services = rendered["config"]["services"]
    sentinel = rendered["sentinels"]
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"] == (
            f"postgres://collector:{sentinel['POSTGRES_PASSWORD']}@db:5432/market"
        )
        assert environment["EODHD_API_KEY"] == sentinel["EODHD_API_KEY"]
        assert environment["DJANGO_SECRET_KEY"] == sentinel["DJANGO_SECRET_KEY"]
    db, grafana = services["db"]["environment"], services["grafana"]["environment"]
    assert db["POSTGRES_PASSWORD"] == sentinel["POSTGRES_PASSWORD"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == sentinel["GRAFANA_ADMIN_PASSWORD"]
    # The EODHD key and the Django key stay with the project's own services.
    for name in SERVICES - APP_SERVICES:
        dump = json.dumps(services[name])
        assert sentinel["EODHD_API_KEY"] not in dump, name
        assert sentinel["DJANGO_SECRET_KEY"] not in dump, name


def test_it_keeps_secret_values_out_of_the_compose_file():
    text = COMPOSE_FILE.read_text()
    example = env_example_values()
    for name in SECRETS:
        assert example[name] not in text, name
    # Any password-like key is set from a ${...} reference, never a literal.
    secretish = re.compile(r"^[\s\"-]*\w*(PASSWORD|SECRET|API_KEY|TOKEN)\w*\"?\s*[:=]")
    for line in text.splitlines():
        if secretish.match(line):
            assert "${" in line, line
    for password in re.findall(r"://[^:/@\s\"]+:([^@\s\"]+)@", text):
        assert password.startswith("${POSTGRES_PASSWORD"), password


# --- Dockerfile and .dockerignore -------------------------------------------------


def test_it_builds_the_image_in_two_stages_from_python_3_11_slim():
    stages = dockerfile_stages()
    assert [arguments_of(stage, "FROM") for stage in stages] == [
        ["python:3.11-slim AS build"],
        ["python:3.11-slim AS runtime"],
    ]
    build, runtime = stages
    assert any(
        "pip wheel --wheel-dir /wheels -r requirements.txt" in run
        for run in arguments_of(build, "RUN")
    )
    assert "--from=build /wheels /tmp/wheels" in arguments_of(runtime, "COPY")


def test_it_installs_only_the_runtime_requirements_from_the_wheelhouse():
    text = (ROOT / "Dockerfile").read_text()
    assert "requirements-dev" not in text
    installs = [
        run
        for stage in dockerfile_stages()
        for run in arguments_of(stage, "RUN")
        if "pip install" in run
    ]
    assert len(installs) == 1
    assert "--no-index --find-links /tmp/wheels" in installs[0]
    assert "-r /tmp/requirements.txt" in installs[0]
    # No compilers or system packages in the runtime image.
    assert "apt-get" not in text


def test_it_runs_the_image_as_an_unprivileged_user_with_a_health_check():
    runtime = dockerfile_stages()[-1]
    assert arguments_of(runtime, "USER") == ["collector"]
    assert any("--uid 10001" in run for run in arguments_of(runtime, "RUN"))
    assert arguments_of(runtime, "WORKDIR") == ["/app"]
    assert arguments_of(runtime, "VOLUME") == ["/data"]
    assert arguments_of(runtime, "EXPOSE") == ["8000 9108"]
    env = " ".join(arguments_of(runtime, "ENV"))
    for setting in (
        "PYTHONUNBUFFERED=1",
        "PYTHONDONTWRITEBYTECODE=1",
        "COLLECTOR_DATA_DIR=/data",
    ):
        assert setting in env
    # USER comes after everything that needs root.
    names = [name for name, _ in runtime]
    assert names.index("USER") > max(i for i, n in enumerate(names) if n == "RUN")
    [healthcheck] = arguments_of(runtime, "HEALTHCHECK")
    assert "urllib.request" in healthcheck
    assert "${HEALTHCHECK_URL:-http://127.0.0.1:9108/healthz}" in healthcheck
    assert "curl" not in healthcheck


def test_it_starts_manage_py_with_the_collector_by_default():
    runtime = dockerfile_stages()[-1]
    [entrypoint] = arguments_of(runtime, "ENTRYPOINT")
    [command] = arguments_of(runtime, "CMD")
    assert json.loads(entrypoint) == ["python", "manage.py"]
    assert json.loads(command) == [
        "run_websocket_collector_v2",
        "--metrics-port",
        "9108",
        "--metrics-host",
        "0.0.0.0",
    ]
    runs = " ".join(arguments_of(runtime, "RUN"))
    assert "manage.py collectstatic --noinput" in runs


def test_it_keeps_secrets_tests_and_local_state_out_of_the_image():
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in (".git", ".venv", ".env", "tests", "data", "**/__pycache__"):
        assert pattern in patterns, pattern
    assert "**/*.sqlite3" in patterns
    assert ".pytest_cache" in patterns
    assert "bench/out" in patterns


# --- .env.example -----------------------------------------------------------------


def test_it_documents_every_setting_in_env_example():
    variables = settings_variables()
    # The pattern must really find the settings, or this test proves nothing.
    assert {"EODHD_API_KEY", "DATABASE_URL", "COLLECTOR_LOG_BACKUPS"} <= variables
    assert len(variables) >= 19
    assert variables - env_example_mentions() == set()


def test_it_documents_every_compose_variable_in_env_example():
    referenced = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert {"POSTGRES_PASSWORD", "COLLECTOR_SYMBOLS"} <= referenced
    # HEALTHCHECK_URL is set in the compose file itself; $${...} is the container's.
    referenced -= {"HEALTHCHECK_URL"}
    assert referenced - set(env_example_values()) == set()


def test_it_writes_env_example_in_the_syntax_dotenv_compose_and_systemd_share():
    ours = env_example_values()
    assert dict(dotenv_values(ENV_EXAMPLE)) == ours
    for name, value in ours.items():
        assert value, name
        assert not re.search(r"[\s\"'#]", value), name
    # Placeholders only: nobody can mistake them for real credentials.
    for name in SECRETS:
        assert "replace" in ours[name] or "change-me" in ours[name], name
    # The image and the systemd unit choose the data directory; an active value
    # here would override it.
    assert "COLLECTOR_DATA_DIR" not in ours


# --- systemd ----------------------------------------------------------------------


def test_it_restarts_the_collector_template_with_per_instance_symbols():
    unit = read_unit("collector@.service")
    service = unit["Service"]
    start = one(unit, "Service", "ExecStart")
    assert start.startswith(
        "/opt/eodhd-collector/.venv/bin/python manage.py run_websocket_collector_v2 "
    )
    assert "--symbols ${COLLECTOR_SYMBOLS}" in start
    assert one(unit, "Service", "Restart") == "always"
    assert one(unit, "Service", "RestartSec") == "5"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert one(unit, "Service", "TimeoutStopSec") == "20"
    assert one(unit, "Service", "User") == "collector"
    assert one(unit, "Service", "WorkingDirectory") == "/opt/eodhd-collector"
    assert service["EnvironmentFile"] == [
        "/etc/eodhd-collector/common.env",
        "/etc/eodhd-collector/%i.env",
    ]
    assert "COLLECTOR_DATA_DIR=/var/lib/eodhd-collector/%i" in service["Environment"]
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_it_runs_universe_fleet_members_from_a_template():
    unit = read_unit("collector-fleet@.service")
    service = unit["Service"]
    start = one(unit, "Service", "ExecStart")
    assert start.startswith(
        "/opt/eodhd-collector/.venv/bin/python manage.py run_websocket_collector_v2 "
    )
    words = start.split()
    assert "--universe" in words
    assert "--symbols" not in words and "--symbol" not in words
    # ${NAME} passes the value as one argument; an empty or non-numeric one is an
    # option error (exit 2), which is not restarted.
    assert words[words.index("--capacity") + 1] == "${COLLECTOR_CAPACITY}"
    assert words[words.index("--metrics-port") + 1] == "${COLLECTOR_METRICS_PORT}"
    assert words[words.index("--spool-dir") + 1] == "/var/lib/eodhd-collector/%i/spool"
    # Defaults, which the environment files override.
    assert "COLLECTOR_CAPACITY=500" in service["Environment"]
    assert "COLLECTOR_METRICS_PORT=9108" in service["Environment"]
    assert service["EnvironmentFile"] == [
        "/etc/eodhd-collector/common.env",
        "/etc/eodhd-collector/%i.env",
    ]
    assert "COLLECTOR_DATA_DIR=/var/lib/eodhd-collector/%i" in service["Environment"]
    assert one(unit, "Service", "StateDirectory") == "eodhd-collector/%i"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_it_stops_and_restarts_fleet_members_as_symbol_set_collectors():
    fleet = read_unit("collector-fleet@.service")["Service"]
    template = read_unit("collector@.service")["Service"]
    for key in (
        "Type", "User", "Group", "WorkingDirectory",
        "KillSignal", "KillMode", "TimeoutStopSec",
        "Restart", "RestartSec", "RestartPreventExitStatus",
        "StateDirectory", "NoNewPrivileges", "ProtectSystem", "ProtectHome",
        "PrivateTmp", "ReadWritePaths",
    ):  # fmt: skip
        assert fleet[key] == template[key], key
    assert fleet["RestartPreventExitStatus"] == ["2"]


@pytest.mark.parametrize(
    "name",
    [
        "collector@.service",
        "collector-fleet@.service",
        "collector-web.service",
        "cleanup-old-data.service",
        "backfill-gaps.service",
    ],
)
def test_it_hardens_every_service_unit(name):
    unit = read_unit(name)
    assert one(unit, "Service", "User") == "collector"
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "ProtectHome") == "yes"
    assert one(unit, "Service", "PrivateTmp") == "yes"
    assert one(unit, "Service", "ReadWritePaths").lstrip("-") == (
        "/var/lib/eodhd-collector"
    )
    assert "/etc/eodhd-collector/common.env" in unit["Service"]["EnvironmentFile"]


def test_it_serves_the_web_app_with_gunicorn():
    unit = read_unit("collector-web.service")
    start = one(unit, "Service", "ExecStart")
    assert start.startswith(
        "/opt/eodhd-collector/.venv/bin/gunicorn -c python:backend.gunicorn_conf "
        "backend.wsgi:application "
    )
    assert one(unit, "Service", "Restart") == "always"
    # Missing settings (exit 2) and a missing DJANGO_SECRET_KEY (gunicorn's 3) are
    # not restarted every 5 s.
    assert one(unit, "Service", "RestartPreventExitStatus") == "2 3"


def test_it_cleans_up_old_data_daily_from_a_timer():
    service = read_unit("cleanup-old-data.service")
    assert one(service, "Service", "Type") == "oneshot"
    assert one(service, "Service", "ExecStart") == (
        "/opt/eodhd-collector/.venv/bin/python manage.py cleanup_old_data"
    )
    # The coming partitions first (docs/partitions.md).
    assert one(service, "Service", "ExecStartPre") == (
        "/opt/eodhd-collector/.venv/bin/python manage.py partitions"
    )
    timer = read_unit("cleanup-old-data.timer")
    assert one(timer, "Timer", "OnCalendar") == "*-*-* 07:00:00 UTC"
    assert one(timer, "Timer", "Persistent") == "true"
    assert one(timer, "Timer", "Unit") == "cleanup-old-data.service"
    assert one(timer, "Install", "WantedBy") == "timers.target"


def test_it_backfills_gaps_twice_a_day_from_a_timer():
    service = read_unit("backfill-gaps.service")
    assert one(service, "Service", "Type") == "oneshot"
    assert one(service, "Service", "ExecStart") == (
        "/opt/eodhd-collector/.venv/bin/python manage.py backfill_gaps --days 3"
    )
    timer = read_unit("backfill-gaps.timer")
    calendar = one(timer, "Timer", "OnCalendar")
    assert calendar == "Mon..Sat *-*-* 10,14:00:00 UTC"
    assert one(timer, "Timer", "Persistent") == "true"
    assert one(timer, "Timer", "Unit") == "backfill-gaps.service"
    assert one(timer, "Install", "WantedBy") == "timers.target"
    if shutil.which("systemd-analyze"):
        checked = subprocess.run(
            ["systemd-analyze", "calendar", calendar],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr


# --- Kubernetes -------------------------------------------------------------------

# The Secret every workload reads its credentials from; the manifests only name it.
K8S_SECRET = "eodhd-collector-secrets"
K8S_SECRET_KEYS = {"EODHD_API_KEY", "DATABASE_URL", "DJANGO_SECRET_KEY"}
METRICS_PORT = 9108


@pytest.fixture(scope="module")
def k8s() -> dict:
    """Every document of every manifest under deploy/k8s/, by (kind, name)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the manifests")
    documents = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            key = (document["kind"], document["metadata"]["name"])
            assert key not in documents, key
            documents[key] = document
    return documents


def k8s_one(k8s: dict, kind: str) -> dict:
    [document] = [d for (k, _), d in k8s.items() if k == kind]
    return document


def pod_specs(k8s: dict) -> dict[str, dict]:
    """The pod spec of every workload, by kind."""
    return {
        kind: document["spec"]["template"]["spec"]
        for (kind, _), document in k8s.items()
        if kind in ("StatefulSet", "Deployment", "Job")
    }


def containers_of(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def collector_container(k8s: dict) -> dict:
    spec = k8s_one(k8s, "StatefulSet")["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return container


def port_number(container: dict, port) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def secret_env(container: dict) -> set[str]:
    """The variables a container takes from the Secret; asserts every credential
    comes from there and from nowhere else."""
    taken = set()
    for variable in container.get("env", []):
        if variable["name"] in K8S_SECRET_KEYS:
            assert "value" not in variable, variable["name"]
            ref = variable["valueFrom"]["secretKeyRef"]
            assert ref == {"name": K8S_SECRET, "key": variable["name"]}, ref
            taken.add(variable["name"])
    for source in container.get("envFrom", []):
        assert "secretRef" not in source, "take the credentials one by one"
        assert source["configMapRef"]["name"] == "eodhd-collector-config"
    return taken


def compose_services() -> dict:
    """deploy/compose.yaml as written (anchors and merge keys resolved)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the compose file")
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def test_it_lists_every_manifest_in_the_kustomization(k8s):
    yaml = pytest.importorskip("yaml")
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert "namespace" not in kustomization
    assert sorted(k8s) == [
        ("ConfigMap", "eodhd-collector-config"),
        ("Deployment", "eodhd-web"),
        ("Job", "eodhd-migrate"),
        ("PodDisruptionBudget", "eodhd-collector"),
        ("Service", "eodhd-collector"),
        ("Service", "eodhd-web"),
        ("StatefulSet", "eodhd-collector"),
    ]
    # Applied into whatever namespace the operator picks.
    for key, document in k8s.items():
        assert "namespace" not in document["metadata"], key


def test_it_renders_with_kustomize_where_kubectl_is_installed(k8s):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kinds = re.findall(r"^kind: (\w+)$", result.stdout, re.MULTILINE)
    assert sorted(kinds) == sorted(kind for kind, _ in k8s)


def test_it_runs_a_fleet_of_collectors_on_the_symbol_universe(k8s):
    statefulset = k8s_one(k8s, "StatefulSet")
    spec = statefulset["spec"]
    assert spec["replicas"] == 3
    container = collector_container(k8s)
    args = container["args"]
    assert "command" not in container  # the image's entrypoint: manage.py
    assert args[0] == "run_websocket_collector_v2"
    assert "--universe" in args
    assert "--symbols" not in args and "--symbol" not in args
    assert args[args.index("--capacity") + 1] == "200"
    assert args[args.index("--metrics-port") + 1] == str(METRICS_PORT)
    assert args[args.index("--metrics-host") + 1] == "0.0.0.0"
    assert args[args.index("--spool-dir") + 1] == "/data/spool"
    # Each collector its own spool volume, kept across restarts of its pod.
    [claim] = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/data"] == claim["metadata"]["name"]
    pod_volumes = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
    assert claim["metadata"]["name"] not in pod_volumes  # not an emptyDir
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_it_scrapes_every_collector_through_a_headless_service(k8s):
    spec = k8s_one(k8s, "StatefulSet")["spec"]
    service = k8s[("Service", spec["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"
    # Scraped while not ready: during an outage most of all.
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    [port] = service["spec"]["ports"]
    assert port["port"] == METRICS_PORT
    assert port_number(collector_container(k8s), port["targetPort"]) == METRICS_PORT
    hints = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/path": "/metrics",
    }
    for annotations in (
        service["metadata"]["annotations"],
        spec["template"]["metadata"]["annotations"],
    ):
        assert hints.items() <= annotations.items()


def test_it_probes_the_collectors_healthz_without_killing_it_in_an_outage(k8s):
    container = collector_container(k8s)
    readiness = container["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/healthz"
    assert port_number(container, readiness["httpGet"]["port"]) == METRICS_PORT
    startup = container["startupProbe"]
    assert port_number(container, startup["tcpSocket"]["port"]) == METRICS_PORT
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    # Liveness reads /healthz's body: an HTTP probe would fail on every 503.
    liveness = container["livenessProbe"]
    assert "httpGet" not in liveness
    command = liveness["exec"]["command"]
    assert command[:2] == ["python", "-I"]
    assert f"http://127.0.0.1:{METRICS_PORT}/healthz" in command[-1]
    # A stuck writer is restarted after a minute or so, not on one slow answer.
    assert liveness["failureThreshold"] >= 3
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    assert liveness["timeoutSeconds"] >= 5


def test_its_liveness_probe_fails_only_a_stuck_writer_or_a_silent_collector(k8s):
    """The probe's own script against the real metrics server, with the verdicts
    api.market.health gives in an outage, a reconnect, a hang."""
    from types import SimpleNamespace

    from api.collector.metrics import MetricsServer
    from api.market.health import Observation, Verdict, judge

    script = collector_container(k8s)["livenessProbe"]["exec"]["command"][-1]
    feed = {"market_open": True, "connected": True, "seconds_since_data": 1.0}
    feed |= {"seconds_connected": 600.0, "stale_after": 120.0}
    cases = {
        "ok": Observation(**feed, role="writer"),
        "closed": Observation(**feed | {"market_open": False}),
        "connecting": Observation(**feed | {"connected": False}),
        "stale": Observation(**feed | {"seconds_since_data": 300.0}),
        "database not answering": Observation(**feed, db_busy=9, db_busy_limit=2),
        "leadership unknown": Observation(**feed, role="unknown"),
        "spooling": Observation(**feed, role="writer", spooling=True),
        "writer behind": Observation(
            **feed, role="writer", bars_waiting=10, max_waiting=10
        ),
        "writer stuck": Observation(**feed, writer_silent=45, stuck_after=30),
    }
    verdicts = {state: judge(observation) for state, observation in cases.items()}
    verdicts["starting"] = Verdict(False, "starting", "the collector is starting")
    assert {state: v.state for state, v in verdicts.items()} == {
        state: state for state in verdicts
    }
    current = []
    app = SimpleNamespace(
        receiver=None, aggregator=None, writer=None, verdict=lambda: current[0]
    )
    server = MetricsServer(app, host="127.0.0.1", port=0).start()

    def probe(port: int) -> int:
        url = f"http://127.0.0.1:{METRICS_PORT}/healthz"
        assert script.count(url) == 1
        here = script.replace(url, f"http://127.0.0.1:{port}/healthz")
        return subprocess.run(
            [sys.executable, "-I", "-c", here],
            capture_output=True,
            timeout=30,
            check=False,
        ).returncode

    try:
        for state, verdict in verdicts.items():
            current[:] = [verdict]
            expected = 1 if state == "writer stuck" else 0
            assert probe(server.port) == expected, state
    finally:
        server.stop()
    assert probe(server.port) != 0  # nobody answers


def test_it_gives_the_collectors_time_to_write_or_spool_on_sigterm(k8s):
    for kind, spec in pod_specs(k8s).items():
        if kind == "Job":
            continue
        # Both stop within 10 s (the collector) or 20 s (gunicorn's graceful timeout).
        assert spec["terminationGracePeriodSeconds"] > 20, kind
    collector = k8s_one(k8s, "StatefulSet")["spec"]["template"]["spec"]
    assert collector["terminationGracePeriodSeconds"] > 10


def test_it_sizes_every_container(k8s):
    for kind, spec in pod_specs(k8s).items():
        for container in containers_of(spec):
            resources = container["resources"]
            assert resources["requests"]["cpu"], (kind, container["name"])
            assert resources["requests"]["memory"], (kind, container["name"])
            assert resources["limits"]["memory"], (kind, container["name"])
    resources = collector_container(k8s)["resources"]
    assert resources["requests"]["memory"].endswith("Mi")
    assert int(resources["requests"]["memory"][:-2]) >= 300
    assert resources["limits"]["memory"] == "1Gi"


def test_it_runs_every_pod_unprivileged_on_a_read_only_root(k8s):
    for kind, spec in pod_specs(k8s).items():
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, kind
        assert security["runAsUser"] == 10001, kind
        assert security["runAsGroup"] == 10001, kind
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, kind
        assert spec["automountServiceAccountToken"] is False, kind
        for container in containers_of(spec):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert "runAsUser" not in context, container["name"]
    # The spool volume is writable for uid 10001's group.
    collector = k8s_one(k8s, "StatefulSet")["spec"]["template"]["spec"]
    assert collector["securityContext"]["fsGroup"] == 10001


def test_it_runs_the_image_compose_builds_everywhere(k8s):
    image = compose_services()["collector"]["image"]
    assert image == "eodhd-collector:local"
    for kind, spec in pod_specs(k8s).items():
        for container in containers_of(spec):
            assert container["image"] == image, (kind, container["name"])
            assert container["imagePullPolicy"] == "IfNotPresent"


def test_it_takes_each_credential_from_the_secret_and_only_where_used(k8s):
    assert not [key for key in k8s if key[0] == "Secret"]
    taken = {}
    for kind, spec in pod_specs(k8s).items():
        for container in containers_of(spec):
            taken[(kind, container["name"])] = secret_env(container)
    assert taken == {
        ("StatefulSet", "wait-for-migrations"): {"DATABASE_URL"},
        ("StatefulSet", "collector"): {"EODHD_API_KEY", "DATABASE_URL"},
        ("Deployment", "wait-for-migrations"): {"DATABASE_URL"},
        ("Deployment", "web"): {"DATABASE_URL", "DJANGO_SECRET_KEY"},
        ("Job", "migrate"): {"DATABASE_URL"},
    }


def test_it_keeps_secret_values_out_of_the_manifests(k8s):
    config = k8s[("ConfigMap", "eodhd-collector-config")]["data"]
    secretish = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN|DATABASE_URL")
    assert not [name for name in config if secretish.search(name)]
    # Every setting it holds is one the project documents.
    assert set(config) - env_example_mentions() == set()
    example = env_example_values()
    for path in K8S.iterdir():
        text = path.read_text()
        for name in K8S_SECRET_KEYS:
            assert example[name] not in text, (path.name, name)
        # A database URL with a password in it, even an example one (the README
        # shows the Secret's file with "..." for it).
        if path.suffix == ".yaml":
            assert not re.search(r"://[^:/@\s\"]+:[^@\s\"]+@", text), path.name


def test_it_lets_one_collector_at_a_time_be_disrupted(k8s):
    pdb = k8s_one(k8s, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert "minAvailable" not in pdb
    # Not-ready collectors (a database outage) must not block a drain.
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    statefulset = k8s_one(k8s, "StatefulSet")["spec"]
    assert pdb["selector"] == statefulset["selector"]


def test_it_migrates_in_a_job_that_the_app_waits_for(k8s):
    job = k8s[("Job", "eodhd-migrate")]["spec"]
    [container] = job["template"]["spec"]["containers"]
    assert container["args"] == ["migrate", "--noinput"]
    assert "command" not in container
    assert job["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    for kind in ("StatefulSet", "Deployment"):
        spec = k8s_one(k8s, kind)["spec"]["template"]["spec"]
        [init] = spec["initContainers"]
        assert init["args"] == ["migrate", "--check"], kind


def test_it_serves_the_web_app_with_gunicorn_behind_a_service(k8s):
    compose = compose_services()["web"]
    deployment = k8s[("Deployment", "eodhd-web")]["spec"]
    [container] = deployment["template"]["spec"]["containers"]
    assert container["command"] == compose["entrypoint"] == ["gunicorn"]
    assert container["args"][: len(compose["command"])] == compose["command"]
    assert container["args"][len(compose["command"]) :] == ["--no-control-socket"]
    assert port_number(container, "http") == 8000
    # Readiness reads the database; liveness does not, so an outage restarts nothing.
    allowed = k8s[("ConfigMap", "eodhd-collector-config")]["data"]["ALLOWED_HOSTS"]
    paths = {}
    for name in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = container[name]["httpGet"]
        assert port_number(container, get["port"]) == 8000, name
        # Django refuses the pod IP a probe sends as its Host by default.
        [host] = [h["value"] for h in get["httpHeaders"] if h["name"] == "Host"]
        assert host in allowed.split(","), name
        paths[name] = get["path"]
    assert paths == {
        "readinessProbe": "/api/health/",
        "livenessProbe": "/api/schema/",
        "startupProbe": "/api/schema/",
    }
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # gunicorn's heartbeat files, on a read-only root
    service = k8s[("Service", "eodhd-web")]["spec"]
    assert service["selector"] == deployment["selector"]["matchLabels"]
    [port] = service["ports"]
    assert port_number(container, port["targetPort"]) == 8000
