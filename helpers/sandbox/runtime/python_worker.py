"""One Lambda execution environment for python3.x runtimes (run as a separate process).

Started by :class:`helpers.sandbox.runtime.LambdaRuntime` as::

    python -u python_worker.py <protocol-fd> <marker-nonce> <handler> <sandbox-pid>

with the function's unzipped code as the working directory and Lambda's
environment variables already set. The worker imports the handler once (the
"init" phase), then serves invocations one at a time until the protocol
socket reaches end-of-file (the sandbox closed it or died).

Protocol, on the socket at ``<protocol-fd>`` (never on stdout/stderr, which are
the function's log):

- request: a JSON header line ``{"id", "arn", "deadline" (epoch ms), "len"}``
  followed by ``len`` bytes of event JSON;
- response: a JSON header line ``{"ok", "len", "dur", "mem", "init", "fatal"}``
  followed by ``len`` bytes: the handler's JSON result, or Lambda's error
  document when ``ok`` is false. ``fatal`` asks the sandbox to discard this
  worker (an init failure: Lambda re-runs init in a fresh environment).

Around each invocation the worker writes marker lines (``\\0<nonce>:START:<id>``
and ``\\0<nonce>:END:<id>``) to stdout after flushing, so the sandbox can cut
the shared log pipe into exactly this invocation's output.

Error documents, log lines and messages follow AWS's Python runtime interface
client (``aws/aws-lambda-python-runtime-interface-client``, ``bootstrap.py``).
"""
from __future__ import annotations  # the worker runs under python3.8+ (whatever runtime the function names)

import time

_STARTED = time.perf_counter()

import ctypes  # noqa: E402  (imports after the start timestamp on purpose)
import decimal  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

_THIS_FILE = os.path.abspath(__file__)


