# edgeprune — developer entry points. Every target creates/uses its own virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip
# The machine's CPU torch wheel lives in /opt/wheels when present (pip config may point there already).
FIND_LINKS = $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
STAMP   = $(VENV)/.installed

.PHONY: install demo test test-fast lint clean board-sim board-sim-stop

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

# The emulated Raspberry Pi (Debian 12 arm64 under qemu-user, sshd on 127.0.0.1; root needed).
# First run builds and caches the userland in $(EDGEPRUNE_BOARD_SIM_CACHE) (default
# /var/cache/edgeprune/board-sim), about 15 min; it prints the --host/--ssh-config to use.
board-sim:
	tools/board_sim.sh start

board-sim-stop:
	tools/board_sim.sh stop

lint: install
	$(BIN)/ruff check edgeprune exporters runtime tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache demo-out
