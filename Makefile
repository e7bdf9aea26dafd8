# tickwatch: `make demo` runs the whole pipeline on the built-in replay feed; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TW := $(BIN)/tickwatch
export MLFLOW_DISABLE_TELEMETRY := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.DEFAULT_GOAL := help
.PHONY: help install demo test test-unit test-integration test-browser screenshot vendor up down status lint bench drill feast-apply lock compose-check clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	@# real data for the tests (MIT: E-mini trades, daily ETF closes); its own pins clash with ours
	@$(BIN)/pip install -q --disable-pip-version-check --no-deps mlfinpy==0.1.2
	@$(BIN)/pip install -q --disable-pip-version-check --no-deps -e . >/dev/null 2>&1
	@touch $(STAMP)

install: $(STAMP) ## create the venv and install pinned dependencies (idempotent)

demo: $(STAMP) ## set up everything and run the live pipeline on the replay feed (Ctrl-C stops it)
	@$(TW) demo $(ARGS)

test: $(STAMP) ## run unit, integration, end-to-end and browser tests against the real local stack
	@$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 tests/unit tests/integration tests/e2e tests/browser

test-unit: $(STAMP) ## unit tests only (no services)
	@$(BIN)/python -m pytest -q tests/unit

test-integration: $(STAMP) ## integration and e2e tests only
	@$(BIN)/python -m pytest -q tests/integration tests/e2e

test-browser: $(STAMP) ## the dashboard in chromium (apt-installed when missing) against the live pipeline
	@$(BIN)/python -m pytest -q -p no:cacheprovider tests/browser

screenshot: $(STAMP) ## run the browser tests and write their dashboard screenshot to docs/dashboard.png
	@TICKWATCH_DASHBOARD_PNG=$(CURDIR)/docs/dashboard.png $(BIN)/python -m pytest -q -p no:cacheprovider tests/browser -k live_charts

vendor: ## re-fetch the vendored browser assets (npm pack of pinned versions, integrity checked)
	@api/static/vendor/fetch.sh

up: $(STAMP) ## start Kafka, Redis, Prometheus and MLflow (installs what is missing)
	@$(TW) stack up

down: $(STAMP) ## stop what `make up` started
	@$(TW) stack down

status: $(STAMP) ## health of every stack service
	@$(TW) stack status

lint: $(STAMP) ## ruff check and format check, mypy (the packages [tool.mypy] lists)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

bench: $(STAMP) ## run every benchmark and rewrite benchmarks/RESULTS.md
	@$(TW) bench

drill: $(STAMP) ## fault drills (kill -9, broker restart, WebSocket drop, Redis outage, bad frames)
	@$(TW) drill $(ARGS)

compose-check: $(STAMP) ## check docker-compose.yml, Dockerfile, .env.example and deploy/k8s
	@$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_compose.py tests/unit/test_dockerfile.py tests/unit/test_env_example.py tests/unit/test_k8s.py

feast-apply: $(STAMP) ## register the Feast definitions (feature_repo/) in the registry under .run/data/features
	@$(TW) features apply

lock: ## re-freeze requirements.lock from the current venv
	@(echo "# Full pinned set that resolves together (pip freeze of a working venv). Regenerate: make lock"; $(BIN)/pip freeze --exclude-editable | grep -v '^tickwatch' | grep -v '^mlfinpy') > requirements.lock

clean: ## remove the run folder (data, logs) after `make down`
	rm -rf .run
