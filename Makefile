# ActionItems: developer and CI entry points. `make help` lists the targets.
#
# Everything runs locally without Docker: Kafka from Maven Central
# (infra/kafka.sh), the MongoDB-wire store (infra/store.sh), the three Python
# services (infra/services.sh). Caches, data, pid files and logs live in .infra/.
# KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI pointing elsewhere: nothing local is
# started for that dependency.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(REPO)/.venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
# Python for creating the venv: 3.11 when installed, else python3 (must be >= 3.11).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)

PYTEST_ARGS ?=
# Where `make test` leaves pytest's exit code (read by .ci/run: 5 = no tests).
PYTEST_RC_FILE ?= $(REPO)/.infra/pytest.rc

.PHONY: help venv lock infra topics up down status lint test unit clean-infra browser bench

help: ## list the targets
	@echo "ActionItems make targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort \
	    | awk 'BEGIN { FS = ":.*## " } { printf "  %-12s %s\n", $$1, $$2 }'

venv: $(VENV_STAMP) ## create .venv from requirements.lock, then pip install -e . (again when either changes)

# The versions the suite was tested with are in requirements.lock (with hashes);
# the project itself is installed editable on top, without resolving anything.
# infra/venv_check.py fails when pyproject.toml asks for a package or version the lock
# lacks (then `make lock`); `pip check` when the installed packages disagree among themselves.
$(VENV_STAMP): $(REPO)/requirements.lock $(REPO)/pyproject.toml
	@if [[ -z "$(PYTHON)" ]]; then echo "make: no python3.11/python3 found" >&2; exit 1; fi
	@if [[ ! -x "$(PY)" ]]; then \
	    "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	        || { echo "make: $(PYTHON) is older than 3.11 (set PYTHON=...)" >&2; exit 1; }; \
	    echo "creating $(VENV) with $(PYTHON)"; \
	    "$(PYTHON)" -m venv "$(VENV)"; \
	fi
	"$(PY)" -m pip install -q --disable-pip-version-check --require-hashes -r '$(REPO)/requirements.lock'
	"$(PY)" -m pip install -q --disable-pip-version-check --no-deps -e '$(REPO)'
	cd "$(REPO)" && "$(PY)" -m infra.venv_check
	"$(PY)" -m pip check --disable-pip-version-check
	@touch "$@"

# Keeps every pin already in requirements.lock that still satisfies pyproject.toml and
# resolves only what is new; UPGRADE=1 moves every pin to the newest allowed release.
# uv comes from the lock itself: a `make venv` that stopped at the stale-lock check has
# already installed it.
lock: ## refresh requirements.lock from pyproject.toml + the test and bench extras (UPGRADE=1: newest versions)
	@if [[ ! -x "$(VENV)/bin/uv" ]]; then $(MAKE) --no-print-directory venv || true; fi
	cd "$(REPO)" && "$(VENV)/bin/uv" pip compile pyproject.toml --extra test --extra bench \
	    --universal --python-version 3.11 --generate-hashes $(if $(UPGRADE),--upgrade) \
	    --custom-compile-command 'make lock' --quiet -o requirements.lock

infra: ## start Kafka (localhost:9092) and the document store (localhost:27017)
	"$(REPO)/infra/kafka.sh" start
	"$(REPO)/infra/store.sh" start

topics: venv infra ## create/check the Kafka topics (python -m infra.topics)
	cd "$(REPO)" && "$(PY)" -m infra.topics

up: topics ## start everything in the background and print the addresses
	"$(REPO)/infra/services.sh" start
	@echo
	@echo "ActionItems is up:"
	@echo "  Kafka        $${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}"
	@echo "  store        $${MONGODB_URI:-mongodb://localhost:27017}"
	@echo "  command API  http://localhost:8000  (docs /docs)"
	@echo "  query API    http://localhost:8001  (docs /docs)"
	@echo "  projector    http://localhost:8002  (/healthz, /readyz, /metrics)"
	@echo "  logs         $(REPO)/.infra/logs/   ('make down' stops everything)"
	@echo
	@echo "Try it (tokens valid 24 h):"
	@cd "$(REPO)" && "$(PY)" -m infra.dev_keys --curl