def _die_with_sandbox(sandbox_pid: int) -> None:
    """SIGKILL this process when the sandbox goes away (Linux), and exit now if it already has."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != sandbox_pid:
        os._exit(1)


class Fault(Exception):
    """An error the runtime itself reports (Runtime.*), with its Lambda error document."""

    def __init__(self, error_type: str, message: str, trace: list | None = None):
        super().__init__(message)
        self.error_type, self.message, self.trace = error_type, message, trace or []


def error_document(message, error_type, stack_trace, request_id) -> dict:
    return {"errorMessage": message or "", "errorType": error_type or "",
            "requestId": request_id or "", "stackTrace": stack_trace or []}


def fault_document(exc: BaseException, request_id: str) -> dict:
    """Lambda's document for an exception raised by user code (frames of this worker left out)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename != _THIS_FILE and not f.filename.startswith("<frozen importlib")]
    return error_document(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def log_error(doc: dict) -> None:
    """Print ``[ERROR] Type: message`` + ``Traceback ...`` like the Lambda Python runtime."""
    line = "[ERROR]"
    if doc.get("errorType"):
        line += " " + doc["errorType"]
    if doc.get("errorMessage"):
        line += (":" if doc.get("errorType") else "") + " " + doc["errorMessage"]
    lines = [line, "Traceback (most recent call last):"]
    for element in doc.get("stackTrace") or []:
        lines.extend(element.splitlines() or [""])
    sys.stdout.write("\n".join(lines) + "\n")


def load_handler(handler: str):
    """Import ``module.function`` (module may be ``dir/mod``) the way awslambdaric does."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as exc:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}") from None
    modname = ".".join(part for part in modname.split("/") if part)
    if modname.split(".")[0] in sys.builtin_module_names:
        raise Fault("Runtime.BuiltInModuleConflict",
                    f"Cannot use built-in module {modname.split('.')[0]} as a handler module")
    try:
        module = importlib.import_module(modname)
    except ImportError as exc:
        raise Fault("Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}") from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise Fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {exc}", trace) from None
    function = getattr(module, fname, None)
    if function is None:
        message = f"Handler '{fname}' missing on module '{modname}'"

        def missing_handler(event, context):
            raise Fault("Runtime.HandlerNotFound", message)
        return missing_handler
    return function


class LambdaContext:
    """The ``context`` argument, with the attributes of Lambda's Python context object."""

    def __init__(self, request_id: str, arn: str, deadline_ms: int):
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = env["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = env["AWS_LAMBDA_FUNCTION_VERSION"]
        self.memory_limit_in_mb = int(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.log_group_name = env["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = env["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, msg) -> None:
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (f"LambdaContext([aws_request_id={self.aws_request_id},log_group_name={self.log_group_name},"
                f"log_stream_name={self.log_stream_name},function_name={self.function_name},"
                f"memory_limit_in_mb={self.memory_limit_in_mb},function_version={self.function_version},"
                f"invoked_function_arn={self.invoked_function_arn}])")


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record):
        record.aws_request_id = _RequestIdFilter.request_id
        return True


def _install_logging() -> None:
    """Give the root logger Lambda's handler: ``[LEVEL]\\t<time>Z\\t<request id>\\t<message>``."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.terminator = ""
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)


def _json_default(obj):
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _flush_log() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the function closed or broke its own stream
            continue


def _max_memory_mb() -> int:
    return -(-resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


def main() -> None:
    fd, nonce, handler_name, sandbox_pid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    _die_with_sandbox(sandbox_pid)
    sock = socket.socket(fileno=int(fd))
    sock.set_inheritable(False)
    rfile = sock.makefile("rb")
    marker = b"\0" + nonce.encode() + b":"
    sys.path[0] = os.getcwd()  # the code dir first, instead of this worker's directory
    _install_logging()

    init_error, handler = None, None
    try:
        handler = load_handler(handler_name)
    except Fault as fault:
        init_error = error_document(fault.message, fault.error_type, fault.trace, "")
    except Exception as exc:  # module-level code of the function raised
        init_error = fault_document(exc, "")
    if init_error is not None:
        log_error(init_error)
    init_ms = (time.perf_counter() - _STARTED) * 1000
    _flush_log()

    while True:
        header = rfile.readline()
        if not header:
            _flush_log()
            os._exit(0)  # the sandbox closed the protocol socket
        request = json.loads(header)
        body = rfile.read(request["len"])
        request_id = request["id"]
        os.write(1, marker + b"START:" + request_id.encode() + b"\n")
        _RequestIdFilter.request_id = request_id
        started = time.perf_counter()
        ok, fatal = False, False
        if init_error is not None:
            doc, fatal = dict(init_error, requestId=request_id), True
        else:
            ok, doc = _run(handler, body, request_id, request)
        if ok:
            result = doc
        else:
            if init_error is None:
                log_error(doc)
            result = json.dumps(doc).encode()
        duration = (time.perf_counter() - started) * 1000
        _flush_log()
        os.write(1, marker + b"END:" + request_id.encode() + b"\n")
        response = {"ok": ok, "len": len(result), "dur": duration, "mem": _max_memory_mb(),
                    "init": init_ms, "fatal": fatal}
        init_ms = None
        sock.sendall(json.dumps(response).encode() + b"\n" + result)


def _run(handler, body: bytes, request_id: str, request: dict):
    """Call the handler; return (True, result JSON bytes) or (False, Lambda error document)."""
    try:
        event = json.loads(body)
    except ValueError as exc:
        return False, error_document(f"Unable to unmarshal input: {exc}", "Runtime.UnmarshalError", [], request_id)
    context = LambdaContext(request_id, request["arn"], request["deadline"])
    try:
        result = handler(event, context)
    except Fault as fault:
        return False, error_document(fault.message, fault.error_type, fault.trace, request_id)
    except Exception as exc:
        return False, fault_document(exc, request_id)
    try:
        return True, json.dumps(result, default=_json_default, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        return False, error_document(f"Unable to marshal response: {exc}", "Runtime.MarshalError", [], request_id)


if __name__ == "__main__":
    main()
