"""The whole workbook with the target set to AWS, while the standard AWS variables point at the sandbox.

This is the code path a learner with a real account runs: boto3's own configuration (AWS_ENDPOINT_URL,
AWS_CA_BUNDLE, credentials from the environment), no sandbox helpers. Pointing it at the sandbox proves the
AWS path is the same code, and that it works end to end.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import sandbox

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import nb as nbtool  # noqa: E402


def loaded_sandbox_modules(code: str, env: dict | None = None) -> list[str]:
    """Run ``code`` in a fresh interpreter; the ``helpers.sandbox`` modules it loaded."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith('helpers.sandbox')))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout.strip().splitlines()[-1])


def test_the_helpers_the_notebooks_import_do_not_load_the_sandbox():
    """On the aws path nothing may load helpers.sandbox: importing what the notebooks import does not."""
    modules = sorted({m for src in (ROOT / "notebooks" / "src").glob("*.py")
                      for m in re.findall(r"^from (helpers\.\w+) import", src.read_text(), re.MULTILINE)})
    assert "helpers.mqtt" in modules and "helpers.workbook" in modules
    assert loaded_sandbox_modules("import helpers.mqtt") == []
    assert loaded_sandbox_modules("\n".join(f"import {m}" for m in modules)) == []


def test_choosing_aws_does_not_load_the_sandbox(tmp_path):
    """Notebook 00's chooser on aws, with AWS_CA_BUNDLE set (checked for the sandbox's CA) and no credentials."""
    import certifi

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WORKBOOK_STATE_DIR": str(tmp_path / "state"),
           "AWS_CA_BUNDLE": certifi.where(), "AWS_EC2_METADATA_DISABLED": "true"}
    code = ("from helpers.widgets import TargetChooser\n"
            "chooser = TargetChooser()\nchooser.target.value = 'aws'\nchooser.use()\n"
            "assert chooser.error.startswith('AwsSetupError'), chooser.error")
    assert loaded_sandbox_modules(code, env) == []


#: Set by scripts/test.py (`make test`), whose notebooks lane runs every stage on this code path itself, over the
#: sandbox and state its first pass left (the re-run check); `make unit` and plain pytest run it here.
IN_NOTEBOOKS_LANE = os.environ.get("WORKBOOK_AWS_PATH_IN_NOTEBOOKS_LANE") == "1"


@pytest.mark.skipif(not nbtool.all_names(), reason="no notebooks yet")
@pytest.mark.skipif(IN_NOTEBOOKS_LANE, reason="make test runs the aws code path in its notebooks lane")
def test_workbook_runs_on_the_aws_code_path(tmp_path, monkeypatch):
    home = tmp_path / "sandbox"
    settings = sandbox.ensure_running(home)
    try:
        for key, value in settings.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("WORKBOOK_TARGET", "aws")
        # opt in: without it the aws target refuses settings that point at the sandbox (test_target_honesty.py)
        monkeypatch.setenv("WORKBOOK_ALLOW_SANDBOX_AS_AWS", "1")
        monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
        # a sandbox the notebooks must NOT start: on the AWS path nothing may touch helpers.sandbox
        monkeypatch.setenv("IOT_SANDBOX_HOME", str(tmp_path / "unused-sandbox"))
        results = []
        ok = nbtool.execute(nbtool.all_names(), out_dir=tmp_path / "executed",
                            report=lambda name, ok, s, detail: results.append((name, ok, detail)))
        assert ok, results
        assert [name for name, *_ in results] == nbtool.all_names()
        assert not (tmp_path / "unused-sandbox").exists()
        setup = nbformat.read(tmp_path / "executed" / "00-set-up.ipynb", as_version=4)
        text = "".join(o.get("text", "") for c in setup.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "target:   aws" in text
    finally:
        sandbox.stop(home)
