# seawall: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.stamp-setup
PORT ?= 8000
COMPOSE := docker compose -f docker-compose.monitoring.yml
COMPOSE_HA := $(COMPOSE) -f docker-compose.ha.yml
.DEFAULT_GOAL := help

.PHONY: help setup system-deps test test-fast lint bench demo stack stack-ha secrets up up-ha down \
	dashboards clean compose-v2

## help: this list (every target with a `## target:` line in the Makefile)
help:
	@echo "seawall: make <target>"
	@sed -n 's/^## \([a-z-]*\): \(.*\)/\1|\2/p' $(MAKEFILE_LIST) | awk -F'|' '{ printf "  %-11s %s\n", $$1, $$2 }'

# Progress lines: the first install takes ~15 s and pip -q prints nothing meanwhile.
$(SETUP_STAMP): pyproject.toml
	@test -x $(PY) || { echo "==> creating the virtual environment $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> upgrading pip in $(VENV)"
	@$(PY) -m pip install -q --upgrade pip
	@echo "==> installing seawall (editable) with the dev and bench extras: about 15 s the first time"
	@$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $(SETUP_STAMP)
	@echo "==> $(VENV) is ready"

## setup: Python environment in .venv plus the Debian packages the tests use
setup: $(SETUP_STAMP) system-deps

system-deps:
	bash scripts/install-system-deps.sh

## test: the whole suite, real Prometheus/Alertmanager/Chromium included
test: setup
	$(PY) -m pytest

## test-fast: the suite without the stack and browser tests
test-fast: $(SETUP_STAMP)
	$(PY) -m pytest -m "not stack and not browser"

## lint: ruff, and mypy --strict on the package and stacktools
lint: $(SETUP_STAMP)
	$(PY) -m ruff check exporter tests bench scripts grafana stacktools
	$(PY) -m ruff format --check exporter tests bench scripts grafana stacktools
	$(PY) -m mypy

## bench: per-call overhead against pybreaker, circuitbreaker, tenacity, stamina, backoff, httpx-retries
bench: $(SETUP_STAMP)
	$(PY) -m bench

## demo: the demo service with live status page on http://127.0.0.1:8000/resilience (PORT=...)
demo: $(SETUP_STAMP)
	$(PY) -m seawall demo --port $(PORT)

## stack: demo + native Prometheus + Alertmanager with the shipped configs (no Docker)
stack: setup
	$(PY) scripts/stack.py $(STACK_ARGS)

## stack-ha: the same with two Prometheus replicas and two clustered Alertmanagers (no Docker)
stack-ha: setup
	$(PY) scripts/stack.py --ha $(STACK_ARGS)

## dashboards: regenerate grafana/dashboards/*.json from grafana/dashboards.py
dashboards: $(SETUP_STAMP)
	$(PY) grafana/dashboards.py

## secrets: create missing secrets/* from the *.example files (placeholders: edit them for real alerts)
# Mode 644: compose bind-mounts file secrets as they are, and the containers read them as non-root users.
secrets:
	@left=0; for f in secrets/*.example; do \
	  t="$${f%.example}"; \
	  if [ ! -e "$$t" ]; then cp "$$f" "$$t"; chmod 644 "$$t"; echo "created $$t from its example: put the real value in"; fi; \
	  if cmp -s "$$f" "$$t"; then echo "WARNING: $$t is still the placeholder from $$f"; left=1; fi; \
	done; \
	if [ $$left = 1 ]; then echo "WARNING: with placeholders, notifications to Slack/PagerDuty fail (Alertmanager counts them in alertmanager_notifications_failed_total) and 'make stack' uses local fake receivers instead; see secrets/README.md"; fi

# `docker compose` (v2) or a plain message saying what to do, not "unknown shorthand flag: 'f'".
compose-v2:
	@docker compose version >/dev/null 2>&1 || { \
	  echo "make: Docker Compose v2 ('docker compose') is not available here." >&2; \
	  echo "  Install Docker Engine with the compose plugin: https://docs.docker.com/compose/install/" >&2; \
	  echo "  (the old docker-compose v1 does not read this compose file), or run the stack without" >&2; \
	  echo "  Docker: 'make stack' (or 'make stack-ha'), from the Debian binaries 'make setup' installs." >&2; \
	  exit 1; }

## up: the monitoring stack in Docker (demo, Prometheus, Alertmanager, Grafana, collector, Tempo)
up: compose-v2 secrets
	$(COMPOSE) up -d --build

## up-ha: the same plus docker-compose.ha.yml: two Prometheus replicas, two clustered Alertmanagers
up-ha: compose-v2 secrets
	$(COMPOSE_HA) up -d --build

## down: stop the Docker stack (HA services included)
down: compose-v2
	$(COMPOSE_HA) down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .stack
