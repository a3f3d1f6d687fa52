# iot-custom-auth-workbook: every target bootstraps .venv from requirements.txt when it is missing or stale.
# Plain commands for a machine without make are in README.md.
SHELL := /bin/bash
.SHELLFLAGS := -o errexit -o pipefail -o nounset -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Tests and headless runs use their own sandbox home and workbook state, never the learner's.
RUN_ENV := IOT_SANDBOX_HOME=$(CURDIR)/build/sandbox WORKBOOK_STATE_DIR=$(CURDIR)/build/workbook-state

.PHONY: help venv run test unit lab bench clean
.DEFAULT_GOAL := help

help:
	@echo "make run    run every notebook in order, headless, against the sandbox"
	@echo "make test   unit tests + nbval over all notebooks in order"
	@echo "make lab    open JupyterLab on the workbook"
	@echo "make bench  run the benchmarks"
	@echo "make clean  remove build output (keeps .venv and your .workbook state)"

venv: $(STAMP)
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

run: $(STAMP)
	$(RUN_ENV) $(PY) scripts/nb.py run

test: $(STAMP)
	$(RUN_ENV) $(PY) scripts/test.py

unit: $(STAMP)
	$(RUN_ENV) $(PY) -m pytest

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf build
