# gnnkit: the two commands a newcomer needs are `make demo` and `make test`.
#
#   make demo                 set up .venv, obtain Cora, run the main benchmark
#   make test                 set up .venv with the dev and scatter extras, run ruff and pytest
#   make docs                 build the documentation site strictly (warnings fail) into
#                             docs/_build/html; the docs extra is installed on first use
#   make typecheck            mypy on the package (its scope is in pyproject.toml)
#   make TORCH="torch==2.5.1+cu121 --index-url https://download.pytorch.org/whl/cu121" test
#                             choose your own torch build (the default is the CPU wheel)
#
# Both targets are idempotent: a second run reuses the virtual environment.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Stamps record what has been installed; they are rebuilt when pyproject.toml changes.
BASE_STAMP := $(VENV)/.gnnkit-base
DEV_STAMP := $(VENV)/.gnnkit-dev
DOCS_STAMP := $(VENV)/.gnnkit-docs
# Holds the TORCH value last installed; rewritten (and so newer) only when TORCH changes.
TORCH_STAMP := $(VENV)/.gnnkit-torch
# -W: warnings are errors; --keep-going: report all of them; -n: every unresolved reference;
# -E: a fresh environment, so a page's warnings come back on every build (an incremental build
# would stay silent about pages it did not reread).
SPHINXOPTS ?= -W --keep-going -n -E

.PHONY: demo test lint format typecheck docs install dev clean-venv FORCE

demo: $(BASE_STAMP)
	$(BIN)/gnnkit demo

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

docs: $(DOCS_STAMP)
	$(BIN)/python -m sphinx -b html $(SPHINXOPTS) docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

install: $(BASE_STAMP)

dev: $(DEV_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(TORCH_STAMP): FORCE | $(BIN)/python
	@echo '$(TORCH)' | cmp -s - $@ || echo '$(TORCH)' > $@

$(BASE_STAMP): pyproject.toml $(TORCH_STAMP)
	$(PIP) install --quiet "$(firstword $(TORCH))" $(wordlist 2,99,$(TORCH))
	$(PIP) install --quiet -e .
	touch $@

# torch-scatter has no wheel on PyPI: it compiles against the installed torch (about 7 minutes on
# 2 cores), so it is built without build isolation, after torch, and only when it is missing.
$(DEV_STAMP): $(BASE_STAMP)
	$(PIP) install --quiet -e ".[dev]"
	$(BIN)/python -c "import torch_scatter" 2>/dev/null || \
		MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install --no-build-isolation "torch-scatter>=2.1"
	touch $@

$(DOCS_STAMP): $(BASE_STAMP)
	$(PIP) install --quiet -e ".[docs]"
	touch $@

clean-venv:
	rm -rf $(VENV)
