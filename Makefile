# The two commands: `make run` (the whole suite, with a demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/caseflow-suite up

lint: $(BIN)/.installed
	$(BIN)/ruff check shared services tests bench
	$(BIN)/mypy

test: $(BIN)/.installed lint
	./scripts/ensure-test-tools
	$(BIN)/python -m pytest
