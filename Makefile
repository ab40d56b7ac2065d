# geosam: two commands set everything up on a fresh machine.
#   make demo   create .venv if missing, install geosam, fetch the sample scene, then the analyst's workflow
#               on it: train on part of its reference polygons, classify, evaluate on the held-out part
#   make test   create .venv if missing, install geosam with dev extras, run the test suite
# Both are idempotent: a second call reuses .venv and the sample scenes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# glibc keeps large freed buffers instead of returning them to the OS on every call: ~2x faster
# SAM encoder on CPU (see docs/performance.md). The geosam CLI sets these itself too.
export MALLOC_MMAP_THRESHOLD_ ?= 4294967296
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296
export MALLOC_TOP_PAD_ ?= 1073741824
export MALLOC_ARENA_MAX ?= 1
# sam2 (a dev extra) builds no CUDA extension: geosam needs none, and the build needs nvcc
export SAM2_BUILD_CUDA ?= 0

.PHONY: demo test install install-dev samples lint typecheck bench clean help

help:
	@echo "make demo   - install, train on part of the sample scene's polygons, classify, evaluate (demo_out/)"
	@echo "make test   - install with dev extras and run the test suite"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - run the benchmarks in benchmarks/ (slow)"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

samples: $(VENV)/.installed
	$(PY) sample_tiles/fetch.py

demo: samples
	$(PY) pipelines/demo.py --out demo_out

test: $(VENV)/.installed-dev
	$(PY) sample_tiles/fetch.py --quiet
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check geosam tests benchmarks pipelines sample_tiles
	$(VENV)/bin/ruff format --check geosam tests benchmarks pipelines sample_tiles
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-dev samples
	$(PY) benchmarks/run_all.py

clean:
	rm -rf demo_out .pytest_cache .mypy_cache .ruff_cache
