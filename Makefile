# The two commands for a fresh machine (see README.md):
#   make run    set up, then run every example on the best available backend
#   make test   set up, then run the test suite (CPU; GPU tests skip without CUDA)
PY ?= python3

.PHONY: setup run test bench-cpu

setup:
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"

run: setup
	$(PY) examples/run_all.py

test: setup
	$(PY) -m pytest -q -n 2 tests

bench-cpu: setup
	$(PY) benchmarks/cpu.py
