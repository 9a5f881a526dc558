"""What Django's debug page (DEBUG on) may show: never the database URL, a
password or the EODHD key - not in settings, not in the request's environment,
not inside any other value."""

import re

from django.views.debug import SafeExceptionReporterFilter

from api.redact import configured_secrets, mask_secrets


class SecretsFilter(SafeExceptionReporterFilter):
    # Django's own list, and the names that carry a URL with a password.
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|DSN",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if isinstance(value, str):
            return mask_secrets(value, configured_secrets())
        return value