down: ## stop the services, the store, Kafka and the test cluster (harmless twice)
	-"$(REPO)/infra/services.sh" stop
	-"$(REPO)/infra/store.sh" stop
	-"$(REPO)/infra/kafka.sh" stop
	-"$(REPO)/infra/kafka.sh" stop-cluster

status: ## show what runs
	-"$(REPO)/infra/kafka.sh" status
	-"$(REPO)/infra/store.sh" status
	-"$(REPO)/infra/services.sh" status

# The same three checks run as pre-commit hooks (.pre-commit-config.yaml); mypy checks
# the packages listed in pyproject.toml's [tool.mypy] `files`.
lint: venv ## ruff check, ruff format --check, mypy
	cd "$(REPO)" && "$(VENV)/bin/ruff" check .
	cd "$(REPO)" && "$(VENV)/bin/ruff" format --check .
	cd "$(REPO)" && "$(VENV)/bin/mypy"

# The docs pages' browser test drives Debian's chromium through chromedriver (selenium).
browser: ## install Debian's chromium and chromium-driver when missing (apt-get; root or sudo)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	    sudo=""; if [[ "$$(id -u)" -ne 0 ]]; then sudo="sudo"; fi; \
	    echo "installing chromium and chromium-driver (Debian packages)"; \
	    $$sudo apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver >/dev/null

test: topics lint browser ## the whole suite against real services (venv, infra, topics, lint, pytest)
	@mkdir -p "$(dir $(PYTEST_RC_FILE))"; rm -f "$(PYTEST_RC_FILE)"
	@cd "$(REPO)" && { rc=0; "$(PY)" -m pytest -q tests $(PYTEST_ARGS) || rc=$$?; \
	    echo "$$rc" > "$(PYTEST_RC_FILE)"; \
	    if [[ $$rc -eq 5 ]]; then echo "make: pytest collected no tests" >&2; fi; \
	    exit $$rc; }

# The reliability suite (tests/reliability, docs/reliability.md): every fault scenario on a
# broker, FerretDB and service processes of its own (loopback, free ports), never on the
# `make up` stack (its PostgreSQL is shared: a private FerretDB runs on it).
# RELIABILITY_ARGS: e.g. --only 1,4 or --soak-seconds 120.
RELIABILITY_ARGS ?=
.PHONY: test-reliability
test-reliability: venv ## fault scenarios under recorded load; table in reliability-results/ and docs/reliability.md
	"$(REPO)/infra/kafka.sh" fetch
	"$(REPO)/infra/store.sh" start
	"$(REPO)/infra/toxiproxy.sh" install
	cd "$(REPO)" && "$(PY)" -m tests.reliability --docs $(RELIABILITY_ARGS)

unit: venv ## unit tests only (no services needed)
	cd "$(REPO)" && "$(PY)" -m pytest -q tests/unit $(PYTEST_ARGS)

# Performance (issue 18), never part of `make test`: the product on the running `make up`
# stack (started when it does not answer) against baselines measured in the same run; wrk is
# installed when missing. Results in bench-results/, the table copied into docs/performance.md.
BENCH_ARGS ?=
bench: venv ## performance targets as ratios to same-run baselines (BENCH_ARGS="--quick --only command")
	@"$(REPO)/tests/benchmarks/install_wrk.sh"
	@"$(PY)" -c 'import matplotlib' 2>/dev/null \
	    || "$(PY)" -m pip install -q --disable-pip-version-check 'matplotlib>=3.8'
	cd "$(REPO)" && "$(PY)" -m tests.benchmarks.bench $(BENCH_ARGS)

clean-infra: down ## stop everything and delete .infra/ (data, logs, downloaded and built caches)
	rm -rf "$(REPO)/.infra"
