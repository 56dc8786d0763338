# `make pipeline` and `make test` are the two commands a new user needs (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install pipeline check test bench

$(VENV)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: genbench needs Python 3.11+, but $(PYTHON) is " + sys.version.split()[0] + ": make PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test,server]'
	touch $@

install: $(VENV)/.installed

pipeline: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

check: install
	$(BIN)/python -m pipeline.check

test: install
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -n 2 --dist loadgroup

bench: install
	$(BIN)/python -m bench.speed
