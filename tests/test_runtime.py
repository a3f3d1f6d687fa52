"""Tests for helpers/sandbox/runtime: real worker processes running real handler code.

Handler sources live in tests/fixtures/functions/<name>/; each test zips them
into tmp_path. Node tests are skipped only when no ``node`` is on PATH.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from helpers.sandbox.runtime import (CodeZipError, FunctionSpec, InvokeResult, LambdaRuntime, RuntimeUnavailable,
                                     validate_code_zip)

FIXTURES = Path(__file__).parent / "fixtures" / "functions"
ARN = "arn:aws:lambda:us-west-2:123456789012:function:"
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


def zip_dir(name: str, extra: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if name:
            for path in sorted((FIXTURES / name).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    zf.write(path, path.relative_to(FIXTURES / name).as_posix())
        for arcname, text in (extra or {}).items():
            zf.writestr(arcname, text)
    return buf.getvalue()


def make_spec(fixture="python_basic", *, name="test-function", runtime="python3.11",
              handler="lambda_function.lambda_handler", sha=None, extra=None, **kw) -> FunctionSpec:
    code = zip_dir(fixture, extra)
    return FunctionSpec(name=name, arn=ARN + name, runtime=runtime, handler=handler,
                        code_sha256=sha or f"sha-{fixture}-{len(code)}-{hash(code)}", code_zip=code, **kw)


def node_spec(handler="index.handler", **kw) -> FunctionSpec:
    return make_spec("node_basic", name=kw.pop("name", "node-function"), runtime="nodejs20.x",
                     handler=handler, **kw)


def call(rt: LambdaRuntime, spec: FunctionSpec, event, **kw) -> InvokeResult:
    return rt.invoke(spec, json.dumps(event).encode(), **kw)


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is pid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def process_gone(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.02)
    return False


def wait_until(predicate, within: float = 10.0) -> bool:
    """Poll until predicate() holds (True), or give up after `within` seconds (False)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def rt(tmp_path):
    runtime = LambdaRuntime(tmp_path / "lambda", namespaces=False)
    yield runtime
    runtime.shutdown()
    assert children_of(os.getpid()) == [], "workers left running after shutdown()"


def error_doc(result: InvokeResult) -> dict:
    assert result.function_error == "Unhandled", result
    return json.loads(result.payload)


# --- python: success paths -------------------------------------------------------------------

def test_python_context_fields(rt):
    spec = make_spec(memory_size=256, timeout=7)
    result = call(rt, spec, {"action": "context"}, request_id="req-ctx-1")
    assert result.function_error is None
    assert result.request_id == "req-ctx-1"
    ctx = json.loads(result.payload)
    assert ctx["function_name"] == "test-function"
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == ARN + "test-function"
    assert ctx["memory_limit_in_mb"] == 256
    assert ctx["aws_request_id"] == "req-ctx-1"
    assert ctx["log_group_name"] == "/aws/lambda/test-function"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", ctx["log_stream_name"])
    assert 5000 < ctx["remaining_ms"] <= 7000
    assert ctx["cwd"] == ctx["sys_path_0"]
    assert (Path(ctx["cwd"]) / "lambda_function.py").is_file()


def test_python_timeout_override_shows_in_remaining_time(rt):
    ctx = json.loads(call(rt, make_spec(timeout=30), {"action": "context"}, timeout=2.0).payload)
    assert 1000 < ctx["remaining_ms"] <= 2000


def test_python_environment(rt):
    spec = make_spec(environment={"CUSTOM_SETTING": "on", "AWS_REGION": "overridden?"}, region="eu-west-1")
    names = ["CUSTOM_SETTING", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
             "AWS_LAMBDA_FUNCTION_VERSION", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_LOG_GROUP_NAME",
             "AWS_LAMBDA_LOG_STREAM_NAME", "LAMBDA_TASK_ROOT"]
    env = json.loads(call(rt, spec, {"action": "env", "names": names}).payload)
    assert env["CUSTOM_SETTING"] == "on"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "test-function"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"  # Lambda's reserved variables win
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/test-function"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"].endswith("]" + env["AWS_LAMBDA_LOG_STREAM_NAME"][-32:])
    assert Path(env["LAMBDA_TASK_ROOT"], "lambda_function.py").is_file()


