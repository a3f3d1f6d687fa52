"""The sandbox's Lambda execution engine: runs function code in real worker processes.

Every function runs in its own worker process, never in the caller's:
``python_worker.py`` for ``python3.x`` runtimes, ``node_worker.js`` for
``nodejs*.x`` runtimes. Usage::

    rt = LambdaRuntime(Path("/tmp/sandbox-lambda"))
    spec = FunctionSpec(name="custom-auth-function", arn=..., runtime="python3.11",
                        handler="lambda_function.lambda_handler",
                        code_sha256=..., code_zip=zip_bytes)
    result = rt.invoke(spec, b'{"token": "allow"}')
    result.payload          # b'{"isAuthenticated": true, ...}' or Lambda's error document
    result.function_error   # None, or "Unhandled" (as Lambda's X-Amz-Function-Error)
    result.log              # "START RequestId: ...\\n...END ...\\nREPORT ...\\n"
    rt.shutdown()

How it works:

- The code is unzipped once per ``code_sha256`` under ``work_dir/code/``
  (entries that would land outside that directory are refused).
- Warm workers are kept per function version (up to
  ``max_workers_per_function``; further concurrent invokes wait for a free
  one) and reused; a worker that is stale (``code_sha256`` or any other
  setting it was started with changed, or :meth:`LambdaRuntime.discard`) is
  replaced.
- The sandbox talks to a worker over a socketpair (a JSON header line plus raw
  bytes each way). The worker's stdout and stderr share one pipe, which is the
  function's log; marker lines written by the worker around each invocation
  cut it into exactly that invocation's output.
- Python functions run under the sandbox's own interpreter (``python_path``,
  normally this virtualenv's Python 3.11) whatever ``python3.x`` the function
  names, so handlers can import everything installed here (boto3 included, as
  on Lambda). Node.js functions run under the ``node`` on PATH whatever
  ``nodejs*.x`` they name.
- A timeout kills the worker's whole process group; a crash is reported as
  Lambda's ``Runtime.ExitError``. Workers die with the sandbox
  (PR_SET_PDEATHSIG on Linux, and end-of-file on their protocol socket).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .codezip import CodeCache
from .spec import NODEJS_RUNTIMES, PYTHON_RUNTIMES, FunctionSpec, InvokeResult, RuntimeUnavailable
from .worker import Worker, exit_reason, pdeathsig

_HERE = Path(__file__).resolve().parent
PYTHON_WORKER = _HERE / "python_worker.py"
NODE_WORKER = _HERE / "node_worker.js"
JAIL = _HERE / "jail.py"
#: Lambda's limit for a synchronous response ("... maximum allowed payload size (6291556 bytes).").
MAX_RESPONSE_BYTES = 6291556


def _fingerprint(spec: FunctionSpec) -> str:
    """What a warm worker was started with: a change to any of it needs a new worker (as on Lambda)."""
    config = [spec.code_sha256, spec.runtime, spec.handler, spec.memory_size, spec.region, spec.arn, spec.role,
              sorted((spec.environment or {}).items())]
    return hashlib.sha256(json.dumps(config, default=str).encode()).hexdigest()


def _timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Pool:
    """The warm workers of one function version, and how many exist (idle or busy)."""

    def __init__(self, limit: int):
        self.cond = threading.Condition()
        self.limit = limit
        self.idle: list[Worker] = []
        self.count = 0
        self.generation = 0
        self.fingerprint: str | None = None  # the configuration current workers were started with


# --- the engine ------------------------------------------------------------------------------

_DETECT = object()


class LambdaRuntime:
    """Runs Lambda functions in warm worker processes. Thread-safe."""

    def __init__(self, work_dir: Path, node_path: str | None = _DETECT,  # type: ignore[assignment]
                 python_path: str = sys.executable, max_workers_per_function: int = 4,
                 hide: tuple[Path, ...] = (), namespaces: bool = True):
        self.work_dir = Path(work_dir)
        self.node_path = shutil.which("node") if node_path is _DETECT else node_path
        self.python_path = python_path
        self._interpreters: dict[str, str | None] = {}
        #: Directories a worker must not see (the sandbox home): hidden by its jail where namespaces exist.
        self.hide = tuple(str(Path(p)) for p in hide)
        #: Jail workers in user/mount/PID namespaces where the platform allows (False: subreaper only).
        self.namespaces = namespaces
        self.max_workers = max(1, int(max_workers_per_function))
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, str], Pool] = {}
        self._workers: set[Worker] = set()
        self._code = CodeCache(self.work_dir / "code")
        self._closed = False
        #: ``spec -> (environment variables, expiry epoch)``: the execution role's temporary credentials
        #: (AWS_ACCESS_KEY_ID ``ASIA...``, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) for a new worker. Without
        #: it, workers get no AWS credentials at all. Never the sandbox's own key pair.
        self.credential_issuer = None
        #: A warm worker whose credentials expire within this many seconds is replaced before an invoke.
        self.credential_margin = 300.0
        # Workers are started from one long-lived thread: PR_SET_PDEATHSIG fires when the
        # *thread* that forked a worker exits, and callers' threads (HTTP requests) are short-lived.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda-spawner")

    # -- public API --

    def invoke(self, spec: FunctionSpec, payload: bytes, *, timeout: float | None = None,
               request_id: str | None = None) -> InvokeResult:
        request_id = request_id or str(uuid.uuid4())
        limit = float(spec.timeout if timeout is None else timeout)
        command = self._command(spec)
        code_dir = self._code.directory(spec)
        pool = self._pool(spec)
        worker, generation = self._acquire(pool, _fingerprint(spec))
        keep = False
        try:
            if worker is None:
                worker = self._spawn(spec, command, code_dir, generation)
            result, keep = self._exchange(worker, spec, payload or b"{}", request_id, limit)
            if worker.note:  # the first invocation of this worker carries its platform note
                result.init_log, worker.note = worker.note + "\n", None
            return result
        finally:
            self._release(pool, worker, keep)

    def discard(self, function_name: str) -> None:
        """Kill the function's idle workers now, and its busy ones when their invoke ends."""
        with self._lock:
            pools = [p for (name, *_), p in self._pools.items() if name == function_name]
        for pool in pools:
            with pool.cond:
                pool.generation += 1
                doomed, pool.idle = pool.idle, []
                pool.count -= len(doomed)
                pool.cond.notify_all()
            for worker in doomed:
                self._finish(worker)

    def shutdown(self) -> None:
        """Kill every worker (busy ones too: their invokes end with Runtime.ExitError). Idempotent."""
        with self._lock:
            self._closed = True
            pools = list(self._pools.values())
        for pool in pools:
            with pool.cond:
                doomed, pool.idle = pool.idle, []
                pool.count -= len(doomed)
                pool.cond.notify_all()
            for worker in doomed:
                self._finish(worker)
        with self._lock:
            busy = list(self._workers)
        for worker in busy:
            worker.signal_kill()  # its invoking thread reaps it
        self._spawner.shutdown(wait=True)

    def __enter__(self) -> LambdaRuntime:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- workers --

    def _command(self, spec: FunctionSpec) -> list[str]:
        if spec.runtime in PYTHON_RUNTIMES or re.fullmatch(r"python3\.\d+", spec.runtime):
            return [self._python_for(spec.runtime)[0], "-u", str(PYTHON_WORKER)]
        if spec.runtime.startswith("nodejs"):
            if not self.node_path:
                raise RuntimeUnavailable(
                    f"Function {spec.name} uses the {spec.runtime} runtime: the sandbox runs nodejs handlers "
                    "with Node.js, which is not installed on this machine: install it (e.g. apt-get install "
                    "nodejs) or use a python3.x runtime")
            return [self.node_path, str(NODE_WORKER)]
        raise RuntimeUnavailable(
            f"Function {spec.name} uses the runtime {spec.runtime!r}, which the sandbox cannot run: use one of "
            f"{', '.join(PYTHON_RUNTIMES + NODEJS_RUNTIMES)}")

    def _python_for(self, runtime: str) -> tuple[str, str | None]:
        """(interpreter, note): the machine's ``python3.X`` for a ``python3.X`` function when it has one,
        else the sandbox's own, with the one log line that says so."""
        own = f"python{sys.version_info.major}.{sys.version_info.minor}"
        if runtime == own or self.python_path != sys.executable:
            return self.python_path, None
        found = self._interpreters.get(runtime, _DETECT)
        if found is _DETECT:  # look once: is there a working python3.X (a pyenv shim may name one it lacks)?
            found = shutil.which(runtime)
            if found:
                try:
                    out = subprocess.run([found, "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                         capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
                    found = found if out.returncode == 0 and out.stdout.strip() == runtime[len("python"):] else None
                except (OSError, subprocess.TimeoutExpired):
                    found = None
            self._interpreters[runtime] = found
        if found:
            return found, None
        return self.python_path, (f"[sandbox] {runtime} is not installed on this machine: this function runs under "
                                  f"the sandbox's Python {sys.version.split()[0]}.")

    def _pool(self, spec: FunctionSpec) -> Pool:
        with self._lock:
            if self._closed:
                raise RuntimeUnavailable("The sandbox's Lambda runtime has been shut down; start a new sandbox.")
            key = (spec.name, spec.region, spec.version)
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = Pool(self.max_workers)
            return pool

    def _acquire(self, pool: Pool, fingerprint: str) -> tuple[Worker | None, int]:
        """(a warm worker for this configuration, or None: the caller may start one; the generation).

        Waits while all of the function's workers are busy.
        """
        doomed: list[Worker] = []
        try:
            with pool.cond:
                if pool.fingerprint != fingerprint:  # new code or settings: every existing worker is stale
                    pool.fingerprint = fingerprint
                    pool.generation += 1
                while True:
                    if self._closed:
                        raise RuntimeUnavailable("The sandbox's Lambda runtime has been shut down.")
                    while pool.idle:
                        worker = pool.idle.pop()  # the most recently used: the warmest
                        fresh = (worker.credentials_expire is None
                                 or worker.credentials_expire - time.time() > self.credential_margin)
                        if worker.generation == pool.generation and fresh and not worker.exited():
                            return worker, pool.generation
                        doomed.append(worker)
                        pool.count -= 1
                    if pool.count < pool.limit:
                        pool.count += 1
                        return None, pool.generation
                    pool.cond.wait()
        finally:
            for worker in doomed:
                self._finish(worker)

    def _release(self, pool: Pool, worker: Worker | None, keep: bool) -> None:
        with pool.cond:
            if worker is not None and keep and worker.generation == pool.generation and not self._closed:
                pool.idle.append(worker)
                worker = None
            else:
                pool.count -= 1
            pool.cond.notify()
        if worker is not None:
            self._finish(worker)

    def _finish(self, worker: Worker) -> int:
        with self._lock:
            self._workers.discard(worker)
        return worker.finish()

    def _spawn(self, spec: FunctionSpec, command: list[str], code_dir: Path, generation: int) -> Worker:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        nonce = secrets.token_hex(8)
        args = ([sys.executable, "-S", "-E", str(JAIL), str(os.getpid()),
                 "1" if self.namespaces else "0", *self.hide, "--"] + command
                + [str(child_end.fileno()), nonce, spec.handler, str(os.getpid())])
        env = self._environment(spec, code_dir)
        expires = None
        if self.credential_issuer is not None:
            credentials, expires = self.credential_issuer(spec)
            env.update(credentials)
        is_node = not spec.runtime.startswith("python")

        def start() -> subprocess.Popen:
            return subprocess.Popen(args, cwd=code_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, pass_fds=(child_end.fileno(),),
                                    start_new_session=True, preexec_fn=pdeathsig if is_node else None)
        try:
            proc = self._spawner.submit(start).result()
        except OSError as exc:
            parent_end.close()
            raise RuntimeUnavailable(f"Could not start the {spec.runtime} worker ({args[0]}): {exc}") from None
        except RuntimeError:  # the spawner was shut down meanwhile
            parent_end.close()
            raise RuntimeUnavailable("The sandbox's Lambda runtime has been shut down.") from None
        finally:
            child_end.close()
        worker = Worker(proc, parent_end, nonce, generation)
        worker.credentials_expire = expires
        worker.note = self._python_for(spec.runtime)[1] if spec.runtime.startswith("python") else None
        with self._lock:
            self._workers.add(worker)
            closed = self._closed
        if closed:
            worker.signal_kill()
        return worker

    def _environment(self, spec: FunctionSpec, code_dir: Path) -> dict[str, str]:
        today = _dt.datetime.now(_dt.timezone.utc)
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC"}
        env.update({str(k): str(v) for k, v in (spec.environment or {}).items()})
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{today:%Y/%m/%d}/[{spec.version}]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": spec.handler,
        })
        return env

    # -- one invocation --

    def _exchange(self, worker: Worker, spec: FunctionSpec, payload: bytes, request_id: str,
                  limit: float) -> tuple[InvokeResult, bool]:
        """Send one request and wait for its answer; returns (result, worker still usable)."""
        started = time.monotonic()
        deadline = started + limit
        header = {"id": request_id, "arn": spec.arn, "deadline": int((time.time() + limit) * 1000),
                  "len": len(payload)}
        response = None
        timed_out = exited = False
        try:
            worker.sock.settimeout(limit)
            worker.sock.sendall(json.dumps(header).encode() + b"\n" + payload)
        except TimeoutError:
            timed_out = True
        except OSError:
            exited = True
        while not (timed_out or exited):
            response = response or worker.take_response()
            if response is not None and (worker.log_eof or worker.has_end_marker(request_id)):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for fd, _ in worker.poller.poll(math.ceil(remaining * 1000)):
                if fd == worker.log_fd:
                    worker.read_log()
                elif fd == worker.sock_fd:
                    exited = not worker.read_sock() or exited
                else:  # pidfd: the process ended
                    exited = True
        if exited:  # maybe it answered before dying (e.g. an init failure): collect that first
            worker.wait_exit(min(2.0, max(0.1, deadline - time.monotonic())))
            worker.drain_sock()
            returncode = self._finish(worker)
            response = response or worker.take_response()
            if response is not None:
                return self._answered(worker, spec, request_id, response, cold=worker.cold), False
            return self._died(worker, spec, request_id, started, returncode), False
        if timed_out:
            self._finish(worker)
            return self._timed_out(worker, spec, request_id, limit), False
        cold, worker.cold = worker.cold, False
        fatal = response[0].get("fatal", False)
        return self._answered(worker, spec, request_id, response, cold=cold), not fatal

    def _log(self, worker: Worker, spec: FunctionSpec, request_id: str, duration: float, memory: int,
             extra: str = "", init: float | None = None, status: str = "") -> str:
        before, during = worker.cut_log(request_id)
        report = (f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
                  f"Billed Duration: {max(1, math.ceil(duration))} ms\tMemory Size: {spec.memory_size} MB\t"
                  f"Max Memory Used: {memory} MB")
        if init is not None:
            report += f"\tInit Duration: {init:.2f} ms"
        report += status
        if during and not during.endswith("\n"):
            during += "\n"
        if before and not before.endswith("\n"):
            before += "\n"
        return (f"{before}START RequestId: {request_id} Version: {spec.version}\n{during}{extra}"
                f"END RequestId: {request_id}\n{report}\n")

    def _answered(self, worker, spec, request_id, response, cold) -> InvokeResult:
        header, body = response
        worker.peak_mb = max(worker.peak_mb, header.get("mem") or 0)
        if header["ok"] and len(body) > MAX_RESPONSE_BYTES:
            header = dict(header, ok=False)
            body = json.dumps({"errorMessage": f"Response payload size exceeded maximum allowed payload size "
                                               f"({MAX_RESPONSE_BYTES} bytes).",
                               "errorType": "Function.ResponseSizeTooLarge"}).encode()
        log = self._log(worker, spec, request_id, header["dur"], worker.peak_mb,
                           init=header.get("init") if cold else None)
        return InvokeResult(body, None if header["ok"] else "Unhandled", log, header["dur"], request_id)

    def _timed_out(self, worker, spec, request_id, limit) -> InvokeResult:
        message = f"Task timed out after {limit:.2f} seconds"
        duration = limit * 1000
        log = self._log(worker, spec, request_id, duration, worker.peak_mb,
                           extra=f"{_timestamp()} {request_id} {message}\n", status="\tStatus: timeout")
        doc = {"errorType": "Sandbox.Timedout", "errorMessage": f"RequestId: {request_id} Error: {message}"}
        return InvokeResult(json.dumps(doc).encode(), "Unhandled", log, duration, request_id)

    def _died(self, worker, spec, request_id, started, returncode) -> InvokeResult:
        reason = exit_reason(returncode)
        duration = (time.monotonic() - started) * 1000
        log = self._log(worker, spec, request_id, duration, worker.peak_mb,
                           extra=f"RequestId: {request_id} Error: {reason}\nRuntime.ExitError\n",
                           status="\tStatus: error\tError Type: Runtime.ExitError")
        doc = {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {request_id} Error: {reason}"}
        return InvokeResult(json.dumps(doc).encode(), "Unhandled", log, duration, request_id)
