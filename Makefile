# edgeprune — developer entry points. Every target creates/uses its own virtual environment.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip
# The machine's CPU torch wheel lives in /opt/wheels when present (pip config may point there already).
FIND_LINKS = $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
STAMP   = $(VENV)/.installed

.PHONY: install demo test test-fast lint clean board-sim board-sim-stop ssh-tools

install: $(STAMP)

$(STAMP): pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(FIND_LINKS) -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python -m edgeprune.demo

test: install ssh-tools
	$(BIN)/python -m pytest -q

test-fast: install ssh-tools
	$(BIN)/python -m pytest -q -m "not slow"

# The deploy tests run a real OpenSSH server on 127.0.0.1 (tests/sshd.py). As root on Debian,
# install it when missing, with a policy-rc.d that keeps the system's ssh service from starting;
# elsewhere those tests are skipped with the reason.
ssh-tools:
	@if [ ! -x /usr/sbin/sshd ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing openssh-server/openssh-client for the deploy tests (service not started)"; \
	  made=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made=1; }; \
	  apt-get update -q >/dev/null; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server openssh-client >/dev/null; \
	  [ -z "$$made" ] || rm -f /usr/sbin/policy-rc.d; \
	fi

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
