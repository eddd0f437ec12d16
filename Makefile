# natterjack developer tasks. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINT_PATHS := libs services tools bench clients/python/natterjack_client
CLIENT := clients/python

.PHONY: help venv up down status logs test lint bench bench-bus bench-delivery bench-dedup bench-load clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(STAMP) ## create .venv and install the project, its dev tools and the Python client (natterjack CLI)

# Reinstalled only when either pyproject.toml is newer than the stamp. The client goes in
# second: its `natterjack` entry point is the one that stays on .venv/bin.
$(STAMP): pyproject.toml $(CLIENT)/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[dev]'
	$(VENV)/bin/pip install -e $(CLIENT)
	touch $@

.PHONY: browser-deps
browser-deps: ## install Debian's chromium for tests/browser (quick when already there)
	@test -x /usr/bin/chromium || { apt="env DEBIAN_FRONTEND=noninteractive apt-get"; \
	  [ "$$(id -u)" = 0 ] || apt="sudo $$apt"; \
	  $$apt install -y -q chromium || { $$apt update -q && $$apt install -y -q chromium; }; }

up: venv ## start MySQL/Redis (if needed), our NATS and the five services; wait until ready
	$(PY) -m tools.devstack up

down: ## stop everything `make up` started
	$(PY) -m tools.devstack down

status: ## show what runs and whether it is ready
	$(PY) -m tools.devstack status

logs: ## follow the logs of the local stack (var/log/*.log)
	@ls var/log/*.log >/dev/null 2>&1 || { echo "no logs in var/log yet (make up)"; exit 1; }
	tail -n 20 -F var/log/*.log

test: venv ## run the test suite
	$(VENV)/bin/pytest -q tests

test-fault: venv ## fault suite, full profile: every fault under a minute of load (≤ 20 min)
	NJ_FAULT_PROFILE=full $(VENV)/bin/pytest -q tests/fault

lint: venv ## ruff and mypy (both must pass)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(LINT_PATHS)

bench-bus: venv ## benchmark the message bus
	$(PY) -m bench.bus --write BENCHMARKS.md

bench-delivery: venv ## benchmark offline backlog drain and redelivery overhead
	$(PY) -m bench.delivery --write BENCHMARKS.md

bench-dedup: venv ## the router's send cost with and without durable de-duplication
	$(PY) -m bench.dedup --write BENCHMARKS.md

bench-load: venv ## load tool: the product against a bare relay, same clients (own servers)
	$(PY) -m bench.load --write BENCHMARKS.md

bench: bench-bus bench-delivery bench-dedup bench-load ## run the benchmarks

clean: ## stop the local stack and delete var/ (its data and logs)
	@if ls var/run/*.pid >/dev/null 2>&1 && test -x $(PY); then $(PY) -m tools.devstack down; fi
	rm -rf var/
