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

import ctypes
import datetime as _dt
import hashlib
import json
import math
import os
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from . import jail

__all__ = ["FunctionSpec", "InvokeResult", "LambdaRuntime", "RuntimeUnavailable", "CodeZipError",
           "validate_code_zip", "PYTHON_RUNTIMES", "NODEJS_RUNTIMES"]

PYTHON_RUNTIMES = tuple(f"python3.{minor}" for minor in range(8, 14))
NODEJS_RUNTIMES = tuple(f"nodejs{major}.x" for major in range(14, 23, 2))
_HERE = Path(__file__).resolve().parent
PYTHON_WORKER = _HERE / "python_worker.py"
NODE_WORKER = _HERE / "node_worker.js"
JAIL = _HERE / "jail.py"
#: Lambda's limit for a synchronous response ("... maximum allowed payload size (6291556 bytes).").
MAX_RESPONSE_BYTES = 6291556
#: How long to wait for the rest of a dead worker's output after killing its process group.
_DRAIN_SECONDS = 1.0


@dataclass
class FunctionSpec:
    name: str
    arn: str
    runtime: str
    handler: str
    code_sha256: str
    code_zip: bytes
    timeout: float = 3.0
    memory_size: int = 128
    environment: dict[str, str] = field(default_factory=dict)
    region: str = "us-west-2"
    version: str = "$LATEST"
    #: The execution role's ARN: the worker's AWS_* credentials are that role's (see ``credential_issuer``).
    role: str = ""


@dataclass
class InvokeResult:
    payload: bytes
    function_error: str | None
    log: str
    duration_ms: float
    request_id: str
    #: Platform lines for the log group only, not the Tail (like Lambda's INIT_START), e.g. which
    #: interpreter ran a python3.X function the machine lacks.
    init_log: str = ""


class RuntimeUnavailable(Exception):
    """The function's runtime cannot run here (e.g. nodejs without ``node``); the message says what to do."""


class CodeZipError(ValueError):
    """The uploaded code is not a zip the sandbox can unpack safely."""


#: Lambda's deployment package limit: "250 MB (unzipped)", as the bytes its error message names.
MAX_UNZIPPED_BYTES = 262144000


