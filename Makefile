# Two commands on a fresh machine: `make train` and `make test`. Both set up what is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   := data/digits

.PHONY: install data train test lint clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The venv is (re)built when missing or older than requirements.txt / pyproject.toml.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)  ## build .venv with everything the jobs and tests need

$(DATA)/manifest.json: $(STAMP)
	$(PY) jobs/prepare_data.py --digits --out $(DATA)

data: $(DATA)/manifest.json  ## prepare the embedded default dataset (scikit-learn digits) into data/digits

train: data  ## train the full AlexNet on the embedded default, on the local CPUs
	$(PY) jobs/train.py --preset digits

test: $(STAMP)  ## run the test suite
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check alexnet jobs tests

clean:  ## remove prepared data, runs and the MLflow store (keeps .venv)
	rm -rf data runs mlruns mlruns.db
