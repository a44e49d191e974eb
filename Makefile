# The two commands of README.md: `make demo` and `make test`. Both set up what they need
# on a fresh Debian 12 machine (as root): system packages, then the virtualenv.

PYTHON ?= $(shell command -v /usr/bin/python3 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-down test check lint typecheck unit coverage-floor bench system-packages venv clean

system-packages:
	@scripts/install-system-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## make test: system packages, virtualenv, then `make check` (lint, types, the fast tier and
## the coverage floor), then every other test: real peers, network namespaces, PostgreSQL,
## the installed wheel, the lab and end to end (docs/testing.md). Each test runs once.
test: system-packages venv check
	$(BIN)/pytest -m "not check"

## make check: the inner loop, under 2 minutes: lint, types, the unit and in-memory tests
## (marked `check` by tests/tiers.py) with branch coverage, and the floor on the pure cores.
check: venv lint typecheck
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -q -m check
	$(BIN)/python scripts/coverage-floor

lint: venv
	$(BIN)/ruff check provisioner tests lab bench scripts/coverage-floor
	$(BIN)/ruff format --check provisioner tests lab bench scripts/coverage-floor

typecheck: venv
	$(BIN)/mypy provisioner lab

unit: venv
	$(BIN)/pytest tests/unit tests/inventory

## make demo: bring up the virtual lab and provision it (lab/README.md).
demo: system-packages venv
	$(BIN)/python -m lab demo

## make demo-down: tear the lab and its daemon down.
demo-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m lab down; fi

## make bench: every benchmark in bench/ against its peers (docs/benchmarks.md).
bench: system-packages venv
	bench/run-all

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
