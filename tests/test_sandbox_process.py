"""The sandbox as a process: start, idempotence, SigV4 at the door, crash recovery, clear start-up errors."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import botocore.exceptions
import pytest
import requests

from helpers import sandbox

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "helpers.sandbox", *args, "--state-dir", str(home)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); treat it as dead
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    yield h
    sandbox.stop(h)


def test_start_prints_exports_and_is_idempotent(home):
    first = cli("start", home=home)
    assert first.returncode == 0, first.stderr
    lines = dict(line.removeprefix("export ").split("=", 1) for line in first.stdout.splitlines()
                 if line.startswith("export "))
    assert set(lines) >= {"AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                          "AWS_SECRET_ACCESS_KEY"}
    assert lines["AWS_DEFAULT_REGION"] == "us-west-2"
    settings = sandbox.status(home)
    second = cli("start", home=home)
    assert second.returncode == 0 and second.stdout == first.stdout
    assert sandbox.status(home).pid == settings.pid
    assert cli("status", home=home).stdout.startswith("running")
    assert cli("env", home=home).stdout == first.stdout


def test_requests_must_carry_the_sandbox_sigv4(home):
    settings = sandbox.ensure_running(home)
    assert settings.client("sts").get_caller_identity()["Account"] == sandbox.ACCOUNT_ID
    wrong = settings.session().client("sts", endpoint_url=settings.endpoint_url, verify=str(settings.ca_bundle),
                                      aws_access_key_id="SOMEOTHERKEYID000000", aws_secret_access_key="x")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        wrong.get_caller_identity()
    assert info.value.response["Error"]["Code"] == "InvalidClientTokenId"
    bad_secret = settings.session().client("iot", endpoint_url=settings.endpoint_url,
                                           verify=str(settings.ca_bundle), aws_secret_access_key="wrong",
                                           aws_access_key_id=settings.access_key_id)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        bad_secret.list_authorizers()
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    unsigned = requests.get(settings.endpoint_url + "/authorizers/", verify=settings.ca_bundle, timeout=10)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_state_survives_kill_9_and_restart(home):
    settings = sandbox.ensure_running(home)
    iam = settings.client("iam")
    iam.create_role(RoleName="survivor", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}')
    os.kill(settings.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    # the kernel releases the lock once every thread of the killed process is gone
    while (alive(settings.pid) or sandbox.status(home) is not None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox.status(home) is None
    result = cli("start", home=home)
    assert result.returncode == 0, result.stderr
    assert "stopped without shutting down" in result.stderr
    restarted = sandbox.status(home)
    assert restarted.pid != settings.pid
    assert restarted.client("iam").get_role(RoleName="survivor")["Role"]["RoleName"] == "survivor"


def test_port_in_use_is_a_clear_error(home):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("start", "--port", str(port), home=home)
    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_second_sandbox_on_the_same_home_is_refused(home):
    settings = sandbox.ensure_running(home)
    result = cli("serve", home=home, timeout=30)
    assert result.returncode == 1
    assert "already running" in result.stderr and str(settings.pid) in result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.status(home).pid == settings.pid  # the first one is untouched


def test_stop_ends_the_process(home):
    settings = sandbox.ensure_running(home)
    result = cli("stop", home=home)
    assert result.returncode == 0 and "stopped" in result.stdout
    deadline = time.monotonic() + 10
    while alive(settings.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(settings.pid)
    assert cli("status", home=home).returncode == 3
    assert cli("stop", home=home).stdout.startswith("no sandbox was running")
