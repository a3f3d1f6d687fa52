"""scripts/venv.py: make never goes online by itself; bad Pythons and broken venvs get one line each."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("venv_script", ROOT / "scripts" / "venv.py")
venv_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(venv_script)

PINS = venv_script.read_pins()


def fake_python(path: Path, version: str = "3.11.7", packages: dict | None = None, ensurepip: bool = True,
                helpers: str | None = str(ROOT / "helpers")) -> Path:
    """A stand-in interpreter answering the three questions scripts/venv.py asks."""
    info = {"python": [int(p) for p in version.split(".")], "prefix": "", "base_prefix": "",
            "packages": packages if packages is not None else {}, "helpers": helpers}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n"
                    'case "$*" in\n'
                    f"  *'%d.%d.%d'*) echo {version};;\n"
                    f"  *ensurepip*) {'exit 0' if ensurepip else 'exit 1'};;\n"
                    "  *'import venv'*) exit 0;;\n"
                    f"  *) echo '{json.dumps(info)}';;\n"
                    "esac\n")
    path.chmod(0o755)
    return path


def matching_packages() -> dict:
    packages = {name: version for name, version in PINS}
    packages[venv_script.PROJECT] = "0.1.0"
    return packages


def test_every_pin_is_read_and_the_editable_line_is_not():
    names = [name for name, _ in PINS]
    assert "paho-mqtt" in names and "jupyterlab" in names and "." not in names
    assert all(version[0].isdigit() for _, version in PINS)


def test_a_matching_venv_is_accepted_without_stamp_or_network(tmp_path, monkeypatch, capsys):
    venv = tmp_path / "venv"
    fake_python(venv / "bin" / "python", packages=matching_packages())
    monkeypatch.setenv("WORKBOOK_VENV", str(venv))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # were pip run, it would fail
    assert venv_script.main(["check"]) == 0
    assert venv_script.main(["ensure"]) == 0
    assert "matches requirements.txt" in capsys.readouterr().out
    assert not (venv / ".installed").exists()


def test_the_real_venv_matches_the_pins():
    info = venv_script.inspect(str(ROOT / ".venv"))
    assert info is not None and venv_script.problems(info) == []


def test_a_mismatched_venv_is_reported_with_the_offline_fix_and_never_installed_into(tmp_path, monkeypatch):
    packages = matching_packages()
    packages["paho-mqtt"] = "1.6.1"
    del packages["ipykernel"]
    venv = tmp_path / "venv"
    fake_python(venv / "bin" / "python", packages=packages)
    monkeypatch.setenv("WORKBOOK_VENV", str(venv))
    with pytest.raises(SystemExit) as exit_:
        venv_script.main(["check"])
    message = str(exit_.value.code)
    assert "paho-mqtt 1.6.1 installed, 2.2.0 pinned" in message
    assert "ipykernel missing" in message and "make venv OFFLINE=wheels/" in message
    assert venv.exists()  # reported, not replaced


def test_helpers_from_another_checkout_is_a_problem():
    info = {"python": [3, 11, 7], "packages": matching_packages(), "helpers": "/elsewhere/helpers"}
    assert venv_script.problems(info) == ["`helpers` is imported from another checkout (/elsewhere/helpers)"]
    del info["packages"][venv_script.PROJECT]
    assert "this project (the `-e .` line) is not installed" in venv_script.problems(info)


def test_a_venv_whose_python_does_not_run_is_replaced_with_one_line(tmp_path, capsys):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    (venv / "bin" / "python").chmod(0o755)
    assert venv_script.usable_or_replace(str(venv)) is None
    assert not venv.exists()
    assert capsys.readouterr().out.strip() == ("Replacing .venv: its Python does not run (a failed creation, "
                                               "or copied from another machine).")


def test_a_venv_made_with_an_old_python_is_replaced(tmp_path, capsys):
    venv = tmp_path / "venv"
    fake_python(venv / "bin" / "python", version="3.9.6")
    assert venv_script.usable_or_replace(str(venv)) is None and not venv.exists()
    assert "made with Python 3.9.6, and the workbook needs 3.11 or newer" in capsys.readouterr().out


def test_a_too_old_python_gets_one_line_naming_what_works(tmp_path):
    old = fake_python(tmp_path / "python3.9", version="3.9.6")
    with pytest.raises(SystemExit) as exit_:
        venv_script.choose_python(str(old))
    message = str(exit_.value.code)
    assert "Python 3.9.6" in message and "needs Python 3.11 or newer" in message and "brew install" in message
    assert "\n" not in message


def test_a_too_old_python3_falls_back_to_a_newer_one_on_path(tmp_path, monkeypatch, capsys):
    fake_python(tmp_path / "bin" / "python3", version="3.9.6")
    fake_python(tmp_path / "bin" / "python3.12", version="3.12.3")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    path, version = venv_script.choose_python("")
    assert path.endswith("python3.12") and version == (3, 12, 3)
    assert "using python3.12" in capsys.readouterr().out


def test_no_ensurepip_names_the_package(tmp_path):
    python = fake_python(tmp_path / "python3.11", version="3.11.2", ensurepip=False)
    with pytest.raises(SystemExit) as exit_:
        venv_script.check_can_make_venvs(str(python), (3, 11, 2))
    assert "sudo apt install python3.11-venv" in str(exit_.value.code)


def test_make_venv_with_an_old_python_stops_before_touching_anything(tmp_path):
    old = fake_python(tmp_path / "python3.9", version="3.9.6")
    env = dict(os.environ, WORKBOOK_VENV=str(tmp_path / "new-venv"))
    out = subprocess.run(["make", "--no-print-directory", "venv", f"PYTHON={old}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "too old" in out.stderr and not (tmp_path / "new-venv").exists()


def test_offline_from_a_folder_without_wheels_says_how_to_make_one(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        venv_script.pip_install(str(tmp_path / "venv"), str(tmp_path), use_lock=True)
    assert "make wheelhouse" in str(exit_.value.code)
