# Two commands on a fresh clone:  make demo   (main job, synthetic data, CPU)
#                                 make test   (the whole test suite)
# Each builds .venv first if needed, with the pinned CPU build of PyTorch.

VENV  ?= .venv
PY    := $(VENV)/bin/python
# The pinned CPU wheel; an unpinned torch pulls a multi-GB CUDA build. GPU users: TORCH="torch==2.13.0" from their CUDA index.
TORCH ?= torch==2.13.0

.PHONY: demo test lint env clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: env
	$(VENV)/bin/sparselabel demo

test: env
	$(PY) -m pytest

lint: env
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) sparselabel-demo .pytest_cache .ruff_cache
