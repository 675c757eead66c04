# driftline — `make help` lists the targets. Every target sets up what it needs (virtual environment,
# packages, Kafka jars) on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Resolved versions that CI tested; `make lock` refreshes them.
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.installed
REPORT_STAMP := $(VENV)/.installed-report
BENCH_STAMP := $(VENV)/.installed-bench
PYTEST_ARGS ?=

.PHONY: help install test test-unit test-integration test-reliability demo bench check docs format lock clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; driftline needs Python 3.11 (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]' --config-settings editable_mode=lenient
	@touch $@

install: $(STAMP) ## Create the virtual environment and install driftline with its dev and test extras

test: $(STAMP) ## Run unit and integration tests (starts a local Kafka broker and embedded ClickHouse)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-unit: $(STAMP) ## Run the unit tests only (no services, seconds)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## Run the integration tests only (real Kafka + embedded ClickHouse)
	$(BIN)/pytest tests/integration -m "not slow" $(PYTEST_ARGS)

test-reliability: $(STAMP) ## Run the long fault-injection tests (marked slow)
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

$(REPORT_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[report]' --config-settings editable_mode=lenient
	@touch $@

demo: $(REPORT_STAMP) ## Play a model's day in production through local Kafka, worker and sink; summary + HTML report
	$(BIN)/driftline demo

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[bench]' --config-settings editable_mode=lenient
	@touch $@

EVENTS ?= 1000000
ENVELOPE ?= 500
bench: $(BENCH_STAMP) ## Benchmark worker vs bare consumers into bench/history.jsonl (EVENTS=, ENVELOPE=, PROFILE=1, SWEEP=1)
	$(BIN)/python -m bench --events $(EVENTS) --envelope $(ENVELOPE) $(if $(PROFILE),--profile) $(if $(SWEEP),--sweep)

check: $(STAMP) ## Lint, format check and type check (ruff, mypy)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: $(STAMP) ## Regenerate the settings and table references in docs/ (configuration.md, tables.md)
	$(BIN)/python -m driftline.devtools.docs

format: $(STAMP) ## Format the code and fix what ruff can fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: ## Re-resolve the dependencies into constraints.txt (commit the result)
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet '.[dev,bench]'
	.lock-venv/bin/python -m pip freeze --exclude driftline > $(CONSTRAINTS)
	rm -rf .lock-venv

clean: ## Stop the local broker and remove local state, caches and the virtual environment
	-@test -x $(BIN)/driftline && $(BIN)/driftline kafka stop
	rm -rf .driftline build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis $(VENV)
