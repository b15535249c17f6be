# fer-study: every step of the project as one make target. `make help` lists them.
#
# Python: a conda environment when one is active ($CONDA_PREFIX set, see environment.yml),
# otherwise the project's own .venv, created on first use. `make test` and `make reproduce`
# create the environment themselves, so they work on a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PROFILE ?= auto
#: the interpreter used to create .venv (3.11 or newer)
BASE_PYTHON ?= python3
ifdef CONDA_PREFIX
PYTHON := $(CONDA_PREFIX)/bin/python
else
PYTHON := .venv/bin/python
endif
# The stamp lives inside the environment: deleting the environment forgets it, and editing
# pyproject.toml makes it stale, so `make env` reinstalls exactly when needed.
ENV_STAMP := $(if $(CONDA_PREFIX),$(CONDA_PREFIX),.venv)/.fer-study-installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help env data smoke reproduce ship reports colab test test-fast lint demo clean

help: ## show this list
	@echo "usage: make <target> [PROFILE=auto|smoke|cpu|full]"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

env: $(ENV_STAMP) ## create .venv (unless a conda env is active) and install the project + dev tools

$(ENV_STAMP): pyproject.toml
ifndef CONDA_PREFIX
	@test -x $(PYTHON) || $(BASE_PYTHON) -m venv .venv
endif
	$(PYTHON) -m pip install --upgrade pip
	$(PYTHON) -m pip install -e '.[dev]'
	@touch $@

data: $(ENV_STAMP) ## find FER2013 (FER_DATA, data/raw, or Kaggle via kagglehub) and print its audit
	$(PYTHON) -m fer data

smoke: $(ENV_STAMP) ## the whole chain on generated data in a few minutes (reports in runs/smoke/reports)
	FER_REPORTS_DIR=$(CURDIR)/runs/smoke/reports $(PYTHON) -m fer reproduce --profile smoke

reproduce: $(ENV_STAMP) ## the study: the recipe in 02, then 03 and 04 (PROFILE=auto: full with a GPU, cpu without)
	$(PYTHON) -m fer reproduce --profile $(PROFILE)

# The shipped models are made by `make reproduce PROFILE=full` on one GPU (notebook 02 runs the full
# profile's recipe: three members side by side, their float16 ensemble, the lite distilled from it,
# the seed's CNN; times: docs/training.md) and replaced only by the explicit ship step below.
ship: $(ENV_STAMP) ## copy a reproduce run's ensemble and lite into fer/weights: make ship PROFILE=full
	$(PYTHON) -m fer ship --profile $(PROFILE)

reports: $(ENV_STAMP) ## render the already executed notebooks to HTML in reports/
	$(PYTHON) -m fer reports

# Standard library only (fer/reporting/colab.py), so a fresh clone can run it before `make env`.
colab: ## point pyproject's URL, the README's Colab links and the notebooks' setup cells at your fork: make colab REPO=owner/name
	@test -n "$(REPO)" || { echo "usage: make colab REPO=owner/name (your GitHub copy of this project)"; exit 2; }
	$(BASE_PYTHON) -m fer.reporting.colab --repo $(REPO)

test: $(ENV_STAMP) ## run the test suite (tests needing ../shared skip when it is absent)
	$(PYTHON) -m pytest

test-fast: $(ENV_STAMP) ## the test suite without the tests marked slow (a few minutes on 2 cores)
	$(PYTHON) -m pytest -m "not slow"

lint: $(ENV_STAMP) ## ruff, the layer contracts (import-linter, docs/architecture.md), notebooks committed without outputs
	$(PYTHON) -m ruff check .
	$(dir $(PYTHON))lint-imports --no-cache
	$(if $(wildcard notebooks/*.ipynb),$(PYTHON) -m nbstripout --verify notebooks/*.ipynb)

demo: $(ENV_STAMP) ## start the web app (offline, bundled weights) on http://127.0.0.1:5000
	$(PYTHON) -m fer serve

clean: ## delete caches and build files (keeps .venv, data/raw, runs/ and fer/weights)
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache build dist
	rm -f data/processed/*.npz
