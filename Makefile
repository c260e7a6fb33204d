# edgeprune — developer entry points. Every target creates/uses its own virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip
# The machine's CPU torch wheel lives in /opt/wheels when present (pip config may point there already).
FIND_LINKS = $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
STAMP   = $(VENV)/.installed

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(FIND_LINKS) -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python -m edgeprune.demo

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check edgeprune exporters runtime tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache demo-out
