# Two jobs on a fresh machine: `make demo` and `make test`. Both create .venv if missing and install
# torch==2.13.0 first (the CPU build on this machine's disk; an unpinned torch pulls a multi-GB CUDA build).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_ARGS ?=

.PHONY: demo test lint setup setup-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.setup: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.setup-dev: $(VENV)/.setup
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	touch $@

setup: $(VENV)/.setup
setup-dev: $(VENV)/.setup-dev

demo: setup
	$(BIN)/mmalign demo $(DEMO_ARGS)

lint: setup-dev
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

test: lint
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) demo-out world-out pipeline-out .pytest_cache .ruff_cache
