# umadapt: `make help` lists the targets. Every target builds its own virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEEDS ?= 0 1 2
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1
# Where the bench-* targets write their tables (OUT_DIR) and run folders (RUNS_DIR), e.g. OUT_DIR=/tmp/check for a
# short check that leaves results/ alone; BENCH_ARGS passes extra options (see python -m umadapt.bench run --help).
OUT_DIR ?= results
# Runs trained side by side as independent processes (each with cpu_count // JOBS torch threads); see docs/scaling.md.
JOBS ?= 2
RUNS_DIR ?= $(OUT_DIR)/runs
DEMO_DIR ?= logs/demo
BENCH = $(BIN)/python -m umadapt.bench
# The tests run on TEST_WORKERS pytest-xdist processes, each with one torch thread (tests/conftest.py): one pytest
# process left one of CI's 2 cores idle (~19 min, close to CI's 20-minute limit). --dist worksteal: a worker that runs
# out of tests takes some of the other's, so the minute-long end-to-end tests do not leave a core idle at the end.
# TEST_WORKERS=0 runs them in this process (e.g. to debug with pdb).
TEST_WORKERS ?= 2
PYTEST = $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

.DEFAULT_GOAL := help
.PHONY: help setup demo lint test test-fast bench-synthrooms clean

help: ## List the targets
	@if [ -t 1 ]; then on='\033[36m'; off='\033[0m'; else on=''; off=''; fi; \
	grep -E '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "}; {printf "  %s%-18s%s %s\n", on, $$1, off, $$2}'

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install umadapt with its dev extra (CPU torch via the torch<2.14 pin)

demo: $(STAMP) ## Train + test source-only and oracle on SynthRooms (1 seed, CPU, a few minutes) and print the table
	$(BENCH) run synthrooms --methods source_only oracle --seeds 0 --jobs $(JOBS) \
		--epochs 6 --predict $(BENCH_ARGS) --out $(DEMO_DIR)/results.md --runs-dir $(DEMO_DIR)

lint: $(STAMP) ## ruff: lint and formatting check (line length 120, configured in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) lint ## Run the linter, then the test suite (on TEST_WORKERS=2 processes)
	$(PYTEST)

test-fast: $(STAMP) ## Run the test suite without the slow end-to-end tests
	$(PYTEST) -m "not slow"

bench-synthrooms: $(STAMP) ## SynthRooms benchmark: every method x 3 seeds -> results/synthrooms.md
	$(BENCH) run synthrooms --seeds $(SEEDS) --jobs $(JOBS) $(BENCH_ARGS) \
		--out $(OUT_DIR)/synthrooms.md --runs-dir $(RUNS_DIR)/synthrooms

.PHONY: bench-digits
bench-digits: $(STAMP) ## Digits -> Digits-M: source-only, DANN, oracle x 3 seeds (CPU, ~15 min) -> results/digits.md
	$(BENCH) run digits --seeds $(SEEDS) --jobs $(JOBS) $(BENCH_ARGS) \
		--out $(OUT_DIR)/digits.md --runs-dir $(RUNS_DIR)/digits

.PHONY: bench-weak
bench-weak: $(STAMP) ## Weak-label adaptation on SynthRooms' rich classes: 10 rows x 3 seeds (~55 min on 2 cores) -> results/synthrooms_weak.md
	$(BENCH) run synthrooms_weak --seeds $(SEEDS) --jobs $(JOBS) $(BENCH_ARGS) \
		--out $(OUT_DIR)/synthrooms_weak.md --runs-dir $(RUNS_DIR)/synthrooms_weak

.PHONY: bench-speed
bench-speed: $(STAMP) ## Lightning vs bare PyTorch step time, data pipeline throughput, peak memory -> results/speed.md
	$(BENCH) speed $(BENCH_ARGS) --out $(OUT_DIR)/speed.md

sweep-%: $(STAMP) ## Validate, create and start the W&B sweep experiments/sweeps/<name>.yaml (needs `wandb login`)
	$(BIN)/python -m umadapt.sweeps experiments/sweeps/$*.yaml

.PHONY: bench-mtl
bench-mtl: $(STAMP) ## Multi-task learning on SynthRooms: 18 configs x 3 seeds (~40 min on 2 cores) -> results/mtl.md
	$(BENCH) mtl --seeds $(SEEDS) --jobs $(JOBS) $(BENCH_ARGS) --out $(OUT_DIR)/mtl.md --runs-dir $(RUNS_DIR)/mtl

.PHONY: bench-dynamic
bench-dynamic: $(STAMP) ## Controllable dynamic multi-task nets (DYMU) vs baselines over preferences x budgets, SynthRooms + digits, 3 seeds (~1 h on 2 cores) -> results/dynamic.md
	$(BENCH) dynamic --seeds $(SEEDS) --jobs $(JOBS) $(BENCH_ARGS) --out $(OUT_DIR)/dynamic.md \
		--runs-dir $(RUNS_DIR)/dynamic

