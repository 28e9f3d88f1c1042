# `make demo` and `make test` are the two commands README.md opens with: each sets up
# everything it needs (a virtual environment in .venv) on a fresh machine first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test clean-demo

$(BIN)/ephys: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/ephys

# Synthetic 30-minute, 64-channel, 32 kHz recording -> a row in sheet.csv -> polls until its figures are published.
demo: setup
	$(BIN)/ephys demo

test: setup
	$(BIN)/pytest -q --durations=25

clean-demo:
	rm -rf raw/demo-rec1 results/demo-rec1 logs/demo-rec1 published/demo-mouse state sheet.csv
