# `make pipeline` and `make test` are the two commands a new user needs (see README.md).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install pipeline check test bench

$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
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
