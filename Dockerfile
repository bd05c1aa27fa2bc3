# The seawall demo service, as docker-compose.monitoring.yml runs it.
# python:slim has no curl or wget: the healthcheck is a few lines of Python.
FROM python:3.12.8-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package build needs (see .dockerignore), so edits to tests or docs keep the cache.
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install ".[all]" \
    && useradd --system --uid 10001 --no-create-home seawall

USER seawall
EXPOSE 8000

# Liveness, not readiness: /health/ready turns 503 while a breaker is open, which is the demo's
# point, and must not get the container restarted.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"]

CMD ["python", "-m", "seawall", "demo", "--host", "0.0.0.0", "--port", "8000"]
