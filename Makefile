# Every target installs what it needs into .venv first; a fresh clone needs only python3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install tools run test lint typecheck pytest openapi bench bench-smoke bench-micro clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## the load generator the bench suite (and its smoke test) drives: Debian's wrk
tools:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; }; } || { echo "wrk is missing: apt-get install wrk"; exit 1; }

## make run: database created if missing (embedded PostgreSQL if none answers), migrated,
## demo data loaded if empty, then served on http://127.0.0.1:8000
run: $(STAMP)
	$(BIN)/python -m server serve --prepare

## make test: lint, format check, strict typing, then the whole suite
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## the suite in two (up to four) worker processes: each makes its own databases and Redis namespace
pytest: $(STAMP) tools
	$(BIN)/pytest --numprocesses=auto --maxprocesses=4

openapi: $(STAMP)
	$(BIN)/python -m server openapi --out openapi.json

## make bench: the load scenarios against hotpath, its ceilings and a FastAPI peer;
## writes bench/results/<date>.{json,md,png} and latest.*
bench: $(STAMP) tools
	$(BIN)/python -m bench.suite

bench-smoke: $(STAMP) tools
	$(BIN)/python -m bench.suite --smoke --out $${TMPDIR:-/tmp}/hotpath-bench-smoke

bench-micro: $(STAMP)
	$(BIN)/pytest bench/micro --benchmark-columns=min,median,mean,ops -s

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
