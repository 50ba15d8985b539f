PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench fuzz clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/meshprop train --out runs/default

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

# Property-based fuzzing (hypothesis): 2,000 examples per property, over 10,000 in all
fuzz: setup
	MESHPROP_HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q \
		tests/test_fuzz.py tests/test_fuzz_checkpoint.py --hypothesis-show-statistics

# On a shared, loaded CPU run `OMP_WAIT_POLICY=PASSIVE make bench` (see docs/performance.md)
bench: setup
	mkdir -p runs
	$(BIN)/meshprop bench --output runs/bench.json

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info .pytest_cache
