# Two commands for a fresh machine: `make demo` and `make test`. Each creates the environment itself.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
# Another supported Airflow (3.1, 3.2, 3.3): `make env AIRFLOW_VERSION=3.1` builds .venv-airflow-3.1 from
# constraints/airflow-3.1.txt (every package pinned, as uv.lock pins the default), and `make test
# AIRFLOW_VERSION=3.1` runs the tests there (TESTS= narrows them). Unset, everything uses .venv and uv.lock.
AIRFLOW_VERSION ?=
TESTS ?=
ifeq ($(strip $(AIRFLOW_VERSION)),)
VENV := .venv
else
VENV := .venv-airflow-$(AIRFLOW_VERSION)
CONSTRAINTS := constraints/airflow-$(AIRFLOW_VERSION).txt
endif
BIN := $(VENV)/bin
# What the tests need: three extras and the `test` dependency group (not in the published metadata).
TEST_DEPS := --extra emulator --extra parquet --extra s3 --group test

.PHONY: env demo test lint format bench emulator clean constraints dist

env: $(VENV)/.synced

ifeq ($(strip $(AIRFLOW_VERSION)),)
# The environment is the lock file, nothing else: uv installs exactly what uv.lock says.
$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --locked $(TEST_DEPS) --python $(PYTHON)
	@touch $@
else
# Exactly the constraints file's packages, then this package on top of them (no other resolution).
$(VENV)/.synced: pyproject.toml $(CONSTRAINTS)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(BIN)/python $(CONSTRAINTS)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@
endif

# The constraints files, one per supported Airflow minor version: 3.1 and 3.2 resolved by uv with that
# Airflow's newest patch release (and the pins written in constraints/README.md), 3.3 exported from uv.lock.
SUPPORTED_AIRFLOW := 3.1 3.2 3.3
constraints:
	for v in 3.1 3.2; do \
	  echo "apache-airflow==$$v.*" > .constraints-$$v.in; \
	  $(UV) pip compile --quiet pyproject.toml .constraints-$$v.in constraints/pins-$$v.in $(TEST_DEPS) \
	    --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --no-header --no-annotate \
	    -o constraints/airflow-$$v.txt; \
	  rm -f .constraints-$$v.in; \
	done
	$(UV) export --quiet --locked $(TEST_DEPS) --no-emit-project --no-hashes --no-header --no-annotate \
	  -o constraints/airflow-3.3.txt

demo: env
	$(BIN)/python -m demo

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: env
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Most of a test's time is waiting (the emulator, a poll interval, Airflow's start-up), so four pytest-xdist
# workers share two cores well; each worker has its own Airflow home and emulator (tests/conftest.py).
PYTEST_WORKERS ?= 4
test: lint
	$(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) $(TESTS)

# The side-by-side comparison with the official providers (docs/benchmarks.md); they are installed into a
# separate environment (/tmp/acb-anchors), never into .venv. BENCH_ARGS= for the full sizes.
BENCH_ARGS ?= --quick
bench: env
	UV="$(UV)" $(BIN)/python -m bench compare $(BENCH_ARGS)

emulator: env
	$(BIN)/claude-batch-emulator --host 127.0.0.1 --port 8765

# The wheel and sdist, checked as PyPI would render them (twine in a throwaway environment).
TWINE_VERSION := 7.0.0
dist:
	rm -rf dist
	$(UV) build --quiet --out-dir dist
	$(UV) tool run --from twine==$(TWINE_VERSION) twine check --strict dist/*

clean:
	rm -rf .venv .venv-airflow-* .pytest_cache .ruff_cache dist

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
	$(UV) export --locked --no-hashes --all-extras --all-groups --no-emit-project -o .audit-requirements.txt
	$(UV) tool run --from pip-audit==2.10.1 pip-audit -r .audit-requirements.txt --no-deps --disable-pip --strict --progress-spinner off
