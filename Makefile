# The two commands of README.md: `make demo` and `make test`. Both set up what they need
# on a fresh Debian 12 machine (as root): system packages, then the virtualenv.

PYTHON ?= $(shell command -v /usr/bin/python3 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-down test lint typecheck unit bench system-packages venv clean

system-packages:
	@scripts/install-system-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## make test: system packages, virtualenv, then lint, types and the whole test suite.
test: system-packages venv lint typecheck
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check provisioner tests lab bench
	$(BIN)/ruff format --check provisioner tests lab bench

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

## make bench: every benchmark in bench/ against its peers (BENCH.md).
bench: system-packages venv
	bench/run-all

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
