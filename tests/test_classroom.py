"""Classroom tooling: make catch-up TO=NN, python -m helpers.progress, make reset."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import progress, sandbox
from helpers.state import WorkbookState

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def learner(tmp_path, monkeypatch):
    """A learner's own state and sandbox (what make catch-up/reset/progress use), in a temporary place."""
    env = dict(os.environ, WORKBOOK_STATE_DIR=str(tmp_path / "state"), IOT_SANDBOX_HOME=str(tmp_path / "sandbox"))
    for key in ("WORKBOOK_STATE_DIR", "IOT_SANDBOX_HOME"):
        monkeypatch.setenv(key, env[key])
    yield env
    sandbox.stop(tmp_path / "sandbox")


def make(*args, env, timeout=600):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_notebook_list_comes_from_the_files():
    names = progress.notebook_names()
    assert names == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")) and len(names) >= 2
    assert progress.notebook_names(Path("/nonexistent")) == []


def test_progress_never_creates_a_state_file(learner, tmp_path):
    out = subprocess.run([sys.executable, "-m", "helpers.progress"], cwd=ROOT, env=learner, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "nothing done" in out.stdout and len(out.stdout.strip().splitlines()) == 1
    assert not (tmp_path / "state").exists()


def test_progress_reads_several_state_files_and_names_a_damaged_one(tmp_path):
    good = WorkbookState.load(tmp_path / "a" / "state.json")
    good.set(target="sandbox", function_arn="arn:aws:lambda:us-west-2:123456789012:function:f")
    bad = tmp_path / "b" / "state.json"
    bad.parent.mkdir()
    bad.write_text("{")
    out = subprocess.run([sys.executable, "-m", "helpers.progress", str(good.path), str(bad)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 2
    assert "done 00 01; next 02-key-pair" in lines[0] and "cannot read it" in lines[1]


def test_a_renumbered_notebook_keeps_its_evidence():
    class Fake:
        def __init__(self, values):
            self.values = values

        def get(self, key, default=None):
            return self.values.get(key, default)

    names = ["00-set-up", "01-authorizer-function", "02-key-pair", "09-device-mqtt", "10-cleanup"]
    state = Fake({"target": "sandbox", "stages_done": {"08-device-mqtt": "t"}})
    assert progress.done_stages(state, names) == ["00-set-up", "09-device-mqtt"]


def test_catch_up_rejects_a_number_that_names_no_notebook(learner):
    out = make("catch-up", "TO=77", env=learner)
    assert out.returncode != 0 and "TO='77' names no notebook" in out.stderr
    out = make("catch-up", env=learner)
    assert out.returncode != 0 and "make catch-up TO=NN" in out.stderr


def test_catch_up_runs_the_notebooks_before_nn_in_the_learners_state_then_reset_cleans_it(learner, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "notebooks").glob("*.ipynb")}
    out = make("catch-up", "TO=02", env=learner)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "00-set-up" in out.stdout and "01-authorizer-function" in out.stdout and "02-key-pair " not in out.stdout
    assert "Caught up: open notebooks/02-key-pair.ipynb" in out.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the learner's notebooks are not touched
    state_file = tmp_path / "state" / "state.json"
    data = json.loads(state_file.read_text())
    assert data["values"]["function_arn"] and set(data["values"]["stages_done"]) == {"00-set-up",
                                                                                    "01-authorizer-function"}
    assert sandbox.status(tmp_path / "sandbox") is not None  # their sandbox keeps running

    line = make("progress", env=learner).stdout.strip()
    assert line.endswith("done 00 01; next 02-key-pair (2/%d)" % len(progress.notebook_names()))

    settings = sandbox.status(tmp_path / "sandbox")
    out = make("reset", env=learner)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Reset:" in out.stdout and "deleted" in out.stdout
    assert not state_file.exists()
    functions = settings.client("lambda").list_functions()["Functions"]
    assert functions == []
    out = make("reset", env=learner)
    assert out.returncode == 0 and "Nothing to reset" in out.stdout
