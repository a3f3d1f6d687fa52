"""Binder (repo2docker) and devcontainer files: what can be checked without building their images.

Their install commands were run once by hand in a fresh venv; here, that they stay consistent with the project: the Python they name is supported, they install the
same pins, and they bring the workbook's system needs (openssl, node).
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINIMUM = tuple(int(p) for p in re.search(r'requires-python = ">=([0-9.]+)"',
                                          (ROOT / "pyproject.toml").read_text()).group(1).split("."))


def test_binder_names_a_supported_python_and_the_system_packages():
    version = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", version)
    assert tuple(int(p) for p in version.split("-")[1].split(".")) >= MINIMUM
    packages = [line.strip() for line in (ROOT / "binder" / "apt.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert {"openssl", "nodejs"} <= set(packages)


def test_binder_postbuild_installs_the_pins_with_the_lock_and_checks_the_result():
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & 0o111  # repo2docker runs it only when executable
    text = post.read_text()
    assert "-r requirements.txt" in text and "-c requirements.lock" in text and "helpers.doctor" in text
    assert subprocess.run(["bash", "-n", str(post)]).returncode == 0


def test_the_devcontainer_uses_a_supported_python_node_and_make_venv():
    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    python = re.search(r"python:\d+-(3\.\d+)-", config["image"]).group(1)
    assert tuple(int(p) for p in python.split(".")) >= MINIMUM
    assert any("features/node" in name for name in config["features"])
    assert "openssl" in config["postCreateCommand"] and "make venv" in config["postCreateCommand"]
    assert "helpers.doctor" in config["postCreateCommand"]
