# Two commands: `make run` (set up + start the API) and `make test` (set up + run every check).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles llama.cpp on install. Skip the parts gptapi never loads (llama.cpp's
# common/ library and the multimodal llava/mtmd library): about 4 min on 2 cores instead of 10-13.
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/scripts/llama_skip_common.cmake

.PHONY: install run test test-fast lint system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $(CMAKE_ARGS)" $(BIN)/python -m pip install -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/gptapi serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The shared rate-limit and scale-out tests run a real redis-server and nginx, the dashboard
# test a real Prometheus, the playground test a headless Chromium through chromedriver (Debian
# packages; chromium-driver's binary is chromedriver).
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
SYSTEM_SERVICES := redis-server nginx prometheus
SYSTEM_PACKAGES := $(SYSTEM_SERVICES) chromium chromium-driver
SYSTEM_BINARIES := $(SYSTEM_SERVICES) chromium chromedriver
system-deps:
	@missing=""; for b in $(SYSTEM_BINARIES); do \
	  command -v $$b >/dev/null || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing (Debian) for the rate-limit, scale-out, dashboard and browser tests"; \
	    $(SUDO) apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	    { $(SUDO) apt-get update -q && \
	      $(SUDO) apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); }; \
	    for s in $(SYSTEM_SERVICES); do $(SUDO) service $$s stop >/dev/null 2>&1 || true; done; \
	  fi  # the tests start their own on free ports: the packages' default services are stopped

test: lint system-deps
	$(BIN)/pytest

# The fast tier alone (fake engine, in process): seconds, no model loaded.
test-fast:
	$(BIN)/pytest -m fast
