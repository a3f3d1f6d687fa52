"""python -m helpers.doctor: READY only when the workbook will really run; each test is a false all-clear to avoid."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cleanup, doctor, sandbox

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IOT_SANDBOX_HOME", str(tmp_path / "sandbox"))
    return tmp_path


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A Python with nothing installed: the machine before set-up."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv / "bin" / "python"


def canned(packages: dict):
    """scripts/venv.py, but its package listing answers ``packages``."""
    script = doctor._venv_script()
    info = {"python": [3, 11, 7], "packages": packages, "helpers": str(ROOT / "helpers")}
    script.INSPECT = f"print({json.dumps(json.dumps(info))})"
    return script


def pinned_packages(script) -> dict:
    packages = dict(script.read_pins())
    packages[script.PROJECT] = "0.1.0"
    return packages


def test_a_ready_machine_runs_a_throwaway_sandbox_and_says_ready(homes):
    out = subprocess.run([sys.executable, "-m", "helpers.doctor"], cwd=ROOT, capture_output=True, text=True,
                         timeout=180, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "answered a signed call" in out.stdout and "HTTPS publish" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "READY: the workbook will run here (sandbox path)."
    assert not (homes / "state").exists() and not (homes / "sandbox").exists()  # it only looks
    assert sandbox.status(homes / "sandbox") is None


def test_paho_mqtt_1_is_not_an_all_clear():
    script = canned({})
    packages = pinned_packages(script)
    packages["paho-mqtt"] = "1.6.1"
    report = doctor.check_packages(canned(packages))
    assert report[0].blocking and "paho-mqtt 1.6.1 installed, 2.2.0 pinned" in report[0].detail
    assert "NOT READY: packages: paho-mqtt 1.6.1" in doctor.verdict(report)
    assert "OFFLINE=wheels/" in doctor.verdict(report)  # not a bare `make venv` that says "Nothing to be done"


def test_every_pin_matching_is_ok():
    script = canned({})
    report = doctor.check_packages(canned(pinned_packages(script)))
    assert report[0].status == doctor.OK


def test_before_set_up_it_runs_on_the_standard_library_and_says_what_to_do(bare_python, homes):
    env = dict(os.environ, WORKBOOK_DOCTOR_HERE="1")
    out = subprocess.run([str(bare_python), "-m", "helpers.doctor"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("NOT READY: packages:") and "cryptography missing" in last and "make venv" in last


def test_no_ipykernel_means_no_kernel(bare_python, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(bare_python))
    check = doctor.check_kernel()
    assert check.blocking and "kernel" in check.detail


def test_a_python3_kernel_pointing_at_another_python_is_caught(tmp_path, monkeypatch, bare_python):
    kernel = tmp_path / "data" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(bare_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "data"))  # a lab machine's shared kernels
    check = doctor.check_kernel()
    assert check.blocking and "lacks ipykernel" in check.detail and "kernelspec remove" in check.fix
    monkeypatch.delenv("JUPYTER_PATH")
    assert doctor.check_kernel().status == doctor.OK


def test_an_unusable_sandbox_home_is_caught(homes, monkeypatch):
    (homes / "afile").write_text("")
    monkeypatch.setenv("IOT_SANDBOX_HOME", str(homes / "afile" / "home"))
    report = {c.name: c for c in doctor.check_homes()}
    assert report["sandbox home"].blocking and "is a file" in report["sandbox home"].detail
    assert report["state folder"].status == doctor.OK


@pytest.mark.skipif(not hasattr(os, "chown") or os.geteuid() != 0, reason="needs root to give a folder away")
def test_another_users_checkout_is_caught(homes, monkeypatch):
    theirs = homes / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(theirs))
    report = {c.name: c for c in doctor.check_homes()}
    assert report["state folder"].blocking and "belongs to another user" in report["state folder"].detail


def test_tools_are_notes_and_the_venv_aws_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no openssl, curl or node on PATH
    report = {c.name: c for c in doctor.check_tools()}
    assert report["openssl"].status == doctor.NOTE and not report["openssl"].blocking  # notebook 02 passes without
    assert report["aws"].status == doctor.OK and str(Path(sys.executable).parent / "aws") in report["aws"].detail


def test_a_damaged_state_file_is_reported_not_raised(homes):
    (homes / "state").mkdir()
    (homes / "state" / "state.json").write_text("{not json")
    check = doctor.check_state()
    assert check.blocking and "not valid JSON" in check.detail


def test_windows_drive_under_wsl_is_one_line(monkeypatch):
    monkeypatch.setattr(doctor, "REPO_ROOT", Path("/mnt/c/Users/ada/workbook"))
    monkeypatch.setattr("platform.release", lambda: "5.15.167.4-microsoft-standard-WSL2")
    monkeypatch.setattr("platform.system", lambda: "Linux")
    check = doctor.check_host()
    assert check.blocking and "Windows drive" in check.detail and "\n" not in check.detail


def test_the_orphan_call_site_reports_what_find_orphans_found(homes, monkeypatch):
    from helpers.state import WorkbookState

    class Found:
        resources = [("lambda-function", "custom-auth-function-old123")]

        def summary(self):
            return "Found 1 workbook resource(s) the state file does not list."

    WorkbookState.load()
    monkeypatch.setattr(cleanup, "find_orphans", lambda wb: Found(), raising=False)
    sandbox.ensure_running()
    try:
        check = doctor.check_orphans()
    finally:
        sandbox.stop()
    assert check.status == doctor.NOTE and "does not list" in check.detail and "10-cleanup" in check.fix


def test_orphans_left_by_a_lost_state_file_are_reported(homes):
    from helpers.state import WorkbookState
    from helpers.workbook import FUNCTION_DIR, zip_function

    settings = sandbox.ensure_running()
    try:
        role = settings.client("iam").create_role(RoleName="custom-auth-function-role-old123", AssumeRolePolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole",'
            '"Principal":{"Service":"lambda.amazonaws.com"}}]}'))["Role"]["Arn"]
        settings.client("lambda").create_function(FunctionName="custom-auth-function-old123", Runtime="python3.12",
                                                  Role=role, Handler="lambda_function.lambda_handler",
                                                  Code={"ZipFile": zip_function(FUNCTION_DIR)})
        WorkbookState.load()  # a new state file: it knows nothing of old123
        check = doctor.check_orphans()
    finally:
        sandbox.stop()
    assert check.status == doctor.NOTE and "old123" in check.detail
