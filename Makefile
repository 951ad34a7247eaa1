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
export HF_HUB_OFFLINE ?= 1

.DEFAULT_GOAL := help
.PHONY: help install system-deps demo test test-postgres lint fmt bench-center bench-curve bench-al bench-al-tune clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 required, got " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install Carve with its dev tools

# Debian packages the platform runs on: redis-server (the Celery broker). PostgreSQL for
# test-postgres is installed by scripts/with-postgres.sh when missing.
system-deps: ## apt-get install redis-server when it is missing (needs root)
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing redis-server (apt-get)..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server is missing: sudo apt-get install -y redis-server" >&2; exit 1; fi; }

$(VENV)/.demo-installed: $(STAMP)
	$(BIN)/python -m pip install -e ".[dev,demo]"
	touch $@

demo: $(VENV)/.demo-installed system-deps ## run Carve with a demo campaign on 127.0.0.1:$(PORT) until Ctrl-C (DATA=file.csv)
	$(BIN)/python -m labeling.demo --port $(PORT) $(if $(DATA),--data "$(abspath $(DATA))")

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict on learner/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: $(STAMP) system-deps lint ## lint, the test suite on SQLite (slow tests excluded), then test-postgres
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-postgres

test-postgres: $(STAMP) system-deps ## the platform tests (tests/labeling) on a throwaway PostgreSQL
	scripts/with-postgres.sh $(BIN)/python -m pytest tests/labeling -p no:cacheprovider

bench-center: $(STAMP) ## structured analytic centre vs cvxpy; prints speedups and objective gap
	$(BIN)/python -m bench.center

bench-curve: $(STAMP) ## labels to 98% on two spirals: Carve queries vs random sampling
	$(BIN)/python -m bench.curve

bench-al: $(STAMP) ## real data (SST-2, MR, IMDB): Carve vs AL baselines; QUICK=1 for a 15-min run
	DATA_DIR=$(DATA_DIR) CACHE_DIR=$(CACHE_DIR) $(BIN)/python -m bench.al $(if $(filter 1 yes true,$(QUICK)),--quick)

bench-al-tune: $(STAMP) ## Carve's settings on the tuning splits (SST-2 validation, MR train part)
	DATA_DIR=$(DATA_DIR) CACHE_DIR=$(CACHE_DIR) $(BIN)/python -m bench.al.tune

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/out
