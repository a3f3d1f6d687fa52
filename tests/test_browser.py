"""The workbook in JupyterLab in a real headless Chromium (scripts/browser_check.py); skips without Chromium."""
from __future__ import annotations

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
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "browser_check.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=400, cwd=ROOT)
    report = (tmp_path / "report.txt").read_text()
    assert "unrun widget text present: True" in report, report + proc.stderr
    assert "widget element(s) rendered" in report and "00 run: 0 widget" not in report, report
    assert (tmp_path / "00-as-saved.png").stat().st_size > 10_000
    assert proc.returncode == 0, report + proc.stderr
