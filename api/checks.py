"""Startup checks on settings that Django itself cannot judge."""

from pathlib import Path

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.compatibility, deploy=False)
def check_collector_settings(app_configs, **kwargs) -> list[Error]:
    errors = []
    if settings.COLLECTOR_LOG_FORMAT not in ("text", "json"):
        errors.append(
            Error(
                f"COLLECTOR_LOG_FORMAT={settings.COLLECTOR_LOG_FORMAT!r} is not "
                "'text' or 'json'",
                id="api.E001",
            )
        )
    if settings.COLLECTOR_REVISION_WINDOW_SECONDS < settings.COLLECTOR_GRACE_SECONDS:
        errors.append(
            Error(
                "COLLECTOR_REVISION_WINDOW_SECONDS must not be shorter than "
                "COLLECTOR_GRACE_SECONDS",
                id="api.E002",
            )
        )
    return errors


LOOPBACK = {"127.0.0.1", "::1", "localhost"}
VOLATILE = ("/tmp", "/var/tmp", "/dev/shm", "/run")


@register(Tags.security, deploy=True)
def check_deployment(app_configs, **kwargs) -> list[CheckMessage]:
    """`manage.py check --deploy`: what this project needs in production."""
    found: list[CheckMessage] = []
    if not settings.SECRET_KEY_CONFIGURED:
        found.append(
            Error(
                "DJANGO_SECRET_KEY is not set: every process invents its own key, "
                "so admin sessions break across web workers (the web app refuses "
                "to start)",
                id="api.E101",
            )
        )
    if settings.COLLECTOR_METRICS_HOST not in LOOPBACK:
        found.append(
            Warning(
                f"COLLECTOR_METRICS_HOST={settings.COLLECTOR_METRICS_HOST!r}: /metrics "
                "and /healthz are reachable beyond this machine; fine behind a "
                "firewall or in a pod, otherwise bind to 127.0.0.1",
                id="api.W102",
            )
        )
    data = Path(settings.DATA_DIR).resolve()
    if any(data == Path(v) or Path(v) in data.parents for v in VOLATILE):
        found.append(
            Warning(
                f"COLLECTOR_DATA_DIR={data} is on temporary storage: the spool and "
                "the partial bars are lost at a reboot",
                id="api.W103",
            )
        )
    return found


@register(Tags.database)
def check_default_partitions(app_configs, databases=None, **kwargs):
    """`manage.py check --database default`: rows that sit in a default
    partition (their dated partition was missing when they were written)."""
    if not databases or "default" not in databases:
        return []
    from django.db import DatabaseError

    from api import partitions

    try:
        rows = partitions.default_rows()
    except DatabaseError:
        return []  # not migrated yet, or unreachable: other checks say so
    return [
        Warning(
            f"{table}: {count} rows are in its default partition (stored, but they "
            "slow reads and block creating their partition's range without a move)",
            hint="run `manage.py partitions` (it moves them into dated partitions)",
            id="api.W104",
        )
        for table, count in rows.items()
        if count
    ]
