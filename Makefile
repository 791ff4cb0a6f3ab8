# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast install lint bench repro clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is installed first, pinned, so pip takes the CPU build on this machine's disk.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/trainyard run

# Two workers, a test file each: much of the suite waits on servers and subprocesses. The
# slowest tests are listed at the end, to see what to trim when the suite grows.
test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The peers the benchmarks compare against (stable-baselines3) are a bench-only extra.
bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/window_loader.py
	$(BIN)/python bench/orchestration.py
	$(BIN)/python bench/env_throughput.py
	$(BIN)/python bench/rl_cartpole.py
	$(BIN)/python bench/text_bpc.py
	$(BIN)/python bench/text_lightning_overhead.py
	$(BIN)/python bench/dask_speedup.py
	$(BIN)/python bench/ddp_overhead.py
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/backtest.py

repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

clean:
	rm -rf .state data/forecast data/rl data/text
