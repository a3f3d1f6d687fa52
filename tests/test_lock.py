"""requirements.lock: generated from requirements.txt (make lock) and consistent with it."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("venv_script", ROOT / "scripts" / "venv.py")
venv_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(venv_script)


def locked() -> dict[str, str]:
    return {venv_script.canonical(n): v for n, v in venv_script.read_pins(str(ROOT / "requirements.lock"))}


def test_every_top_level_pin_is_in_the_lock_at_the_same_version():
    lock = locked()
    stale = [f"{name}=={version} (lock: {lock.get(venv_script.canonical(name), 'absent')})"
             for name, version in venv_script.read_pins() if lock.get(venv_script.canonical(name)) != version]
    assert not stale, f"requirements.lock is stale, run `make lock`: {', '.join(stale)}"


def test_the_lock_pins_the_build_tools_and_never_the_project():
    lock = locked()
    assert "setuptools" in lock and "wheel" in lock
    assert Version(lock["setuptools"]) >= Version("64")  # builds the editable `-e .` from pyproject.toml
    assert venv_script.canonical(venv_script.PROJECT) not in lock
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in lock.values())


def test_the_lock_and_the_checks_agree_on_the_oldest_python():
    minimum = re.search(r'requires-python = ">=([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert tuple(int(p) for p in minimum.split(".")) == venv_script.MINIMUM
    assert f"installs on Python {minimum}.0 and later" in (ROOT / "requirements.lock").read_text()


def test_the_closure_follows_markers_and_extras(tmp_path):
    import importlib.util as iu
    lock_spec = iu.spec_from_file_location("lock_script", ROOT / "scripts" / "lock.py")
    lock_script = iu.module_from_spec(lock_spec)
    lock_spec.loader.exec_module(lock_script)
    pins = lock_script.closure(["paho-mqtt", "requests"], lock_script.installed())
    assert {"paho-mqtt", "requests", "urllib3", "idna", "certifi", "charset-normalizer"} <= {
        lock_script.canonical(n) for n in pins}
    assert "pytest" not in {lock_script.canonical(n) for n in pins}
    # every locked package installs on the oldest supported Python's first release
    dists = lock_script.installed()
    needs = {n: dists[n].metadata.get("Requires-Python") for n in locked() if n in dists}
    oldest = Version(".".join(map(str, venv_script.MINIMUM)) + ".0")
    assert [n for n, s in needs.items() if s and oldest not in SpecifierSet(s)] == []
