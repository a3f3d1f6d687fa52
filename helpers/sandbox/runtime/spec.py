"""What the Lambda engine is asked to run and what it answers: :class:`FunctionSpec`, :class:`InvokeResult`.

Also the runtime names the engine can run and :class:`RuntimeUnavailable`, raised
when a function's runtime cannot run on this machine. The Lambda service
(``services/awslambda.py``) builds a spec from a function's stored configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PYTHON_RUNTIMES = tuple(f"python3.{minor}" for minor in range(8, 14))
NODEJS_RUNTIMES = tuple(f"nodejs{major}.x" for major in range(14, 23, 2))


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

