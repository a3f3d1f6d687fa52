"""python -m helpers.doctor: what this machine has, said plainly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import doctor, sandbox

ROOT = Path(__file__).resolve().parents[1]


def test_doctor_reports_packages_tools_state_and_a_running_sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IOT_SANDBOX_HOME", str(tmp_path / "sandbox"))
    stopped = {c.name: c for c in doctor.checks()}
    assert stopped["boto3"].status == "ok" and stopped["sandbox"].status == "note"
    assert stopped["workbook state"].status == "note" and not (tmp_path / "state").exists()  # it only looks
    sandbox.ensure_running()
    try:
        out = subprocess.run([sys.executable, "-m", "helpers.doctor"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    finally:
        sandbox.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "answered a signed request" in out.stdout
    assert "Everything the sandbox path needs is here." in out.stdout


def test_doctor_flags_a_missing_required_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IOT_SANDBOX_HOME", str(tmp_path / "sandbox"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no openssl, curl, aws or node
    report = {c.name: c for c in doctor.checks()}
    assert report["openssl"].status == "missing" and report["openssl"].required
    assert report["node"].status == "note" and not report["node"].required
