"""Startup checks on settings that Django itself cannot judge."""

from django.conf import settings
from django.core.checks import Error, Tags, register


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
