# Two commands on a fresh machine: `make demo` (main job) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# three pytest workers (pytest-xdist), each module's tests on one of them (tests/conftest.py): on 2 cores the full
# suite took 19:54 and 20:15 (three workers, whole modules, Ray's trials at nice 0; tests wait on processes, clusters
# and servers), 36:35 (serial, before)
PYTEST_WORKERS ?= 3
XDIST := -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: install test test-fast lint demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned first (here pip's configuration finds the CPU wheel on disk; see README for a stock machine).
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]' torch==2.13.0
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check automed tests bench
	$(VENV)/bin/ruff format --check automed tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest $(XDIST) $(PYTEST_ARGS)

# lint, then the tests not marked slow (no training runs, sweeps or exports): under 3 minutes on 2 CPU cores
test-fast: lint
	$(VENV)/bin/pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/automed demo --output demo_work --budget 5m

clean:
	rm -rf demo_work .pytest_cache .mypy_cache .ruff_cache
