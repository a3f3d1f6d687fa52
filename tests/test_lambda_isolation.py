"""Lambda workers as AWS runs them, and safe on a shared machine.

- every process a handler starts ends with its worker, whatever session it put itself in
  (timeout, discard, shutdown, and the death of the sandbox process): PID namespace where the
  platform offers one, child subreaper + tree kill where it does not (both modes tested);
- a worker cannot see the sandbox home (hidden by its mount namespace), nor reach it through
  ``/proc/<sandbox pid>/cwd``; its working directory and LAMBDA_TASK_ROOT are its own code;
- its AWS credentials are its execution role's temporary ones (ASIA... + session token).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from helpers import processes, sandbox
from helpers.sandbox.runtime import FunctionSpec, LambdaRuntime

from conftest import Deployer, zip_source

ROOT = Path(__file__).resolve().parents[1]

SPAWNER = textwrap.dedent("""
    import os, subprocess, sys, time

    def lambda_handler(event, context):
        # a grandchild that leaves the worker's session and process group (and forks once more)
        subprocess.Popen([sys.executable, "-c",
                          "import os, sys, time\\nos.setsid()\\nif os.fork(): time.sleep(600)\\nelse: time.sleep(600)",
                          event["token"]], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        time.sleep(event.get("sleep", 0))
        return "started"
""")

PROBE = textwrap.dedent("""
    import json, os

    def lambda_handler(event, context):
        out = {"cwd": os.getcwd(), "root": os.environ["LAMBDA_TASK_ROOT"], "own": sorted(os.listdir("."))}
        try:
            out["home"] = sorted(os.listdir(event["home"]))
        except OSError as exc:
            out["home"] = f"error {exc.errno}"
        for name, path in (("secret", event["secret"]), ("proc", f"/proc/{event['sandbox_pid']}/cwd/credentials.json")):
            try:
                with open(path) as fh:
                    out[name] = fh.read()
            except OSError as exc:
                out[name] = f"error {exc.errno}"
        return out
""")


def processes_with(token: str) -> list[int]:
    return [pid for pid, argv in processes.running() if token.encode() in argv]


def wait_gone(token: str, within: float = 5.0) -> list[int]:
    deadline = time.monotonic() + within
    while (left := processes_with(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def spec_for(source: str, name: str, timeout: float = 3.0) -> FunctionSpec:
    code = zip_source({"lambda_function.py": source})
    return FunctionSpec(name=name, arn=f"arn:aws:lambda:us-west-2:123456789012:function:{name}",
                        runtime="python3.11", handler="lambda_function.lambda_handler",
                        code_sha256=f"sha-{name}-{hash(code)}", code_zip=code, timeout=timeout)


needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process trees are read from /proc")


@needs_linux
@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "subreaper"])
@pytest.mark.parametrize("ending", ["timeout", "discard", "shutdown"])
def test_setsid_grandchildren_end_with_their_worker(tmp_path, namespaces, ending):
    rt = LambdaRuntime(tmp_path / "lambda", namespaces=namespaces)
    token = f"grandchild-{uuid.uuid4().hex}"
    try:
        spec = spec_for(SPAWNER, "spawner", timeout=1.0)
        event = {"token": token, "sleep": 5 if ending == "timeout" else 0}
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(rt.invoke, spec, json.dumps(event).encode())
            deadline = time.monotonic() + 5
            while len(processes_with(token)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(processes_with(token)) == 2  # it and its own child are running
            result = pending.result()
        if ending == "timeout":
            assert b"Task timed out" in result.payload
        else:
            assert json.loads(result.payload) == "started"
            assert len(processes_with(token)) == 2  # a warm worker's processes live on, as on Lambda
            rt.discard("spawner") if ending == "discard" else rt.shutdown()
        assert wait_gone(token) == []
    finally:
        rt.shutdown()
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)


@needs_linux
def test_namespaced_worker_cannot_see_the_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "credentials.json").write_text("top secret")
    os.chdir(home)  # like the sandbox process, whose cwd /proc would reveal
    rt = LambdaRuntime(tmp_path / "runtime", hide=(home,))
    try:
        out = json.loads(rt.invoke(spec_for(PROBE, "probe"), json.dumps(
            {"home": str(home), "secret": str(home / "credentials.json"), "sandbox_pid": os.getpid()}).encode()).payload)
    finally:
        os.chdir(ROOT)
        rt.shutdown()
    if out["home"] == ["credentials.json"]:
        pytest.skip("this platform offers no user namespaces: the README says what a handler can reach")
    assert out["home"] == [] and out["secret"].startswith("error") and out["proc"].startswith("error")
    assert out["cwd"] == out["root"] and "lambda_function.py" in out["own"]
    assert home not in Path(out["root"]).parents


# --- through a real sandbox: credentials, code location, and the sandbox's own death -------------------

CALLER = textwrap.dedent("""
    import os, boto3

    def lambda_handler(event, context):
        identity = boto3.client("sts").get_caller_identity()
        return {"key": os.environ["AWS_ACCESS_KEY_ID"], "token": bool(os.environ.get("AWS_SESSION_TOKEN")),
                "arn": identity["Arn"], "root": os.environ["LAMBDA_TASK_ROOT"], "cwd": os.getcwd()}
""")


def test_handler_gets_its_role_temporary_credentials_not_the_sandbox_key(deployer, settings, sandbox_home):
    arn = deployer.function(CALLER, timeout=30, runtime=f"python3.{sys.version_info.minor}")
    out = json.loads(deployer.awslambda.invoke(FunctionName=arn)["Payload"].read())
    assert out["key"].startswith("ASIA") and len(out["key"]) == 20 and out["token"]
    assert out["key"] != settings.access_key_id
    role_name = deployer.role().rsplit("/", 1)[1]
    assert out["arn"] == f"arn:aws:sts::{sandbox.ACCOUNT_ID}:assumed-role/{role_name}/{arn.rsplit(':', 1)[1]}"
    assert out["cwd"] == out["root"]
    assert Path(sandbox_home).resolve() not in Path(out["root"]).resolve().parents


def test_setsid_grandchild_dies_with_a_killed_sandbox(tmp_path):
    home = tmp_path / "home"
    settings = sandbox.ensure_running(home)
    token = f"orphan-{uuid.uuid4().hex}"
    try:

        arn = Deployer(settings).function(SPAWNER)
        settings.client("lambda").invoke(FunctionName=arn, Payload=json.dumps({"token": token}))
        deadline = time.monotonic() + 5
        while len(processes_with(token)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes_with(token)) == 2
        os.kill(settings.pid, signal.SIGKILL)
        assert wait_gone(token) == []
    finally:
        sandbox.stop(home)
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)


# --- limits ---------------------------------------------------------------------------------------------

def _zip(entries) -> bytes:
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("lambda_function.py", "def lambda_handler(e, c):\n    return 1\n")
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                zf.writestr(entry, "target")
            else:
                zf.writestr(entry, "x")
    return buf.getvalue()


def _symlink_entry():
    import stat
    import zipfile
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("entries,words", [
    (["a", "a/b"], "conflicts"),
    (["a/b", "a"], "conflicts"),
    (["same.txt", "same.txt"], "conflicts"),
    (["../escape.py"], "outside"),
    ([_symlink_entry()], "symbolic link"),
], ids=["file-then-dir", "dir-then-file", "duplicate", "traversal", "symlink"])
def test_unsafe_zip_entries_are_refused_at_create(deployer, entries, words):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we write on purpose
        code = _zip(entries)
    with pytest.raises(deployer.awslambda.exceptions.InvalidParameterValueException, match=words):
        deployer.awslambda.create_function(FunctionName=f"bad-{uuid.uuid4().hex[:8]}", Runtime="python3.12",
                                           Role=deployer.role(), Handler="lambda_function.lambda_handler",
                                           Code={"ZipFile": code})


def test_unzipped_size_limit_at_create(deployer):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("lambda_function.py", "def lambda_handler(e, c):\n    return 1\n")
        with zf.open("padding.bin", "w", force_zip64=True) as fh:
            chunk = b"\0" * (1 << 20)
            for _ in range(251):
                fh.write(chunk)
    assert len(buf.getvalue()) < 1 << 20  # a small upload ...
    with pytest.raises(deployer.awslambda.exceptions.InvalidParameterValueException,
                       match="Unzipped size must be smaller than 262144000 bytes"):
        deployer.awslambda.create_function(FunctionName=f"big-{uuid.uuid4().hex[:8]}", Runtime="python3.12",
                                           Role=deployer.role(), Handler="lambda_function.lambda_handler",
                                           Code={"ZipFile": buf.getvalue()})


def test_long_output_is_split_into_events_of_at_most_256_kb(deployer, settings):
    arn = deployer.function("def lambda_handler(event, context):\n    print('é' + 'x' * 600000 + 'END')\n",
                            timeout=30)
    deployer.awslambda.invoke(FunctionName=arn)
    logs = settings.client("logs")
    events = logs.filter_log_events(logGroupName=f"/aws/lambda/{arn.rsplit(':', 1)[1]}")["events"]
    sizes = [len(e["message"].encode()) + 26 for e in events]
    assert max(sizes) <= 256 * 1024
    text = "".join(e["message"] for e in events if "RequestId" not in e["message"]
                   and not e["message"].startswith("[sandbox]"))
    assert text == "é" + "x" * 600000 + "END"


def test_concurrent_invocations_run_at_once_up_to_the_limit(deployer):
    """10 invocations of a 6 s handler all run at the same time (each in its own worker).

    6 s: long enough that ten cold workers starting on a loaded 2-core machine all begin before the first ends."""
    import concurrent.futures
    source = "import time\ndef lambda_handler(event, context):\n    s = time.time(); time.sleep(6); return [s, time.time()]\n"
    arn = deployer.function(source, timeout=30)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        spans = list(pool.map(lambda _: json.loads(deployer.awslambda.invoke(FunctionName=arn)["Payload"].read()),
                              range(10)))
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # every run overlaps every other