def validate_code_zip(code_zip: bytes) -> None:
    """Raise :class:`CodeZipError` unless ``code_zip`` is a zip the sandbox can unpack safely and fully.

    Refused: unreadable zips; entries with absolute paths or ``..``; symbolic links;
    entries that conflict (the same path twice, or a file where another entry needs a
    directory, like ``a`` then ``a/b``); more than 250 MB unzipped (Lambda's limit,
    counted from the sizes the entries declare). The Lambda service calls this at
    CreateFunction/UpdateFunctionCode and answers ``InvalidParameterValueException``.
    """
    try:
        with zipfile.ZipFile(BytesIO(code_zip)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
        raise CodeZipError("Could not unzip uploaded file. Please check your file, then try to upload again.") \
            from None
    total = 0
    files: set[str] = set()
    dirs: set[str] = set()
    for info in infos:
        _check_member(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise CodeZipError(f"Could not unzip uploaded file: the entry {info.filename!r} is a symbolic link, "
                               "which the sandbox does not unpack. Zip the file itself (zip without -y).")
        total += info.file_size
        parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        path = "/".join(parts)
        parents = {"/".join(parts[:i]) for i in range(1, len(parts))}
        is_dir = info.is_dir()
        clash = (path in files or (not is_dir and path in dirs) or (parents & files))
        if clash:
            raise CodeZipError(f"Could not unzip uploaded file: the entry {info.filename!r} conflicts with another "
                               "entry of the same path (a file and a directory, or the same file twice). Zip each "
                               "path once.")
        dirs |= parents
        (dirs if is_dir else files).add(path)
    if total > MAX_UNZIPPED_BYTES:
        raise CodeZipError(f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes")


def _check_member(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise CodeZipError(f"Could not unzip uploaded file: the entry {name!r} points outside the "
                           "function's directory. Zip the files with paths relative to the code root.")


# --- process helpers -------------------------------------------------------------------------

if sys.platform.startswith("linux"):
    _LIBC = ctypes.CDLL(None, use_errno=True)

    def _pdeathsig() -> None:  # runs in the child between fork and exec (node workers only)
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
else:  # pragma: no cover - the sandbox targets Linux; elsewhere workers exit on socket EOF
    _pdeathsig = None

#: Go's names for signals, as Lambda's "Runtime exited with error: signal: killed".
_SIGNAL_NAMES = {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
                 signal.SIGTERM: "terminated", signal.SIGBUS: "bus error", signal.SIGFPE: "floating point exception",
                 signal.SIGILL: "illegal instruction", signal.SIGINT: "interrupt", signal.SIGPIPE: "broken pipe",
                 signal.SIGHUP: "hangup", signal.SIGQUIT: "quit"}


def _exit_reason(returncode: int) -> str:
    if returncode == 0:
        return "Runtime exited without providing a reason"
    if returncode < 0:
        sig = -returncode
        try:
            name = _SIGNAL_NAMES.get(signal.Signals(sig)) or signal.strsignal(sig).lower()
        except ValueError:
            name = f"signal {sig}"
        return f"Runtime exited with error: signal: {name}"
    return f"Runtime exited with error: exit status {returncode}"


def _fingerprint(spec: FunctionSpec) -> str:
    """What a warm worker was started with: a change to any of it needs a new worker (as on Lambda)."""
    config = [spec.code_sha256, spec.runtime, spec.handler, spec.memory_size, spec.region, spec.arn, spec.role,
              sorted((spec.environment or {}).items())]
    return hashlib.sha256(json.dumps(config, default=str).encode()).hexdigest()


def _wait_readable(fd: int, seconds: float) -> bool:
    poller = select.poll()  # not select.select: it fails for descriptors >= 1024
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(seconds * 1000))))


def _timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Worker:
    """One worker process, its protocol socket and its log pipe. Used by one invoke at a time."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket, nonce: str, generation: int):
        self.proc, self.sock, self.generation = proc, sock, generation
        self.marker = b"\0" + nonce.encode() + b":"
        self.log_fd = proc.stdout.fileno()
        self.sock_fd = sock.fileno()
        self.log = bytearray()
        self.inbox = bytearray()
        self.log_eof = False
        self.cold = True
        self.lock = threading.Lock()
        self.reaped = False
        self.peak_mb = 0  # Max Memory Used, as last reported
        self.credentials_expire: float | None = None  # when the role credentials in its environment expire
        self.note: str | None = None  # one line for the first invocation's log (e.g. a substituted interpreter)
        self.poller = select.poll()
        self.poller.register(self.sock_fd, select.POLLIN)
        self.poller.register(self.log_fd, select.POLLIN)
        try:
            self.pidfd = os.pidfd_open(proc.pid)
            self.poller.register(self.pidfd, select.POLLIN)
        except (AttributeError, OSError):  # no pidfd (old kernel): socket EOF tells us instead
            self.pidfd = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        """True once the process has ended (without reaping it, so its group can still be killed)."""
        if self.reaped:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def wait_exit(self, seconds: float) -> None:
        """Give a worker that closed its socket a moment to exit by itself (for its true exit status)."""
        if self.pidfd is not None:
            _wait_readable(self.pidfd, seconds)
            return
        deadline = time.monotonic() + seconds
        while not self.exited() and time.monotonic() < deadline:
            time.sleep(0.005)

    def signal_kill(self) -> None:
        """SIGKILL the worker and everything it started, whatever session or group it moved to.

        Safe from any thread. Its jail (``jail.py``) is PID 1's parent in a PID namespace
        (killing it ends the namespace) or, without namespaces, a child subreaper that
        keeps every orphan in its tree: the tree is killed first, then the group.
        """
        with self.lock:
            if not self.reaped:
                for _ in range(20):
                    pids = jail.descendants(self.pid)
                    if not pids:
                        break
                    for pid in pids:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    return  # the whole group is already gone

    def read_log(self) -> None:
        data = os.read(self.log_fd, 65536)
        if data:
            self.log += data
        else:
            self.log_eof = True
            self.poller.unregister(self.log_fd)

    def read_sock(self) -> bool:
        """Read what the worker sent; False at end-of-file."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        if data:
            self.inbox += data
            return True
        self.poller.unregister(self.sock_fd)
        return False

    def drain_sock(self) -> None:
        """Read whatever the (dead) worker sent before it went away."""
        self.sock.setblocking(False)
        try:
            while data := self.sock.recv(65536):
                self.inbox += data
        except OSError:  # nothing more without blocking (a grandchild may still hold the socket)
            return

    def take_response(self) -> tuple[dict, bytes] | None:
        newline = self.inbox.find(b"\n")
        if newline < 0:
            return None
        header = json.loads(self.inbox[:newline])
        end = newline + 1 + header["len"]
        if len(self.inbox) < end:
            return None
        body = bytes(self.inbox[newline + 1:end])
        del self.inbox[:end]
        return header, body

    def finish(self) -> int:
        """Kill the process group, collect the remaining output, reap, close. Returns the exit code."""
        if self.reaped:
            return self.proc.returncode
        self.signal_kill()
        deadline = time.monotonic() + _DRAIN_SECONDS
        while not self.log_eof and time.monotonic() < deadline:
            if _wait_readable(self.log_fd, deadline - time.monotonic()):
                self.read_log()
        with self.lock:
            _, status, usage = os.wait4(self.pid, 0)
            self.proc.returncode = returncode = os.waitstatus_to_exitcode(status)
            self.reaped = True
        self.peak_mb = max(self.peak_mb, -(-usage.ru_maxrss // 1024))
        self.sock.close()
        self.proc.stdout.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        return returncode

    def cut_log(self, request_id: str) -> tuple[str, str]:
        """Split off (output before the invocation, output of the invocation) from the log buffer."""
        start = self.marker + b"START:" + request_id.encode() + b"\n"
        end = self.marker + b"END:" + request_id.encode() + b"\n"
        s = self.log.find(start)
        if s < 0:
            before, during = bytes(self.log), b""
            self.log.clear()
        else:
            e = self.log.find(end, s)
            before = bytes(self.log[:s])
            during = bytes(self.log[s + len(start):] if e < 0 else self.log[s + len(start):e])
            del self.log[:len(self.log) if e < 0 else e + len(end)]
        return before.decode("utf-8", "replace"), during.decode("utf-8", "replace")

    def has_end_marker(self, request_id: str) -> bool:
        return self.log.find(self.marker + b"END:" + request_id.encode() + b"\n") >= 0


class _Pool:
    """The warm workers of one function version, and how many exist (idle or busy)."""

    def __init__(self, limit: int):
        self.cond = threading.Condition()
        self.limit = limit
        self.idle: list[_Worker] = []
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
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._workers: set[_Worker] = set()
        self._code_dirs: dict[str, Path] = {}
        self._code_lock = threading.Lock()
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
        code_dir = self._code_dir(spec)
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

    def _pool(self, spec: FunctionSpec) -> _Pool:
        with self._lock:
            if self._closed:
                raise RuntimeUnavailable("The sandbox's Lambda runtime has been shut down; start a new sandbox.")
            key = (spec.name, spec.region, spec.version)
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _Pool(self.max_workers)
            return pool

    def _acquire(self, pool: _Pool, fingerprint: str) -> tuple[_Worker | None, int]:
        """(a warm worker for this configuration, or None: the caller may start one; the generation).

        Waits while all of the function's workers are busy.
        """
        doomed: list[_Worker] = []
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

    def _release(self, pool: _Pool, worker: _Worker | None, keep: bool) -> None:
        with pool.cond:
            if worker is not None and keep and worker.generation == pool.generation and not self._closed:
                pool.idle.append(worker)
                worker = None
            else:
                pool.count -= 1
            pool.cond.notify()
        if worker is not None:
            self._finish(worker)

    def _finish(self, worker: _Worker) -> int:
        with self._lock:
            self._workers.discard(worker)
        return worker.finish()

    def _spawn(self, spec: FunctionSpec, command: list[str], code_dir: Path, generation: int) -> _Worker:
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
                                    start_new_session=True, preexec_fn=_pdeathsig if is_node else None)
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
        worker = _Worker(proc, parent_end, nonce, generation)
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

    # -- code --

    def _code_dir(self, spec: FunctionSpec) -> Path:
        with self._code_lock:
            ready = self._code_dirs.get(spec.code_sha256)
            if ready is not None:
                return ready
            # CodeSha256 is base64 (may hold "/"): name the directory by a hash of it.
            target = self.work_dir / "code" / hashlib.sha256(spec.code_sha256.encode()).hexdigest()[:32]
            if not target.is_dir():
                self._unzip(spec.code_zip, target)
            self._code_dirs[spec.code_sha256] = target
            return target

    @staticmethod
    def _unzip(code_zip: bytes, target: Path) -> None:
        validate_code_zip(code_zip)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".unzip-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            root = staging.resolve()
            with zipfile.ZipFile(BytesIO(code_zip)) as zf:
                for info in zf.infolist():
                    destination = (staging / info.filename).resolve()
                    if destination != root and root not in destination.parents:
                        raise CodeZipError(f"Could not unzip uploaded file: the entry {info.filename!r} points "
                                           "outside the function's directory.")
                    zf.extract(info, staging)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode & 0o111 and not info.is_dir():
                        destination.chmod(destination.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    # -- one invocation --

    def _exchange(self, worker: _Worker, spec: FunctionSpec, payload: bytes, request_id: str,
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

    def _log(self, worker: _Worker, spec: FunctionSpec, request_id: str, duration: float, memory: int,
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
        reason = _exit_reason(returncode)
        duration = (time.monotonic() - started) * 1000
        log = self._log(worker, spec, request_id, duration, worker.peak_mb,
                           extra=f"RequestId: {request_id} Error: {reason}\nRuntime.ExitError\n",
                           status="\tStatus: error\tError Type: Runtime.ExitError")
        doc = {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {request_id} Error: {reason}"}
        return InvokeResult(json.dumps(doc).encode(), "Unhandled", log, duration, request_id)
