PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint docs bench fuzz clean data

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/meshprop train --out runs/default --overwrite

# Both cores, one torch and one BLAS thread per worker (tests/conftest.py); the modules that
# share one module-scoped fixture run on one worker (tests/conftest.py's scheduler).  Bytecode
# is written even where the environment says not to (PYTHONDONTWRITEBYTECODE): the workers and
# the twenty-odd processes the tests start then compile the sources once, not each on its own.
PYTEST_PARALLEL := -n 2 --dist loadgroup
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest

test: setup
	$(PYTEST) -q $(PYTEST_PARALLEL) --durations=15

# The quick tier: no process started (but git, for run provenance), no kill/resume, no wheel
# build, no documentation page's code blocks, no test marked slow (about 80 s of CPU in all,
# each worker's start-up and collection, about 11 s, included: under 45 s on two free cores)
test-fast: setup
	$(PYTEST) -q $(PYTEST_PARALLEL) -m "not slow and not subprocess and not docs" --durations=10

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

# The documentation site (mkdocs.yml: Material theme, API reference from the docstrings) into
# site/, in strict mode: a broken link, a missing anchor or a bad reference fails the build
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Property-based fuzzing (hypothesis): 2,000 examples per property, over 10,000 in all
fuzz: setup
	MESHPROP_HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q \
		tests/test_fuzz.py tests/test_fuzz_checkpoint.py --hypothesis-show-statistics

# On a shared, loaded CPU run `OMP_WAIT_POLICY=PASSIVE make bench` (see docs/performance.md)
bench: setup
	mkdir -p runs
	$(BIN)/meshprop bench --output runs/bench.json

clean:
	rm -rf $(VENV) runs build site *.egg-info src/*.egg-info .pytest_cache

# Fashion-MNIST's four IDX files for `meshprop reproduce fashion-mnist` (Debian's package puts them
# in /usr/share/datasets/fashion-mnist). Elsewhere: put train-images-idx3-ubyte, train-labels-
# idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (plain or .gz) in a directory and
# pass --data-dir DIR.
data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST is installed in /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update && $$SUDO apt-get install -y dataset-fashion-mnist; \
	else \
		echo "apt-get is not available: download the four Fashion-MNIST IDX files"; \
		echo "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,"; \
		echo "t10k-labels-idx1-ubyte, plain or .gz) from the dataset's authors into a directory"; \
		echo "and pass it as: meshprop reproduce fashion-mnist --data-dir DIR"; \
		exit 1; \
	fi
