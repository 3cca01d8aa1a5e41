# Two commands for a fresh machine: `make demo` and `make test`. Each creates the environment itself.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")

.PHONY: env demo test lint format bench emulator clean

env: $(VENV)/.synced

# The environment is the lock file, nothing else: uv installs exactly what uv.lock says.
$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --locked --extra test --python $(PYTHON)
	@touch $@

demo: env
	$(BIN)/python -m airflow_claude_batch.demo

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: env
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest -q -p no:cacheprovider

# The side-by-side comparison with the official providers (docs/benchmarks.md); they are installed into a
# separate environment (/tmp/acb-anchors), never into .venv. BENCH_ARGS= for the full sizes.
BENCH_ARGS ?= --quick
bench: env
	UV="$(UV)" $(BIN)/python -m bench compare $(BENCH_ARGS)

emulator: env
	$(BIN)/claude-batch-emulator --host 127.0.0.1 --port 8765

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The distributed deployment, checked end to end (docs/operations.md). Both install what they need.
.PHONY: topology-check compose-check
# Real processes on 127.0.0.1: PostgreSQL, Redis, moto's S3, the emulator and Airflow's scheduler, DAG
# processor, triggerer, API server and Celery workers; the nightly DAG through the REST API. ARGS=--ui
# also checks the UI in headless Chromium and refreshes docs/screenshots/.
topology-check:
	bash deploy/topology-check.sh $(ARGS)

# docker-compose.yaml built and run (a private Docker engine when none is running), then the same checks.
compose-check:
	bash deploy/compose-check.sh

# Dependency audit of the locked versions, on demand: pip-audit in a throwaway environment (never in the
# lock). It needs PyPI's JSON API for vulnerability data; --strict makes a missing data source a failure.
.PHONY: audit
audit:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) export --locked --no-hashes --all-extras --no-emit-project -o .audit-requirements.txt
	$(UV) tool run --from pip-audit==2.10.1 pip-audit -r .audit-requirements.txt --no-deps --disable-pip --strict --progress-spinner off
