# The README's two commands. Each one sets itself up from the project's own
# files (a virtual environment in .venv, dependencies pinned in constraints.txt).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test setup bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## make run: the whole platform on embedded defaults, in the foreground (Ctrl-C stops it);
## make run ARGS=--demo adds the simulated fleet of four pilot towns (dashboard on http://127.0.0.1:8080/)
run: $(STAMP)
	$(BIN)/metropole run $(ARGS)

## make test: the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make bench: every benchmark, printing tables
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
