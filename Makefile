# dify-hitl — every target sets itself up (venv + packages) first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672/%2F
export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
CONFORMANCE := $(firstword $(wildcard ../shared/tools/dify-conformance) $(HITL_SHARED_DIR)/tools/dify-conformance)

.PHONY: setup services run demo lint test test-fast conformance bench faults clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

services:  ## make sure RabbitMQ and PostgreSQL are running on this machine
	bash .ci/services.sh

run: setup services  ## simulator + decider + ingest with the demo workflow; prints what to type next
	$(PY) -m demo.run

demo: setup services  ## plays a whole round trip by itself (revise, round 2, approve)
	$(PY) -m demo.play

lint: setup  ## ruff and mypy (both configured in pyproject.toml; mypy's files are listed there), at zero
	$(PY) -m ruff check .
	$(PY) -m mypy

# The main suite on two workers: its tests spend much of their time waiting on subprocesses, the broker
# and the store, so two use the 2 cores that one leaves half idle. A module stays on one worker
# (--dist loadfile): module-scoped stacks and browsers are started once. Every test has its own
# namespace, database and ports, so the workers never share state. The fault run stays serial: its
# scenarios measure recovery and must not compete with another test for the cores.
test: lint services  ## lint first, then the whole suite (unit, integration on SQLite and PostgreSQL, end-to-end, conformance) + a short fault run
	$(PY) -m pytest -q -m "not faults" -p no:cacheprovider -n 2 --dist loadfile
	FAULTS_SCALE=0.1 $(PY) -m pytest -q -m faults tests/faults -p no:cacheprovider

test-fast: setup  ## unit tests only (no services needed)
	$(PY) -m pytest -q tests/unit

conformance: setup  ## the Dify conformance kit against a fresh simulator
	$(PY) -m pytest -q tests/integration/test_difysim_conformance.py

bench: setup services  ## benchmarks against baselines, see bench/README.md; BENCH_ARGS="--smoke" for a quick check
	$(PY) -m bench $(BENCH_ARGS)

faults: setup services  ## the fault and security suite (FAULTS_SCALE=0.1 for a short run), prints its table
	$(PY) -m pytest -m faults tests/faults -q -s -p no:cacheprovider

clean:
	rm -rf var .pytest_cache
