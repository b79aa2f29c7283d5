# Two commands on a fresh clone:  make demo   (main job, synthetic data, CPU)
#                                 make test   (the whole test suite)
# Each builds .venv first if needed, with the pinned CPU build of PyTorch.

VENV  ?= .venv
PY    := $(VENV)/bin/python
# The pinned CPU wheel; an unpinned torch pulls a multi-GB CUDA build. GPU users: TORCH="torch==2.13.0" from their CUDA index.
TORCH ?= torch==2.13.0

.PHONY: demo test lint env clean labelstudio datumaro

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

# Label Studio for the `serve` tests (tests/interchange/test_ix_backend.py finds it here), in a venv
# of its own: it pins many packages (Django among them) that must not meet ours. About 1 GB.
LSVENV       ?= .venv-labelstudio
LABEL_STUDIO ?= label-studio==1.23.2
# label-studio 1.23.2 asks for sentry-sdk>=2.16 but breaks on 3.0 at start-up (Unknown option
# 'send_default_pii'), which pip picks when it is out: kept below 3.

labelstudio: $(LSVENV)/.installed

# ... with an empty, migrated database for the tests to copy: Label Studio then starts in seconds.
$(LSVENV)/.installed:
	python3 -m venv $(LSVENV)
	$(LSVENV)/bin/python -m pip install --quiet --upgrade pip
	$(LSVENV)/bin/python -m pip install --quiet "$(LABEL_STUDIO)" "sentry-sdk<3"
	LATEST_VERSION_CHECK=false $(LSVENV)/bin/label-studio version --data-dir $(LSVENV)/migrated-data > $(LSVENV)/migrated-data.log 2>&1
	touch $@

# datumaro (the CVAT team's dataset library) for the CVAT conformance tests, in a venv of its own
# too (it would downgrade pillow and pull in pandas and OpenCV).
DMVENV   ?= .venv-datumaro
DATUMARO ?= datumaro==1.13.12

datumaro: $(DMVENV)/.installed

$(DMVENV)/.installed:
	python3 -m venv $(DMVENV)
	$(DMVENV)/bin/python -m pip install --quiet --upgrade pip
	$(DMVENV)/bin/python -m pip install --quiet "$(DATUMARO)"
	touch $@

clean:
	rm -rf $(VENV) $(LSVENV) $(DMVENV) sparselabel-demo .pytest_cache .ruff_cache
