# The README's two commands. Each one sets itself up from the project's own
# files (a virtual environment in .venv, dependencies pinned in constraints.txt).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test setup bench faults clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## make run: the whole platform on embedded defaults, in the foreground (Ctrl-C stops it)
run: $(STAMP)
	$(BIN)/metropole run

## make test: the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make faults: kill -9 the agent, the broker, PostgreSQL and the notification receiver, restart Mosquitto,
## under load; every accepted measure must be in history once and notified (own PostgreSQL and Mosquitto, ~1 min)
faults: $(STAMP)
	$(BIN)/python -m faults

## make bench: every benchmark, printing tables
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
