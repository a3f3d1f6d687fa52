"""The workbook in JupyterLab in a real headless Chromium (scripts/browser_check.py); skips without Chromium.

Runs notebooks 00 to 09 in JupyterLab as `make lab` serves them, saves them, restarts their kernels
and reloads: no output may say "Error displaying widget: model not found", and each widget's hint
must show. About a minute and a half alone on a 2-core machine (one browser tab, waiting on JupyterLab's
signals, not on fixed sleeps); leaves no process behind (checked here by the folder the processes name).
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import browser_check  # noqa: E402

REASON = browser_check.missing()


@pytest.mark.skipif(REASON is not None, reason=f"browser check skipped: {REASON}")
def test_jupyterlab_in_chromium(tmp_path):
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "browser_check.py"), str(tmp_path / "out"),
                             "--work", str(work)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the script's clean-up runs on SIGTERM
        stdout, stderr = proc.communicate(timeout=120)
        pytest.fail(f"the browser check took more than 15 minutes:\n{stdout}\n{stderr}")
    finally:
        left = browser_check.processes_naming(str(work))
    report = (tmp_path / "out" / "report.txt").read_text()
    assert left == [], f"processes left running: {left}"
    for name, hint in browser_check.HINTS.items():
        assert f"{name} as committed: hint shown True; 'Error displaying widget' shown False" in report, report
        assert f"{name} saved: 0 widget view(s) in the file" in report, report
        assert f"{name} reopened after a kernel restart: hint shown True; 'Error displaying widget' shown 0" in report
    assert "00-set-up: clicked 'Use this target', the widget showed '✓ Recorded.': True" in report, report
    assert "06-publish-https: clicked 'Send', the widget showed 'HTTP 200 (published)': True" in report, report
    assert "it said 'must be exactly 12 digits': True" in report, report
    assert "00-set-up run in JupyterLab" in report and "07: 0 message row" not in report, report
    assert (tmp_path / "out" / "03-create-authorizer-run-widget1.png").stat().st_size > 2_000
    assert proc.returncode == 0, report + stderr
