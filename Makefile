# iot-custom-auth-workbook. Every target first checks .venv against requirements.txt (scripts/venv.py):
# a .venv that matches is used as it is, whatever made it; one that does not match is reported, never
# silently re-installed from the network; only a missing or broken .venv is (re)created.
# Plain commands for a machine without make are in README.md.
SHELL := /bin/bash
.SHELLFLAGS := -o errexit -o pipefail -o nounset -c
# The Python that creates .venv; empty: python3, or the newest python3.1x on PATH if python3 is too old.
PYTHON ?=
# A wheelhouse folder to install from, with no network: make venv OFFLINE=wheels/
OFFLINE ?=
VENV := .venv
PY := $(VENV)/bin/python
# Runs scripts/venv.py (stdlib only; it judges the Python named by PYTHON before using it).
BOOT := $$(command -v python3 || echo $(or $(PYTHON),python3))
READY = @$(BOOT) scripts/venv.py check --python "$(PYTHON)" --offline "$(OFFLINE)"
# Tests and headless runs use their own sandbox home and workbook state, never the learner's.
RUN_ENV := IOT_SANDBOX_HOME=$(CURDIR)/build/sandbox WORKBOOK_STATE_DIR=$(CURDIR)/build/workbook-state

# make wheelhouse: where, and for which Pythons/platforms (empty: this one)
WHEELS ?= wheels
PYTHONS ?=
PLATFORMS ?=
# The venv's Python when there is one, else python3 (make wheelhouse, lock).
ANY_PY := $$(test -x $(PY) && echo $(PY) || echo python3)

.PHONY: help venv run test unit lab bench clean wheelhouse lock reset catch-up progress
.DEFAULT_GOAL := help

help:
	@echo "make run    run every notebook in order, headless, against the sandbox"
	@echo "make test   notebooks (nbval, sandbox then aws code path), unit tests and browser check, at once"
	@echo "make unit   the unit tests alone (pytest, one process)"
	@echo "make lab    open JupyterLab on the workbook"
	@echo "make bench  run the benchmarks"
	@echo "make clean  remove build output (keeps .venv and your .workbook state)"
	@echo "make venv [OFFLINE=wheels/]   create or complete .venv (from the index, or only from a wheelhouse)"
	@echo "make wheelhouse [WHEELS=wheels PYTHONS='3.11 3.12' PLATFORMS='...']   download everything for offline"
	@echo "make lock   regenerate requirements.lock from requirements.txt (after changing a pin)"
	@echo "make reset / make catch-up TO=NN / make progress   classroom tools (README, For instructors)"

venv:
	@$(BOOT) scripts/venv.py ensure --python "$(PYTHON)" --offline "$(OFFLINE)"

wheelhouse:
	@$(ANY_PY) scripts/wheelhouse.py --dest "$(WHEELS)" --python-versions "$(PYTHONS)" --platforms "$(PLATFORMS)"

lock:
	@$(BOOT) scripts/venv.py ensure --no-lock --python "$(PYTHON)" --offline "$(OFFLINE)"
	@$(PY) scripts/lock.py

run:
	$(READY)
	$(RUN_ENV) $(PY) scripts/nb.py run

test:
	$(READY)
	$(RUN_ENV) $(PY) scripts/test.py

unit:
	$(READY)
	$(RUN_ENV) $(PY) -m pytest

# helpers.lab: saved notebooks keep each widget's "Run this cell" hint instead of a widget view that
# reopens as "Error displaying widget: model not found".
lab:
	$(READY)
	$(PY) -m jupyter lab --ServerApp.jpserver_extensions=helpers.lab=True notebooks/

bench:
	$(READY)
	$(PY) bench/run_all.py

# Classroom tools: these work on the learner's own state and sandbox (.workbook/), not build/'s.
reset:
	$(READY)
	$(PY) scripts/classroom.py reset

catch-up:
	$(READY)
	@test -n "$(TO)" || { echo "make catch-up TO=NN: NN is the notebook to catch up to (e.g. TO=05)" >&2; exit 2; }
	$(PY) scripts/nb.py catch-up "$(TO)"

progress:
	$(READY)
	@$(PY) -m helpers.progress

clean:
	rm -rf build
