# fer-study: every step of the project as one make target. `make help` lists them.
#
# Python: a conda environment when one is active ($CONDA_PREFIX set, see environment.yml),
# otherwise the project's own .venv, created on first use. `make test` and `make reproduce`
# create the environment themselves, so they work on a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PROFILE ?= cpu
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

.PHONY: help env data smoke reproduce ensemble-full reports colab test test-fast lint demo clean

help: ## show this list
	@echo "usage: make <target> [PROFILE=smoke|cpu|full]"
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

reproduce: $(ENV_STAMP) ## train, tune, evaluate and execute every notebook (PROFILE=cpu by default)
	$(PYTHON) -m fer reproduce --profile $(PROFILE)

# The models shipped since 2026-11-26, trained on one GPU (an H200, Keras 3 on JAX): three seeds of
# the full profile's main block (the 1.6 M ResNet, 200 epochs, mixup 0.2, AdamW 2e-3 / 0.05),
# averaged and shipped as fer/weights/main.keras; then its lite block (the 92 k net, 120 epochs)
# learning online from that file (params/full-distill-hp.json: its targets are 0.2 x label + 0.8 x
# the teacher's probabilities for each augmented batch; the teacher's sha256 is in the lite's card;
# seed 1 is the shipped run). `make -j4 ensemble-full` trains the three members side by side, then
# the lite (times: docs/performance.md); each finished run is kept and reused, the lite only while
# its teacher file is the same (the last line reuses the lite run it trained and ships it).
FULL_MEMBERS := runs/full/member200-s0 runs/full/member200-s1 runs/full/member200-s2
runs/full/member200-s%/card.json: | $(ENV_STAMP)
	$(PYTHON) -m fer train --profile full --seed $* --run-dir $(@D)
runs/full/main-ensemble/card.json: $(addsuffix /card.json,$(FULL_MEMBERS))
	$(PYTHON) -m fer ensemble $(FULL_MEMBERS) --profile full --float16-weights --ship --run-dir $(@D)
FULL_LITE := $(PYTHON) -m fer train --profile full --model lite --hp params/full-distill-hp.json --seed 1 --run-dir runs/full/lite-distill-s1
runs/full/lite-distill-s1/card.json: runs/full/main-ensemble/card.json
	$(FULL_LITE)
ensemble-full: runs/full/lite-distill-s1/card.json ## retrain the shipped main and lite models on a GPU (full recipe) and ship them
	$(FULL_LITE) --ship

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
