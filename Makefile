# The two commands: `make demo` (the main job, offline, on the embedded model) and `make test`.
# Each creates .venv and installs what is missing, at the versions in constraints.txt.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test
demo: $(STAMP)
	$(VENV)/bin/magister demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pytest -q

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt 'torch==2.13.0' -e '.[dev]'
	touch $(STAMP)
