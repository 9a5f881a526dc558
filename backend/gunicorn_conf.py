"""gunicorn's settings for the web app: `gunicorn -c python:backend.gunicorn_conf
backend.wsgi:application --bind ...` (deploy/compose.yaml, the systemd unit).

Threaded workers: an open event stream (/api/stream/) holds a server thread for
as long as the client listens, so each worker gets threads for every stream it
may accept (SSE_MAX_CLIENTS) and some more for ordinary requests; streams past
that limit are answered 503 at once, so they can never starve the API. With
gunicorn's default synchronous worker two listeners would take the whole server.
"""

import os

from backend.env import env_int

workers = env_int("WEB_CONCURRENCY", 2, 1)
worker_class = "gthread"
threads = env_int("GUNICORN_THREADS", env_int("SSE_MAX_CLIENTS", 200, 1) + 32, 1)
# A stream sends a heartbeat every 15 s; a thread writing to a gone client is
# freed then. Idle keep-alive connections are closed after a few seconds.
keepalive = 5
graceful_timeout = 20
accesslog = "-"
# Behind a proxy that sets X-Forwarded-For: trust it from these addresses only.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