def test_python_log_has_output_between_start_end_report(rt):
    spec = make_spec()
    first = call(rt, spec, {"action": "print"}, request_id="req-log-1")
    assert first.payload == b'"printed"'
    lines = first.log.splitlines()
    # module-level output (init) comes before START, like Lambda's cold start
    assert lines[0] == "init: module imported"
    assert lines[1] == "START RequestId: req-log-1 Version: $LATEST"
    assert lines[2:4] == ["hello from the handler", "to stderr"]
    assert lines[4] == "END RequestId: req-log-1"
    assert re.fullmatch(r"REPORT RequestId: req-log-1\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
                        r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms", lines[5])
    assert len(lines) == 6 and first.log.endswith("\n")
    assert first.duration_ms >= 0
    second = call(rt, spec, {"action": "print"}, request_id="req-log-2")
    assert second.log.splitlines()[0] == "START RequestId: req-log-2 Version: $LATEST"
    assert "Init Duration" not in second.log
    assert second.log.count("hello from the handler") == 1


def test_python_none_and_unicode_results(rt):
    spec = make_spec()
    assert call(rt, spec, {"action": "none"}).payload == b"null"
    echoed = call(rt, spec, {"action": "echo", "text": "grüß dich ✓"})
    assert json.loads(echoed.payload) == {"action": "echo", "text": "grüß dich ✓"}
    assert rt.invoke(spec, b"").payload == b'{"unknown action": null}'  # empty payload is the event {}


def test_python_warm_worker_is_reused(rt):
    spec = make_spec()
    pids = {json.loads(call(rt, spec, {"action": "pid"}).payload) for _ in range(5)}
    assert len(pids) == 1
    assert pids.pop() != os.getpid()


def test_code_change_replaces_worker(rt):
    old = make_spec(sha="code-v1")
    old_pid = json.loads(call(rt, old, {"action": "pid"}).payload)
    new = make_spec("", sha="code-v2", extra={"lambda_function.py": "import os\n"
                                          "def lambda_handler(event, context):\n    return ['v2', os.getpid()]\n"})
    version, new_pid = json.loads(call(rt, new, {}).payload)
    assert version == "v2" and new_pid != old_pid
    assert process_gone(old_pid)


def test_configuration_change_replaces_worker(rt):
    first = make_spec(environment={"CUSTOM_SETTING": "one"})
    old_pid = json.loads(call(rt, first, {"action": "pid"}).payload)
    second = make_spec(environment={"CUSTOM_SETTING": "two"})
    assert second.code_sha256 == first.code_sha256
    assert json.loads(call(rt, second, {"action": "env", "names": ["CUSTOM_SETTING"]}).payload) == {
        "CUSTOM_SETTING": "two"}
    assert process_gone(old_pid)


def test_discard_kills_warm_workers(rt):
    spec = make_spec()
    pid = json.loads(call(rt, spec, {"action": "pid"}).payload)
    rt.discard("test-function")
    assert process_gone(pid)
    assert json.loads(call(rt, spec, {"action": "pid"}).payload) != pid


def test_handler_in_subdirectory_module(rt):
    spec = make_spec("", handler="pkg/mod.fn",
                     extra={"pkg/__init__.py": "", "pkg/mod.py": "def fn(event, context):\n    return 'nested'\n"})
    assert call(rt, spec, {}).payload == b'"nested"'


# --- python: failures ------------------------------------------------------------------------

def test_python_exception(rt):
    spec = make_spec()
    result = call(rt, spec, {"action": "raise"}, request_id="req-raise")
    doc = error_doc(result)
    assert doc["errorMessage"] == "boom" and doc["errorType"] == "ValueError"
    assert doc["requestId"] == "req-raise"
    assert len(doc["stackTrace"]) == 1  # only the function's frames, not the worker's
    assert re.match(r'  File ".*lambda_function\.py", line \d+, in lambda_handler\n    raise ValueError\("boom"\)\n',
                    doc["stackTrace"][0])
    assert "[ERROR] ValueError: boom\nTraceback (most recent call last):\n  File " in result.log
    # the worker survives a handled exception
    assert call(rt, spec, {"action": "none"}).function_error is None


def test_python_import_error(rt):
    spec = make_spec(handler="missing_module.lambda_handler")
    result = call(rt, spec, {}, request_id="req-imp")
    doc = error_doc(result)
    assert doc == {"errorMessage": "Unable to import module 'missing_module': No module named 'missing_module'",
                   "errorType": "Runtime.ImportModuleError", "requestId": "req-imp", "stackTrace": []}
    assert "[ERROR] Runtime.ImportModuleError: Unable to import module 'missing_module'" in result.log
    assert "END RequestId: req-imp" in result.log
    assert error_doc(call(rt, spec, {}))["errorType"] == "Runtime.ImportModuleError"  # init is retried


def test_python_module_level_exception(rt):
    spec = make_spec("", extra={"lambda_function.py": "raise RuntimeError('bad config')\n"})
    doc = error_doc(call(rt, spec, {}))
    assert doc["errorType"] == "RuntimeError" and doc["errorMessage"] == "bad config"
    assert any("lambda_function.py" in frame for frame in doc["stackTrace"])


def test_python_missing_handler(rt):
    spec = make_spec(handler="lambda_function.nope")
    doc = error_doc(call(rt, spec, {}))
    assert doc["errorType"] == "Runtime.HandlerNotFound"
    assert doc["errorMessage"] == "Handler 'nope' missing on module 'lambda_function'"


def test_python_malformed_handler(rt):
    doc = error_doc(call(rt, make_spec(handler="lambda_function"), {}))
    assert doc["errorType"] == "Runtime.MalformedHandlerName"
    assert doc["errorMessage"].startswith("Bad handler 'lambda_function'")


def test_python_syntax_error(rt):
    spec = make_spec("", extra={"lambda_function.py": "def lambda_handler(event, context)\n    return 1\n"})
    doc = error_doc(call(rt, spec, {}))
    assert doc["errorType"] == "Runtime.UserCodeSyntaxError"
    assert doc["errorMessage"].startswith("Syntax error in module 'lambda_function': ")
    assert "Line 1" in doc["stackTrace"][0]


def test_python_marshal_error(rt):
    doc = error_doc(call(rt, make_spec(), {"action": "marshal"}))
    assert doc["errorType"] == "Runtime.MarshalError"
    assert doc["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"


def test_python_invalid_event_json(rt):
    doc = error_doc(rt.invoke(make_spec(), b"{not json"))
    assert doc["errorType"] == "Runtime.UnmarshalError"


def test_python_timeout_kills_worker_and_children(rt, tmp_path):
    spec = make_spec(timeout=30)
    pidfile = tmp_path / "child.pid"
    result = call(rt, spec, {"action": "sleep_with_child", "pidfile": str(pidfile)}, timeout=0.5,
                  request_id="req-slow")
    assert json.loads(result.payload) == {
        "errorType": "Sandbox.Timedout", "errorMessage": "RequestId: req-slow Error: Task timed out after 0.50 seconds"}
    assert result.function_error == "Unhandled"
    assert re.search(r"\n\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z req-slow Task timed out after 0.50 seconds\n"
                     r"END RequestId: req-slow\n", result.log)
    assert process_gone(int(pidfile.read_text()))  # the handler's own child died with the worker
    # the runtime still serves the next call
    assert call(rt, spec, {"action": "echo"}).function_error is None


def test_python_output_before_timeout_is_logged(rt):
    result = call(rt, make_spec(), {"action": "sleep", "seconds": 5}, timeout=0.3)
    assert json.loads(result.payload)["errorType"] == "Sandbox.Timedout"
    assert "going to sleep\n" in result.log


@pytest.mark.parametrize("event, reason", [
    ({"action": "exit", "code": 1}, "Runtime exited with error: exit status 1"),
    ({"action": "os_exit", "code": 7}, "Runtime exited with error: exit status 7"),
    ({"action": "os_exit", "code": 0}, "Runtime exited without providing a reason"),
    ({"action": "segfault"}, "Runtime exited with error: signal: segmentation fault"),
])
def test_python_worker_crash(rt, event, reason):
    spec = make_spec()
    old_pid = json.loads(call(rt, spec, {"action": "pid"}).payload)
    result = call(rt, spec, event, request_id="req-crash")
    assert json.loads(result.payload) == {"errorType": "Runtime.ExitError",
                                          "errorMessage": f"RequestId: req-crash Error: {reason}"}
    assert result.function_error == "Unhandled"
    assert f"RequestId: req-crash Error: {reason}\nRuntime.ExitError\nEND RequestId: req-crash\n" in result.log
    if event["action"] == "exit":
        assert "exiting\n" in result.log
    new_pid = json.loads(call(rt, spec, {"action": "pid"}).payload)  # replaced by a fresh worker
    assert new_pid != old_pid


def test_concurrent_invokes_use_separate_workers(rt, tmp_path):
    spec = make_spec(timeout=10)
    results: list[InvokeResult] = []
    # Each invocation waits until all four are inside the handler at once: run one after the other,
    # the first would give up (False) before the others began.
    event = {"action": "rendezvous", "folder": str(tmp_path), "count": 4, "within": 8}

    def worker():
        results.append(call(rt, spec, event))
    call(rt, spec, {"action": "none"})  # one warm worker exists already
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.function_error is None for r in results), [r.payload for r in results]
    answers = [json.loads(r.payload) for r in results]
    assert all(met for _, met in answers), answers  # all four were running at the same time
    assert len({pid for pid, _ in answers}) == 4  # in four different worker processes


def test_concurrency_limit_waits_for_a_free_worker(tmp_path):
    runtime = LambdaRuntime(tmp_path / "lambda", max_workers_per_function=2, namespaces=False)
    try:
        spec = make_spec()
        pids: list[int] = []

        def worker():
            call(runtime, spec, {"action": "sleep", "seconds": 0.2})
            pids.append(json.loads(call(runtime, spec, {"action": "pid"}).payload))
        threads = [threading.Thread(target=worker) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(pids) == 5 and len(set(pids)) <= 2
    finally:
        runtime.shutdown()


def test_hung_function_does_not_block_others(rt, tmp_path):
    slow, fast = make_spec(name="slow-fn", timeout=30), make_spec(name="fast-fn")
    started, release = tmp_path / "started", tmp_path / "release"
    hung: list[InvokeResult] = []
    thread = threading.Thread(target=lambda: hung.append(call(
        rt, slow, {"action": "block", "started": str(started), "release": str(release)})))
    thread.start()
    try:
        assert wait_until(started.exists)  # the slow call is inside its handler, and stays there
        assert call(rt, fast, {"action": "none"}).payload == b"null"
        assert call(rt, slow, {"action": "none"}).payload == b"null"  # a second worker of the same function
        assert thread.is_alive() and not hung  # both answered while the first call still hung
    finally:
        release.touch()
        thread.join()
    assert hung[0].payload == b"true"


# --- code handling ---------------------------------------------------------------------------

def test_code_unzipped_once_per_sha(rt, tmp_path):
    spec = make_spec(sha="same-sha")
    call(rt, spec, {"action": "none"})
    call(rt, make_spec(name="other-fn", sha="same-sha"), {"action": "none"})
    assert len(list((tmp_path / "lambda" / "code").iterdir())) == 1


def test_zip_slip_is_refused(rt):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escaped.py", "x = 1\n")
    with pytest.raises(CodeZipError, match="outside"):
        validate_code_zip(buf.getvalue())
    spec = FunctionSpec("slip", ARN + "slip", "python3.11", "escaped.x", "slip-sha", buf.getvalue())
    with pytest.raises(CodeZipError):
        rt.invoke(spec, b"{}")
    assert not (rt.work_dir / "escaped.py").exists() and not (rt.work_dir / "code" / "escaped.py").exists()


def test_not_a_zip_is_refused():
    with pytest.raises(CodeZipError, match="Could not unzip uploaded file"):
        validate_code_zip(b"this is not a zip")


def test_unsupported_runtime(rt):
    with pytest.raises(RuntimeUnavailable, match="java17"):
        rt.invoke(make_spec(runtime="java17"), b"{}")


# --- node ------------------------------------------------------------------------------------

@needs_node
def test_node_async_handler_context_and_log(rt):
    spec = node_spec(environment={"CUSTOM_SETTING": "yes"}, memory_size=512)
    result = call(rt, spec, {"action": "context"}, request_id="node-req-1")
    assert result.function_error is None
    ctx = json.loads(result.payload)
    assert ctx["functionName"] == "node-function" and ctx["functionVersion"] == "$LATEST"
    assert ctx["invokedFunctionArn"] == ARN + "node-function"
    assert ctx["memoryLimitInMB"] == "512"
    assert ctx["awsRequestId"] == "node-req-1"
    assert ctx["logGroupName"] == "/aws/lambda/node-function"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", ctx["logStreamName"])
    assert 0 < ctx["remainingMs"] <= 3000
    assert ctx["callbackWaitsForEmptyEventLoop"] is True
    assert ctx["envRegion"] == "us-west-2" and ctx["envCustom"] == "yes"
    assert re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z\tundefined\tINFO\tinit: module loaded\n", result.log)

    logged = call(rt, spec, {"action": "log"}, request_id="node-req-2")
    lines = logged.log.splitlines()
    assert lines[0] == "START RequestId: node-req-2 Version: $LATEST"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\tnode-req-2\tINFO\thello \{ from: 'node' \}",
                        lines[1])
    assert re.fullmatch(r"\S+Z\tnode-req-2\tERROR\tbad thing", lines[2])
    assert lines[3] == "END RequestId: node-req-2" and lines[4].startswith("REPORT RequestId: node-req-2\t")


@needs_node
def test_node_warm_reuse_and_undefined_result(rt):
    spec = node_spec()
    pids = {json.loads(call(rt, spec, {"action": "pid"}).payload) for _ in range(3)}
    assert len(pids) == 1
    assert call(rt, spec, {"action": "none"}).payload == b"null"


@needs_node
def test_node_callback_and_promise_handlers(rt):
    result = call(rt, node_spec("index.callbackHandler"), {"value": 42})
    assert result.function_error is None
    assert json.loads(result.payload) == {"viaCallback": True, "got": 42}
    failed = error_doc(call(rt, node_spec("index.callbackHandler"), {"fail": True}))
    assert failed["errorType"] == "TypeError" and failed["errorMessage"] == "callback failure"
    promised = call(rt, node_spec("index.promiseHandler"), {"value": "p"})
    assert json.loads(promised.payload) == {"viaPromise": "p"}


@needs_node
def test_node_throw_and_reject(rt):
    result = call(rt, node_spec(), {"action": "throw"})
    doc = error_doc(result)
    assert doc["errorType"] == "Error" and doc["errorMessage"] == "boom"
    assert doc["trace"][0] == "Error: boom" and doc["trace"][1].startswith("    at ")
    assert "\tERROR\tInvoke Error \t{\"errorType\":\"Error\",\"errorMessage\":\"boom\"" in result.log
    rejected = error_doc(call(rt, node_spec("index.rejectHandler"), {}))
    assert rejected["errorType"] == "Error" and rejected["errorMessage"] == "rejected"


@needs_node
def test_node_timeout_and_exit(rt):
    spec = node_spec()
    result = call(rt, spec, {"action": "sleep", "ms": 10000}, timeout=0.5, request_id="node-slow")
    assert json.loads(result.payload)["errorMessage"] == "RequestId: node-slow Error: Task timed out after 0.50 seconds"
    assert call(rt, spec, {"action": "sleep", "ms": 1}).payload == b'"slept"'  # a new worker serves the next call
    crashed = error_doc(call(rt, spec, {"action": "exit"}))
    assert crashed["errorType"] == "Runtime.ExitError"
    assert crashed["errorMessage"].endswith("Error: Runtime exited with error: exit status 3")


@needs_node
def test_node_missing_module_and_handler(rt):
    missing = error_doc(call(rt, node_spec("nothere.handler"), {}))
    assert missing["errorType"] == "Runtime.ImportModuleError"
    assert missing["errorMessage"].startswith("Error: Cannot find module 'nothere'")
    no_handler = error_doc(call(rt, node_spec("index.nope"), {}))
    assert no_handler["errorType"] == "Runtime.HandlerNotFound"
    assert no_handler["errorMessage"] == "index.nope is undefined or not exported"


@needs_node
def test_node_esm_module(rt):
    spec = make_spec("node_esm", name="esm-function", runtime="nodejs22.x", handler="app.handler")
    assert json.loads(call(rt, spec, {"value": 1}).payload) == {"esm": True, "value": 1}


def test_node_missing_raises_runtime_unavailable(tmp_path):
    runtime = LambdaRuntime(tmp_path / "lambda", node_path=None, namespaces=False)
    try:
        with pytest.raises(RuntimeUnavailable, match="Node.js, which is not installed.*apt-get install nodejs"):
            runtime.invoke(node_spec(), b"{}")
    finally:
        runtime.shutdown()


# --- lifecycle -------------------------------------------------------------------------------

def test_shutdown_kills_idle_and_busy_workers(tmp_path):
    runtime = LambdaRuntime(tmp_path / "lambda", namespaces=False)
    spec = make_spec()
    idle_pid = json.loads(call(runtime, make_spec(name="idle-fn"), {"action": "pid"}).payload)
    busy: list[InvokeResult] = []
    started, release = tmp_path / "started", tmp_path / "never-released"
    thread = threading.Thread(target=lambda: busy.append(call(
        runtime, spec, {"action": "block", "started": str(started), "release": str(release)}, timeout=30)))
    thread.start()
    assert wait_until(started.exists)  # busy: inside its handler
    runtime.shutdown()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert json.loads(busy[0].payload)["errorType"] == "Runtime.ExitError"
    assert process_gone(idle_pid)
    assert children_of(os.getpid()) == []
    runtime.shutdown()  # idempotent
    with pytest.raises(RuntimeUnavailable, match="shut down"):
        call(runtime, spec, {})


ORPHAN_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from helpers.sandbox.runtime import FunctionSpec, LambdaRuntime
    code = Path(sys.argv[1]).read_bytes()
    rt = LambdaRuntime(Path(sys.argv[2]), namespaces=False)
    pids = []
    for runtime, handler in json.loads(sys.argv[3]):
        spec = FunctionSpec(runtime, "arn", runtime, handler, "sha-" + runtime, code)
        pids.append(json.loads(rt.invoke(spec, b'{"action": "pid"}').payload))
    print(json.dumps(pids), flush=True)
    os._exit(0)  # no shutdown(): the workers must die with this process anyway
""")


def test_workers_die_with_the_sandbox_process(tmp_path):
    code = tmp_path / "code.zip"
    code.write_bytes(zip_dir("python_basic", extra={"index.js": (FIXTURES / "node_basic/index.js").read_text()}))
    runtimes = [["python3.12", "lambda_function.lambda_handler"]]
    if shutil.which("node"):
        runtimes.append(["nodejs18.x", "index.handler"])
    out = subprocess.run([sys.executable, "-c", ORPHAN_SCRIPT, str(code), str(tmp_path / "lambda"),
                          json.dumps(runtimes)], capture_output=True, text=True, timeout=30,
                         cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr
    pids = json.loads(out.stdout)
    assert len(pids) == len(runtimes)
    for pid in pids:
        assert process_gone(pid, within=3.0), f"worker {pid} outlived the sandbox"


def test_large_output_and_payload(rt):
    spec = make_spec("", extra={"lambda_function.py": (
        "def lambda_handler(event, context):\n"
        "    for i in range(20000):\n"
        "        print('line', i, 'x' * 40)\n"
        "    return {'blob': 'y' * event['size']}\n")})
    result = call(rt, spec, {"size": 3_000_000})
    assert result.function_error is None
    assert len(json.loads(result.payload)["blob"]) == 3_000_000
    body = result.log.split("Version: $LATEST\n", 1)[1].split("END RequestId")[0].splitlines()
    assert len(body) == 20000 and body[-1].startswith("line 19999 ")
    too_big = error_doc(call(rt, spec, {"size": 7_000_000}))
    assert too_big["errorType"] == "Function.ResponseSizeTooLarge"


def test_python_runtime_uses_that_interpreter_or_says_which_it_used(rt):
    """A python3.X function runs under python3.X when the machine has it; otherwise its log says so, once."""
    source = {"lambda_function.py": "import sys\ndef lambda_handler(event, context):\n"
                                    "    return '%d.%d' % sys.version_info[:2]\n"}
    for minor in (8, 9, 10, 11, 12, 13):
        runtime = f"python3.{minor}"
        spec = make_spec("", name=f"py{minor}", runtime=runtime, sha=f"sha-py{minor}", extra=source)
        first, second = call(rt, spec, {}), call(rt, spec, {})
        ran = json.loads(first.payload)
        note = "[sandbox] python3.%d is not installed on this machine" % minor
        if ran == f"3.{minor}":
            assert note not in first.init_log
        else:
            assert ran == "%d.%d" % sys.version_info[:2]
            assert first.init_log.count(note) == 1 and note not in second.init_log
            assert note not in first.log  # the Tail shows the function's own log only, as on Lambda
