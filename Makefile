PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench clean

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

# On a shared, loaded CPU run `OMP_WAIT_POLICY=PASSIVE make bench` (see docs/performance.md)
bench: setup
	mkdir -p runs
	$(BIN)/meshprop bench --output runs/bench.json

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info .pytest_cache
