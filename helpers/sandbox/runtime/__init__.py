"""The sandbox's Lambda runtime: runs function code in real worker processes (Python and Node.js), jailed.

The public names are re-exported here, so callers import from
``helpers.sandbox.runtime`` whichever module holds them:

- ``spec.py``: :class:`FunctionSpec` (what to run), :class:`InvokeResult` (what it answered),
  :class:`RuntimeUnavailable`, the runtime names;
- ``codezip.py``: :func:`validate_code_zip` / :class:`CodeZipError`, and unpacking code once per hash;
- ``worker.py``: one worker process, its socket and log pipe, killing and reaping it;
- ``engine.py``: :class:`LambdaRuntime`, the warm-worker pools and one invocation's result and log;
- ``jail.py``, ``python_worker.py``, ``node_worker.js``: what runs in the worker process.
"""
from .codezip import CodeZipError, validate_code_zip
from .engine import LambdaRuntime
from .spec import NODEJS_RUNTIMES, PYTHON_RUNTIMES, FunctionSpec, InvokeResult, RuntimeUnavailable

__all__ = ["FunctionSpec", "InvokeResult", "LambdaRuntime", "RuntimeUnavailable", "CodeZipError",
           "validate_code_zip", "PYTHON_RUNTIMES", "NODEJS_RUNTIMES"]
