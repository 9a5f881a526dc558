# One image for every process of the project: the collector (the default command),
# migrations (`migrate --noinput`), retention (`cleanup_old_data`) and the web
# server (entrypoint overridden with gunicorn, see deploy/compose.yaml).
#
#   docker build -t eodhd-collector .
#   docker run --rm --env-file .env -v collector-data:/data eodhd-collector

# --- build: wheels of the runtime requirements, and nothing else ---------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements.txt .
RUN pip wheel --wheel-dir /wheels -r requirements.txt

# --- runtime: the wheels, the project, a user without privileges ----------------
FROM python:3.11-slim AS runtime

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 COLLECTOR_DATA_DIR=/data \
    DJANGO_SERVE_STATIC=true
ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 collector \
    && useradd --system --uid 10001 --gid collector --no-create-home \
        --home-dir /data --shell /usr/sbin/nologin collector

# Only the wheels built above: no index, no compilers, no development tools.
COPY --from=build /wheels /tmp/wheels
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels \
        -r /tmp/requirements.txt \
    && rm -rf /tmp/wheels /tmp/requirements.txt

WORKDIR /app
# The code stays owned by root: the collector user can read it, not change it.
COPY . .

# collectstatic imports the settings: a throwaway key for this step only (it is
# not kept in the image's environment) and the default SQLite URL, which it never
# opens. The byte code is compiled here because the image is read-only to the
# user and PYTHONDONTWRITEBYTECODE is set.
ARG COLLECTSTATIC_SECRET_KEY=collectstatic-only-not-a-secret
RUN DJANGO_SECRET_KEY="${COLLECTSTATIC_SECRET_KEY}" \
        python manage.py collectstatic --noinput \
    && python -m compileall -q api backend manage.py \
    && mkdir -p /data \
    && chown collector:collector /data

# Spools, partial 100-trade bars, the quarantine file and the collector's identity:
# give every collector its own volume here.
VOLUME /data

# 8000: gunicorn (web); 9108: the collector's /metrics and /healthz.
EXPOSE 8000 9108

USER collector

# The collector answers /healthz on 9108; the web service sets
# HEALTHCHECK_URL=http://127.0.0.1:8000/api/health/ (slim images have no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)" "${HEALTHCHECK_URL:-http://127.0.0.1:9108/healthz}" || exit 1

ENTRYPOINT ["python", "manage.py"]
CMD ["run_websocket_collector_v2", "--metrics-port", "9108", "--metrics-host", "0.0.0.0"]
