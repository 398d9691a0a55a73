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
	@grep -E '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install umadapt with its dev extra (CPU torch via the torch<2.14 pin)

demo: $(STAMP) ## Train + test source-only and oracle on SynthRooms (1 seed, CPU, a few minutes) and print the table
	$(BIN)/python -m umadapt.benchmark synthrooms --methods source_only oracle --seeds 0 \
		--epochs 6 --predict --out logs/demo/results.md --runs-dir logs/demo

test: $(STAMP) ## Run the test suite
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) ## Run the test suite without the slow end-to-end tests
	$(BIN)/python -m pytest -q -m "not slow"

bench-synthrooms: $(STAMP) ## SynthRooms benchmark: every method x 3 seeds -> results/synthrooms.md
	$(BIN)/python -m umadapt.benchmark synthrooms --seeds $(SEEDS) $(BENCH_ARGS) \
		--out results/synthrooms.md --runs-dir results/runs/synthrooms

.PHONY: bench-digits
# The digit network is small: one thread per run is faster than two fighting over a shared CPU.
DIGITS_THREADS ?= 1
bench-digits: $(STAMP) ## Digits -> Digits-M: source-only, DANN, oracle x 3 seeds (CPU, ~15 min) -> results/digits.md
	OMP_NUM_THREADS=$(DIGITS_THREADS) $(BIN)/python -m umadapt.benchmark digits --seeds $(SEEDS) $(BENCH_ARGS) \
		--out results/digits.md --runs-dir results/runs/digits

.PHONY: bench-speed
bench-speed: $(STAMP) ## Lightning vs bare PyTorch step time, data pipeline throughput, peak memory -> results/speed.md
	$(BIN)/python -m umadapt.bench_speed --out results/speed.md

sweep-%: $(STAMP) ## Validate, create and start the W&B sweep experiments/sweeps/<name>.yaml (needs `wandb login`)
	$(BIN)/python -m umadapt.sweeps experiments/sweeps/$*.yaml

.PHONY: bench-mtl
bench-mtl: $(STAMP) ## Multi-task learning on SynthRooms: 11 configs x 3 seeds (~40 min on 2 cores) -> results/mtl.md
	$(BIN)/python -m umadapt.bench_mtl --seeds $(SEEDS) --out results/mtl.md --runs-dir results/runs/mtl

# Real-dataset benchmarks: your own copies of the data under DATA_ROOT (docs/real_datasets.md); nothing is downloaded.
# They need a GPU for sensible run times. BENCH_ARGS passes extra options, e.g. BENCH_ARGS="--methods source_only".
DATA_ROOT ?=
BENCH_ARGS ?=
REAL_BENCH = DATA_ROOT="$(DATA_ROOT)" $(BIN)/python -m umadapt.benchmark
PAIR_BENCH = DATA_ROOT="$(DATA_ROOT)" $(BIN)/python -m umadapt.benchmark_pairs
.PHONY: check-data-root bench-gta5-cityscapes bench-synthia-cityscapes bench-nyud bench-sim-nyud bench-office31 bench-officehome

check-data-root:
	@test -n "$(DATA_ROOT)" || { echo "DATA_ROOT is not set: run e.g. 'make $(MAKECMDGOALS) DATA_ROOT=/data' (see docs/real_datasets.md)"; exit 2; }

bench-gta5-cityscapes: $(STAMP) check-data-root ## GTA5 -> Cityscapes segmentation (DATA_ROOT=...) -> results/gta5_cityscapes.md
	$(REAL_BENCH) gta5_cityscapes --seeds $(SEEDS) $(BENCH_ARGS) --out results/gta5_cityscapes.md --runs-dir results/runs/gta5_cityscapes

bench-synthia-cityscapes: $(STAMP) check-data-root ## SYNTHIA -> Cityscapes seg + depth (DATA_ROOT=...) -> results/synthia_cityscapes.md
	$(REAL_BENCH) synthia_cityscapes --seeds $(SEEDS) $(BENCH_ARGS) --out results/synthia_cityscapes.md --runs-dir results/runs/synthia_cityscapes

bench-nyud: $(STAMP) check-data-root ## NYUD-v2 multi-task single-domain reference (DATA_ROOT=...) -> results/nyud.md
	$(REAL_BENCH) nyud --seeds $(SEEDS) $(BENCH_ARGS) --out results/nyud.md --runs-dir results/runs/nyud

bench-sim-nyud: $(STAMP) check-data-root ## Your simulator (folder format) -> NYUD-v2 (DATA_ROOT=...) -> results/sim_nyud.md
	$(REAL_BENCH) sim_nyud --seeds $(SEEDS) $(BENCH_ARGS) --out results/sim_nyud.md --runs-dir results/runs/sim_nyud

bench-office31: $(STAMP) check-data-root ## Office-31, all six pairs + average (DATA_ROOT=...) -> results/office31/summary.md
	$(PAIR_BENCH) office31 --seeds $(SEEDS) $(BENCH_ARGS) --out-dir results/office31 --runs-dir results/runs

bench-officehome: $(STAMP) check-data-root ## Office-Home, all twelve pairs + average (DATA_ROOT=...) -> results/officehome/summary.md
	$(PAIR_BENCH) officehome --seeds $(SEEDS) $(BENCH_ARGS) --out-dir results/officehome --runs-dir results/runs

clean: ## Remove logs, caches and build outputs (keeps .venv and results/)
	rm -rf logs build dist *.egg-info .pytest_cache wandb
