# Every target creates (or reuses) its own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv test test-readme test-system check lint format demo bench lock clean

all: test

#: every dependency (and the build backend) pinned with its hashes; `make lock` remakes it
LOCK := requirements/dev.lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

#: parallel test workers (tests mostly wait on sockets, processes and HTTP, so twice the
#: cores: 830 tests in ~2m10s on 2 cores, against ~2m45s with 3 workers)
TEST_WORKERS ?= 4

## make test: the whole test suite (except the slow system tests)
test: $(STAMP)
	@# the Node.js collector example's test needs its npm packages (skipped without node)
	if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		(cd examples/node-collector && npm ci --no-audit --no-fund --silent); fi
	$(BIN)/python -m pytest -q -m "not system" -n $(TEST_WORKERS)

## make test-readme: the README's sh blocks, as pasted, in a fresh clone of HEAD (port 27400)
test-readme:
	$(PYTHON) tests/readme/run_blocks.py

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

## make lock: pin the dependencies of pyproject.toml anew (after changing them there)
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --extra dev --strip-extras \
		--no-emit-index-url --no-emit-find-links --unsafe-package agentbus \
		-o $(LOCK) pyproject.toml requirements/build.in
	@# the project itself is installed editable, not from the lock
	sed -i -e '/^agentbus @ /{N;d}' $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
