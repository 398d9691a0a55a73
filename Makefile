# umadapt: `make help` lists the targets. Every target builds its own virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEEDS ?= 0 1 2
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-fast bench-synthrooms clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install umadapt with its dev extra (CPU torch via the torch<2.14 pin)

demo: $(STAMP) ## Train + test source-only and oracle on SynthRooms (1 seed, CPU, a few minutes) and print the table
	$(BIN)/python -m umadapt.benchmark synthrooms --methods source_only oracle --seeds 0 \
		--epochs 6 --out results/demo.md --runs-dir logs/demo

test: $(STAMP) ## Run the test suite
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) ## Run the test suite without the slow end-to-end tests
	$(BIN)/python -m pytest -q -m "not slow"

bench-synthrooms: $(STAMP) ## SynthRooms benchmark: every method x 3 seeds -> results/synthrooms.md
	$(BIN)/python -m umadapt.benchmark synthrooms --methods source_only oracle --seeds $(SEEDS) \
		--out results/synthrooms.md --runs-dir results/runs/synthrooms

clean: ## Remove logs, caches and build outputs (keeps .venv and results/)
	rm -rf logs build dist *.egg-info .pytest_cache wandb
