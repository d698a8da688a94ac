# The commands people type. `make demo` and `make test` work on a fresh machine with Python + pip.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch 2.13.0 is on disk on the project machines; elsewhere override, e.g.
# `make setup TORCH_SPEC=torch` (GPU machines usually bring their own torch).
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo baselines-demo test test-all wheel-smoke lint format bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,retrieval,train,quant,serve,browser]"
	touch $@

setup: $(BIN)/.installed

demo: setup  ## the main job: ML-100K -> retriever -> LoRA -> top-5 with reasons -> serve on :8000
	$(BIN)/llmrec demo

baselines-demo: setup  ## prepare ML-100K and evaluate the baselines under both protocols
	$(BIN)/llmrec quickstart

test: setup  ## the default suite: offline, CPU, a few minutes
	$(BIN)/python -m pytest -q

test-all: setup  ## includes slow tests
	$(BIN)/python -m pytest -q -m "slow or not slow"

wheel-smoke:  ## build the wheel, install it in a fresh venv outside the checkout, prepare + serve
	PY=$(PY) TORCH_SPEC="$(TORCH_SPEC)" .ci/wheel-smoke

lint: setup
	$(BIN)/ruff check llmrec tests bench
	$(BIN)/ruff format --check llmrec tests bench

format: setup
	$(BIN)/ruff format llmrec tests bench
	$(BIN)/ruff check --fix llmrec tests bench

bench: setup  ## baselines on ML-100K under both protocols -> docs/baselines.md
	$(BIN)/python bench/baselines.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
