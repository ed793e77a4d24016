# Every target creates (or reuses) its own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv test test-system check lint format demo bench clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

#: parallel test workers (tests mostly wait on sockets, processes and HTTP, so twice the
#: cores: 830 tests in ~2m10s on 2 cores, against ~2m45s with 3 workers)
TEST_WORKERS ?= 4

## make test: the whole test suite (except the slow system tests)
test: $(STAMP)
	@# the Node.js collector example's test needs its npm packages (skipped without node)
	if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		(cd examples/node-collector && npm install --no-audit --no-fund --silent); fi
	$(BIN)/python -m pytest -q -m "not system" -n $(TEST_WORKERS)

## make test-system: whole-system reliability tests (slow)
test-system: $(STAMP)
	$(BIN)/python -m pytest -q -m system

## make check: lint, type-check and the import layers
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make demo: the whole system against the embedded reference server
demo: $(STAMP)
	$(BIN)/agentbus demo

## make bench: every benchmark; results go to bench/RESULTS.md by hand
bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