# SELECT_ARGS passes options to both selections, e.g. SELECT_ARGS=--resume (python -m umadapt.bench select --help).
SELECT_ARGS ?=
.PHONY: bench-selection
bench-selection: $(STAMP) ## Label-free model selection: Digits DANN, SynthRooms UM-Adapt, DANN and self-training grids x 3 seeds (~2.5 h) -> results/selection_*.md
	$(BENCH) select experiments/selection/digits_dann.yaml --seeds $(SEEDS) --jobs $(JOBS) $(SELECT_ARGS) \
		--out $(OUT_DIR)/selection_digits.md --runs-dir $(RUNS_DIR)/selection_digits
	$(BENCH) select experiments/selection/synthrooms_umadapt.yaml --seeds $(SEEDS) --jobs $(JOBS) $(SELECT_ARGS) \
		--out $(OUT_DIR)/selection_synthrooms.md --runs-dir $(RUNS_DIR)/selection_synthrooms
	$(BENCH) select experiments/selection/synthrooms_dann.yaml --seeds $(SEEDS) --jobs $(JOBS) $(SELECT_ARGS) \
		--out $(OUT_DIR)/selection_synthrooms_dann.md --runs-dir $(RUNS_DIR)/selection_synthrooms_dann
	$(BENCH) select experiments/selection/synthrooms_self_training.yaml --seeds $(SEEDS) --jobs $(JOBS) $(SELECT_ARGS) \
		--out $(OUT_DIR)/selection_synthrooms_self_training.md --runs-dir $(RUNS_DIR)/selection_synthrooms_self_training

# Real-dataset benchmarks: your own copies of the data under DATA_ROOT (docs/real_datasets.md); nothing is downloaded.
# They need a GPU for sensible run times. BENCH_ARGS passes extra options, e.g. BENCH_ARGS="--methods source_only".
DATA_ROOT ?=
BENCH_ARGS ?=
REAL_BENCH = DATA_ROOT="$(DATA_ROOT)" $(BENCH) run
PAIR_BENCH = DATA_ROOT="$(DATA_ROOT)" $(BENCH) pairs
.PHONY: check-data-root bench-gta5-cityscapes bench-synthia-cityscapes bench-nyud bench-sim-nyud bench-office31 bench-officehome

check-data-root:
	@test -n "$(DATA_ROOT)" || { echo "DATA_ROOT is not set: run e.g. 'make $(MAKECMDGOALS) DATA_ROOT=/data' (see docs/real_datasets.md)"; exit 2; }

bench-gta5-cityscapes: $(STAMP) check-data-root ## GTA5 -> Cityscapes segmentation (DATA_ROOT=...) -> results/gta5_cityscapes.md
	$(REAL_BENCH) gta5_cityscapes --seeds $(SEEDS) $(BENCH_ARGS) --out $(OUT_DIR)/gta5_cityscapes.md --runs-dir $(RUNS_DIR)/gta5_cityscapes

bench-synthia-cityscapes: $(STAMP) check-data-root ## SYNTHIA -> Cityscapes seg + depth (DATA_ROOT=...) -> results/synthia_cityscapes.md
	$(REAL_BENCH) synthia_cityscapes --seeds $(SEEDS) $(BENCH_ARGS) --out $(OUT_DIR)/synthia_cityscapes.md --runs-dir $(RUNS_DIR)/synthia_cityscapes

bench-nyud: $(STAMP) check-data-root ## NYUD-v2 multi-task single-domain reference (DATA_ROOT=...) -> results/nyud.md
	$(REAL_BENCH) nyud --seeds $(SEEDS) $(BENCH_ARGS) --out $(OUT_DIR)/nyud.md --runs-dir $(RUNS_DIR)/nyud

bench-sim-nyud: $(STAMP) check-data-root ## Your simulator (folder format) -> NYUD-v2 (DATA_ROOT=...) -> results/sim_nyud.md
	$(REAL_BENCH) sim_nyud --seeds $(SEEDS) $(BENCH_ARGS) --out $(OUT_DIR)/sim_nyud.md --runs-dir $(RUNS_DIR)/sim_nyud

bench-office31: $(STAMP) check-data-root ## Office-31, all six pairs + average (DATA_ROOT=...) -> results/office31/summary.md
	$(PAIR_BENCH) office31 --seeds $(SEEDS) $(BENCH_ARGS) --out-dir $(OUT_DIR)/office31 --runs-dir $(RUNS_DIR)

bench-officehome: $(STAMP) check-data-root ## Office-Home, all twelve pairs + average (DATA_ROOT=...) -> results/officehome/summary.md
	$(PAIR_BENCH) officehome --seeds $(SEEDS) $(BENCH_ARGS) --out-dir $(OUT_DIR)/officehome --runs-dir $(RUNS_DIR)

clean: ## Remove logs, caches and build outputs (keeps .venv and results/)
	rm -rf logs build dist *.egg-info .pytest_cache wandb

.PHONY: clean-cache
clean-cache: $(STAMP) ## Remove the SynthRooms disk cache of rendered samples (UMADAPT_CACHE_DIR, default ~/.cache/umadapt)
	$(BIN)/python -m data_modules.synthrooms --clear-cache
