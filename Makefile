# Two commands do all the set-up on a fresh Debian machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
LOCK_STAMP := $(VENV)/.installed-lock
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: help venv system-deps demo test lint test-unit bench bench-ledger bench-cutover docs lock dashboard-png clean

help:
	@echo "make demo   - local MariaDB + local S3 (SeaweedFS) on loopback, sample objects, a real migration, status"
	@echo "make test   - lint (ruff, vulture, mypy), then the test suite against a private MariaDB and SeaweedFS"
	@echo "make bench  - movers3 vs s5cmd, rclone and aws s3 cp on a private MariaDB and SeaweedFS (docs/benchmarks.md)"
	@echo "make bench-ledger - the ledger benchmark at 10k, 1M and 10M rows (docs/scaling.md)"
	@echo "make bench-cutover - verify and delete-source over 100,000 migrated objects (docs/scaling.md)"
	@echo "make docs   - regenerate docs/configuration.md from the settings' declaration (movers3/settings.py)"
	@echo "make lock   - re-pin the image's dependencies in compose/requirements.lock and compose/build-tools.lock"
	@echo "make dashboard-png - docs/dashboard.png: the Grafana dashboard's panels drawn from a real run's metrics"
	@echo "make clean  - remove the venv and the demo's data"

$(STAMP): setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(BENCH_STAMP): $(STAMP) setup.cfg
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# MariaDB's server comes from Debian's packages; the tests and the demo start private instances of it.
system-deps:
	@if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then \
		echo "installing mariadb-server from Debian's packages"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server mariadb-client tzdata; \
	fi
	@# The lease tests load the time zone tables from the system's zoneinfo; the TLS tests make
	@# certificates with openssl.
	@if [ ! -d /usr/share/zoneinfo/Europe ] || ! command -v openssl >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tzdata openssl; \
	fi
	@# The test of `report --summary` opens the page in headless Chromium.
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing chromium from Debian's packages"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi

demo: venv system-deps
	$(BIN)/python -m tests.support.demo

test: lint system-deps
	$(BIN)/python -m pytest -p no:cacheprovider

# Style, dead code and types; their settings are in pyproject.toml.
lint: venv
	$(BIN)/ruff check movers3 tests
	$(BIN)/ruff format --check movers3 tests
	$(BIN)/vulture
	$(BIN)/mypy

# BENCH_ARGS=--quick for a tiny run; see `python -m tests.bench --help`.
bench: $(BENCH_STAMP) system-deps
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

test-unit: venv
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit

# The ledger at 10k, 1M and 10M rows (no S3): claim latency and throughput, insert rate, status.
# BENCH_SIZES=10000,100000 for a quick run. Took 6.5 minutes on a quiet 2-core VM, ~6 GB of /tmp at 10M rows.
bench-ledger: venv system-deps
	$(BIN)/python -m tests.bench.ledger

# verify and delete-source over BENCH_ROWS (default 100000) migrated objects: time, rate, peak RSS.
bench-cutover: venv system-deps
	$(BIN)/python -m tests.bench.cutover

# docs/configuration.md is made from movers3/settings.py; tests/unit/test_settings_declaration.py fails when it is stale.
docs: venv
	$(BIN)/python -m movers3.settings > docs/configuration.md

# The image installs only what these locks pin, each file checked against its hash: compose/requirements.lock
# for setup.cfg's install_requires and `metrics` extra, compose/build-tools.lock for pip and the
# build-system of pyproject.toml. Resolved for the image's Python and platform, not this machine's.
# Existing pins are kept where setup.cfg still allows them; LOCK_ARGS=--upgrade takes the newest.
LOCK_FOR := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes --custom-compile-command "make lock"

$(LOCK_STAMP): $(STAMP) setup.cfg
	$(BIN)/pip install --quiet -e '.[test,lock]'
	touch $(LOCK_STAMP)

lock: $(LOCK_STAMP)
	$(BIN)/uv pip compile --quiet setup.cfg --extra metrics $(LOCK_FOR) $(LOCK_ARGS) -o compose/requirements.lock
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], "pip", sep="\n")' \
		| $(BIN)/uv pip compile --quiet - $(LOCK_FOR) $(LOCK_ARGS) -o compose/build-tools.lock
$(DOCS_STAMP): $(STAMP) setup.cfg
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $(DOCS_STAMP)

# A real migration on a private MariaDB and SeaweedFS, its workers scraped every second, each panel of
# compose/grafana/dashboards/movers3.json evaluated and drawn with matplotlib (about 3 minutes).
dashboard-png: $(DOCS_STAMP) system-deps
	$(BIN)/python -m tests.support.dashboard_png

clean:
	rm -rf $(VENV) .demo *.egg-info
