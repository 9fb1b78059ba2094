PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LINT_PATHS := $(wildcard src tests benchmarks examples clients/python)
STAMP := $(VENV)/.installed

.PHONY: serve test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

SERVE_STAMP := $(VENV)/.installed-server

# `make serve` installs the issuer only; `make test` everything the suite needs.
$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server]'
	touch $(SERVE_STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]' -e clients/python
	touch $(STAMP) $(SERVE_STAMP) $(BENCH_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/keyproof serve

test: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]' -e clients/python
	touch $(BENCH_STAMP)

# The HTTP cases need wrk (Debian's package); the whole run is bounded to 15 minutes.
# The README's performance table is rewritten from the JSON it writes.
bench: $(BENCH_STAMP)
	command -v wrk >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	timeout 900 $(BIN)/python -m benchmarks --output benchmarks/results/latest.json
	$(BIN)/python -m benchmarks.readme benchmarks/results/latest.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
