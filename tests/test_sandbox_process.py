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


# --- credentials of its own per home ---------------------------------------------------------------------

def _exports(stdout: str) -> dict[str, str]:
    import shlex
    return {k: shlex.split(v)[0] for k, v in (line.removeprefix("export ").split("=", 1)
                                             for line in stdout.splitlines() if line.startswith("export "))}


def test_each_home_has_its_own_random_key_pair_and_accepts_nothing_else(tmp_path):
    import re
    homes = [tmp_path / "a", tmp_path / "b"]
    try:
        exports = []
        for h in homes:
            result = cli("start", home=h)
            assert result.returncode == 0, result.stderr
            exports.append(_exports(result.stdout))
            assert oct((h / "credentials.json").stat().st_mode & 0o777) == "0o600"
        for e in exports:
            assert re.fullmatch(r"SANDBOX[A-Z0-9]{13}", e["AWS_ACCESS_KEY_ID"])
            assert len(e["AWS_SECRET_ACCESS_KEY"]) >= 40
        assert exports[0]["AWS_ACCESS_KEY_ID"] != exports[1]["AWS_ACCESS_KEY_ID"]
        assert exports[0]["AWS_SECRET_ACCESS_KEY"] != exports[1]["AWS_SECRET_ACCESS_KEY"]
        a, b = (sandbox.status(h) for h in homes)
        # a's keys do not open b, nor does the key pair the sandbox used to publish for every home
        for key, secret in ((a.access_key_id, a.secret_access_key),
                            ("SANDBOXLOCALKEYID001", "sandbox-local-secret-not-an-aws-credential")):
            other = b.session().client("iot", endpoint_url=b.endpoint_url, verify=str(b.ca_bundle),
                                       aws_access_key_id=key, aws_secret_access_key=secret)
            with pytest.raises(botocore.exceptions.ClientError) as info:
                other.list_authorizers()
            assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
        # the pair survives a restart: exported settings stay valid
        assert cli("stop", home=homes[0]).returncode == 0
        again = cli("start", home=homes[0])
        assert _exports(again.stdout)["AWS_SECRET_ACCESS_KEY"] == exports[0]["AWS_SECRET_ACCESS_KEY"]
        assert "secret" not in repr(sandbox.status(homes[0])).lower().replace("secret_access_key", "")
    finally:
        for h in homes:
            sandbox.stop(h)


def test_caller_identity_is_the_learner_for_the_home_key(home):
    settings = sandbox.ensure_running(home)
    identity = settings.client("sts").get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{sandbox.ACCOUNT_ID}:user/sandbox-learner"


# --- isolation on disk ---------------------------------------------------------------------------------

def _modes(h: Path) -> dict[str, str]:
    return {str(p.relative_to(h)): oct(p.stat().st_mode & 0o777) for p in [h, *h.rglob("*")] if not p.is_symlink()}


def test_home_is_owner_only_and_an_existing_open_home_is_fixed_at_start(home):
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    (home / "sandbox.log").write_text("old log\n")
    os.chmod(home / "sandbox.log", 0o644)
    settings = sandbox.ensure_running(home)
    settings.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument='{"Statement":[]}')
    modes = _modes(home)
    assert modes["."] == "0o700"
    loose = {name: mode for name, mode in modes.items()
             if name != "." and mode not in ("0o600", "0o700")}
    assert loose == {}, loose
    for name in ("state.sqlite3", "state.sqlite3-wal", "sandbox.log", "credentials.json"):
        assert modes[name] == "0o600", (name, modes)


# --- process faults -----------------------------------------------------------------------------------

def _one_clear_line(result, *words):
    assert result.returncode == 1, result
    lines = [line for line in result.stderr.splitlines() if not line.startswith("#")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_corrupt_or_truncated_database_is_one_clear_line_and_is_kept(home):
    sandbox.ensure_running(home).client("iam").create_role(RoleName="keep", AssumeRolePolicyDocument='{"Statement":[]}')
    sandbox.stop(home)
    db = home / "state.sqlite3"
    data = db.read_bytes()
    for broken in (b"this is not a database" * 200, data[: len(data) // 2]):
        db.write_bytes(broken)
        (home / "state.sqlite3-wal").unlink(missing_ok=True)
        result = cli("start", home=home)
        _one_clear_line(result, str(db), "damaged", "mv ")
        assert db.read_bytes() == broken  # never reset: the learner's data stays for inspection


def test_unwritable_home_is_one_clear_line(tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "file-not-dir"
        target.write_text("")
        result = cli("start", home=target / "home")  # root can write anywhere: a path under a file cannot be made
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        os.chmod(locked, 0o500)
        result = cli("start", home=locked / "home")
    _one_clear_line(result, "home", "--state-dir")


def test_taken_port_is_one_clear_line(home):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("start", "--port", str(port), home=home)
    _one_clear_line(result, f"Port {port}", "--port")


def test_two_starts_at_once_both_succeed_with_the_same_settings(home):
    procs = [subprocess.Popen([sys.executable, "-m", "helpers.sandbox", "start", "--state-dir", str(home)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0] and "AWS_ACCESS_KEY_ID" in outs[0][0]
