"""WSGI entry point (gunicorn backend.wsgi:application).

The web app refuses to start in production without DJANGO_SECRET_KEY: each
worker would otherwise sign sessions with a key of its own, and admin logins would
break at random."""

import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

application = get_wsgi_application()

if not settings.DEBUG and not settings.SECRET_KEY_CONFIGURED:
    sys.stderr.write(
        "Configuration error: DJANGO_SECRET_KEY is not set; the web app needs one "
        "key shared by all its workers (set it, or DJANGO_DEBUG=true for local use)\n"
    )
    raise SystemExit(3)
