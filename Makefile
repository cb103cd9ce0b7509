# The README's two commands. Each one sets itself up from the project's own
# files (a virtual environment in .venv, dependencies pinned in constraints.txt):
# `make run` installs the platform alone, `make test` also its test extras.
PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint setup bench conformance faults fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

$(TEST_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@ $(RUN_STAMP)

## make setup: .venv with the test extras (what a developer works with)
setup: $(TEST_STAMP)

## make run: the whole platform on embedded defaults, in the foreground (Ctrl-C stops it);
## make run ARGS=--demo adds the simulated fleet of four pilot towns (dashboard on http://127.0.0.1:8080/)
run: $(RUN_STAMP)
	$(BIN)/metropole run $(ARGS)

## make test: lint first (ruff, then mypy --strict), then the whole test suite
test: $(TEST_STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make lint: ruff over the checkout and mypy --strict over the project's own packages
## (strict and the package list are [tool.mypy] in pyproject.toml); any finding fails
lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## make faults: kill -9 the agent, the broker, PostgreSQL and the notification receiver, restart Mosquitto,
## under load; every accepted measure must be in history once and notified (own PostgreSQL and Mosquitto, ~1 min)
faults: $(RUN_STAMP)
	$(BIN)/python -m faults

## make fuzz: hypothesis fuzzing of the q language, geo-queries, temporal parameters, payload codecs, API bodies
## and every NGSI-LD OpenAPI operation, each for a bounded time (about 100 s in all; FUZZ_SCALE=0.2 for a quick run;
## FUZZ_SEED=N tries the inputs of an earlier run again: each run prints its seed)
## under a memory cap; prints inputs tried and failures per target, fails on any
fuzz: $(TEST_STAMP)
	$(BIN)/python -m fuzz $(if $(FUZZ_SCALE),--scale $(FUZZ_SCALE)) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

## make bench: every benchmark, printing tables
bench: $(RUN_STAMP)
	$(BIN)/python -m bench

## make conformance: the ETSI NGSI-LD suite (../shared/conformance) against the broker on SQLite and on
## PostgreSQL, side by side; fails below the floor (compliance/etsi-floor.json). Knobs (all optional):
##   UPDATE_FLOOR=1               raise the floor to this run's counts (refused if any count went down)
##   STORES=sqlite                one store only          TESTS='018_01_01 019_*'  a few tests (no floor check)
##   BROKER_PORTS=27026,27027     HARNESS_PORTS=27085,27185 (first of four per store; default: free ports)
##   SEQUENTIAL=1                 one store after the other    MQTT=1  also the 12 MQTT tests (no floor check)
conformance: $(RUN_STAMP)
	@$(BIN)/python -m compliance.conformance \
	  $(if $(filter 1,$(UPDATE_FLOOR)),--update-floor) $(if $(STORES),--stores $(STORES)) \
	  $(if $(BROKER_PORTS),--broker-ports $(BROKER_PORTS)) $(if $(HARNESS_PORTS),--harness-ports $(HARNESS_PORTS)) \
	  $(if $(filter 1,$(SEQUENTIAL)),--sequential) $(if $(filter 1,$(MQTT)),--with-mqtt) \
	  $(foreach t,$(TESTS),--test '$(t)') $(CONFORMANCE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
