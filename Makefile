# netcortex — the two set-up commands are `make run` and `make test`.
# Everything is installed from this repository's own files: requirements.lock
# pins the whole Python tree; Debian's net-snmp tools and chromium come from apt when missing.

PYTHON_BOOT ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
UV          := $(VENV)/bin/uv
STAMP       := $(VENV)/.installed
CONFIG      ?= examples/netcortex.yaml
PYTEST_ARGS ?=

.PHONY: help venv tools run test test-unit test-contracts test-e2e lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9
	@UV_PYTHON_DOWNLOADS=never $(UV) pip install --quiet --python $(PY) -r requirements.lock
	@UV_PYTHON_DOWNLOADS=never $(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the pinned tree

tools:  ## install Debian's net-snmp tools (snmptrap, snmpd) and chromium (browser test) when missing
	@command -v snmptrap >/dev/null 2>&1 && command -v snmpd >/dev/null 2>&1 || { \
	  echo "installing Debian's snmp and snmpd packages"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq snmp snmpd >/dev/null; }
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium package (Playwright drives it; it never downloads a browser)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: venv  ## run the engine on the embedded default (memory bus, SQLite, traps on udp 127.0.0.1:1162, HTTP API + webhooks on 127.0.0.1:8162)
	$(VENV)/bin/netcortex run --config $(CONFIG)

test: venv tools lint  ## lint, then the whole suite: unit, contracts (memory + NATS), e2e (memory + NATS), fuzz
	$(PY) -m pytest -n auto --dist loadgroup $(PYTEST_ARGS)

test-unit: venv  ## unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-contracts: venv  ## contract suites over every backend
	$(PY) -m pytest tests/contracts $(PYTEST_ARGS)

test-e2e: venv tools  ## the real process with real protocols
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

lint: venv  ## ruff, mypy --strict, import-linter layering
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: venv tools  ## print benchmark figures (see docs/PERFORMANCE.md)
	$(PY) benchmarks/bench_trap_decode.py
	$(PY) benchmarks/bench_bus.py
	$(PY) benchmarks/bench_runner.py
	$(PY) benchmarks/bench_trap_ingest.py
	$(PY) benchmarks/bench_inventory.py
	$(PY) benchmarks/bench_maintenance.py
	$(PY) benchmarks/bench_dedup.py
	$(PY) benchmarks/bench_webhook.py
	$(PY) benchmarks/bench_poll.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_journal.py --count 100 --rate 20 --enqueue 1000 --commits 100
	$(PY) benchmarks/bench_association.py
	$(PY) benchmarks/bench_scaleout.py --rate 5000 --seconds 2

clean:  ## remove the environment and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
