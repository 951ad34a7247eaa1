# Carve: one command per task. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA_DIR ?= ../shared/data
CACHE_DIR ?= $(HOME)/.cache/carve/bench-al
QUICK ?=
PORT ?= 8000
DATA ?=
DEPTH ?=
export HF_HUB_OFFLINE ?= 1

.DEFAULT_GOAL := help
.PHONY: help install system-deps test-deps demo schema test test-postgres lint check fmt bench-center bench-curve bench-loop bench-faults bench-scale bench-al bench-al-tune screenshots clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 required, got " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install Carve with its dev tools

# Debian packages: redis-server (the Celery broker) for the platform; chromium for the browser
# tests, curl and jq for the README's API walkthrough that the tests run. PostgreSQL for
# test-postgres is installed by scripts/with-postgres.sh when missing.
NEED_RUN  := $(if $(shell command -v redis-server),,redis-server)
NEED_TEST := $(NEED_RUN) $(if $(wildcard /usr/bin/chromium),,chromium) \
	$(if $(shell command -v curl),,curl) $(if $(shell command -v jq),,jq)
define apt_install
	@if [ -n "$(strip $(1))" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing $(strip $(1)) (apt-get)..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	  else echo "Missing Debian packages: sudo apt-get install -y $(strip $(1))" >&2; exit 1; fi; fi
endef

system-deps: ## apt-get install redis-server when missing (needs root)
	$(call apt_install,$(NEED_RUN))

test-deps: ## apt-get install redis-server, chromium, curl and jq when missing (needs root)
	$(call apt_install,$(NEED_TEST))

$(VENV)/.demo-installed: $(STAMP)
	$(BIN)/python -m pip install -e ".[dev,demo]"
	touch $@

demo: $(VENV)/.demo-installed system-deps ## run Carve with a demo campaign until Ctrl-C (PORT=8000, DATA=file.csv)
	$(BIN)/python -m labeling.demo --port $(PORT) $(if $(DATA),--data "$(abspath $(DATA))")

lint: $(STAMP) ## ruff (lint + format check), mypy --strict on learner/, labeling/, config/ and carve_client/, import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint ## the inner loop: lint, then the learner's and the bench's unit tests (no services)
	$(BIN)/python -m pytest -q -x tests/learner tests/bench

fmt: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: $(STAMP) ## validate the OpenAPI schema of the REST API (fails on any warning)
	DJANGO_SETTINGS_MODULE=config.settings_test $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

test: $(STAMP) test-deps lint schema ## lint, schema, the test suite on SQLite (slow tests excluded), then test-postgres
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-postgres

test-postgres: $(STAMP) test-deps ## the platform tests (tests/labeling) on a throwaway PostgreSQL
	scripts/with-postgres.sh $(BIN)/python -m pytest tests/labeling -p no:cacheprovider

bench-center: $(STAMP) ## structured analytic centre vs cvxpy; prints speedups and objective gap
	$(BIN)/python -m bench.center

bench-curve: $(STAMP) ## labels to 98% on two spirals: Carve queries vs random sampling (DEPTH=3)
	$(BIN)/python -m bench.curve $(if $(DEPTH),--depth $(DEPTH))

bench-loop: $(STAMP) system-deps ## 20 simulated annotators over HTTP, 1,000 labels: latency, duplicates, lag
	$(BIN)/python -m bench.loop

bench-faults: $(STAMP) system-deps ## 8 annotators over HTTP while the worker is killed, Redis stopped 30 s and PostgreSQL restarted: lost labels, 5xx, catch-up
	scripts/with-postgres.sh $(BIN)/python -m bench.faults

bench-scale: $(STAMP) system-deps ## N = 100k and 1M items on PostgreSQL: import, embedding, learner update, next item, pages, DB size (QUICK=1: N = 5,000)
	scripts/with-postgres.sh $(BIN)/python -m bench.scale $(if $(filter 1 yes true,$(QUICK)),--quick)

screenshots: $(STAMP) test-deps ## refresh the README's screenshots in docs/img (real Chromium, a labeled demo campaign)
	CARVE_SCREENSHOTS=$(CURDIR)/docs/img $(BIN)/python -m pytest -q -p no:cacheprovider tests/labeling/test_screenshots.py

bench-al: $(STAMP) ## real data (SST-2, MR, IMDB, AG News): Carve vs AL baselines; QUICK=1 for a short run
	DATA_DIR=$(DATA_DIR) CACHE_DIR=$(CACHE_DIR) $(BIN)/python -m bench.al $(if $(filter 1 yes true,$(QUICK)),--quick)

bench-al-tune: $(STAMP) ## Carve's settings on the tuning splits (SST-2 validation, MR and AG News train parts)
	DATA_DIR=$(DATA_DIR) CACHE_DIR=$(CACHE_DIR) $(BIN)/python -m bench.al.tune

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/out
