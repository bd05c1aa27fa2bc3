# seawall: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.stamp-setup
PORT ?= 8000

.PHONY: setup system-deps test test-fast lint bench demo stack secrets up down dashboards clean

$(SETUP_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(SETUP_STAMP)

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

## bench: per-call overhead against pybreaker, circuitbreaker, tenacity, stamina, backoff
bench: $(SETUP_STAMP)
	$(PY) -m bench

## demo: the demo service with live status page on http://127.0.0.1:$(PORT)/resilience
demo: $(SETUP_STAMP)
	$(PY) -m seawall demo --port $(PORT)

## stack: demo + native Prometheus + Alertmanager with the shipped configs (no Docker)
stack: setup
	$(PY) scripts/stack.py $(STACK_ARGS)

## dashboards: regenerate grafana/dashboards/*.json from grafana/dashboards.py
dashboards: $(SETUP_STAMP)
	$(PY) grafana/dashboards.py

## secrets: create missing secrets/* from the *.example files (placeholders: edit them for real alerts).
## Mode 644: compose bind-mounts file secrets as they are, and the containers read them as non-root users.
secrets:
	@for f in secrets/*.example; do \
	  t="$${f%.example}"; \
	  if [ ! -e "$$t" ]; then cp "$$f" "$$t"; chmod 644 "$$t"; echo "created $$t from its example: put the real value in"; fi; \
	done

## up: the monitoring stack in Docker (demo, Prometheus, Alertmanager, Grafana, collector, Tempo)
up: secrets
	docker compose -f docker-compose.monitoring.yml up -d --build

down:
	docker compose -f docker-compose.monitoring.yml down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .stack
