# WaveFlow energy reproduction. `make reproduce` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
DATA ?=
PORT ?= 8888

.DEFAULT_GOAL := help
.PHONY: help venv test test-unit test-notebooks test-docs docs reproduce figures bench bench-breakdown gpu-check lint lab clean

help: ## List the targets
	@echo "Usage: make <target> [PROFILE=quick|medium|paper] [DATA=/path/LJSpeech-1.1]"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

# The environment is rebuilt when the pins change. torch is pinned to an exact CPU-compatible
# release in pyproject.toml; on a GPU machine install the CUDA build of it first (README).
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned dependencies into $(VENV) ..."
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create or refresh the virtual environment (.venv)

test: lint test-docs test-unit test-notebooks ## Lint, the docs build, unit tests, then every notebook under nbval (<= 10 min on 2 CPU cores)

test-unit: $(STAMP) ## Unit tests only
	$(PY) -m pytest -q tests

test-notebooks: $(STAMP) ## Notebooks only, under nbval (outputs go to build/test-outputs/)
	WAVEFLOW_FIGURES=$(CURDIR)/build/test-outputs/figures WAVEFLOW_RESULTS=$(CURDIR)/build/test-outputs/results \
	  WAVEFLOW_RUNS=$(CURDIR)/build/test-outputs/runs $(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:python notebooks/

test-docs: $(STAMP) ## Build the docs site strictly (a broken link, a missing page or a stale CLI page fails)
	$(PY) -m waveflow cli-reference --check docs/cli.md
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

docs: $(STAMP) ## Regenerate the command-line page and build the docs site into build/site/
	$(PY) -m waveflow cli-reference --out docs/cli.md
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site
	@echo "Docs: build/site/index.html"

reproduce: $(STAMP) ## Run all notebooks with papermill (PROFILE=quick|medium|paper, DATA=LJSpeech folder)
	$(PY) -m waveflow reproduce --profile $(PROFILE) $(if $(DATA),--data "$(DATA)")

figures: $(STAMP) ## Replace the committed figures/ with a profile's run (PROFILE=medium), saying what changed
	$(PY) -m waveflow figures --profile $(PROFILE)

bench: $(STAMP) ## Speed/overhead benchmarks (synthesis vs peak, meter overhead)
	$(PY) -m waveflow bench

bench-breakdown: $(STAMP) ## Where the time goes: per-op profiles of synthesis and a training step -> build/results/breakdown*.csv
	$(PY) -m waveflow bench --breakdown

gpu-check: $(STAMP) ## CUDA paths on this machine's GPU (< 8 min) -> build/results/gpu_check.csv; no GPU: says so, exit 0
	$(PY) -m waveflow gpu-check

lint: $(STAMP) ## ruff (pinned; E, F, I, B, UP; 120 columns) and the notebook-source check
	$(VENV)/bin/ruff check waveflow tests examples
	$(PY) -m waveflow check-notebooks

lab: $(STAMP) ## Open JupyterLab on notebooks/ with the project's environment
	$(PY) -m pip install --quiet -c requirements.lock jupyterlab==4.6.6
	$(PY) -m ipykernel install --user --name waveflow-energy --display-name "waveflow-energy (.venv)"
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --port=$(PORT) $(if $(filter 0,$(shell id -u)),--allow-root)

clean: ## Remove build/ outputs (never touches data/ or figures/)
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
