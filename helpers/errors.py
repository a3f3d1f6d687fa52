"""The errors the workbook helpers raise on purpose, all under one root.

Every message says what happened and what to do next, so that a learner who
meets one in a notebook can act on the message alone. Code that wants to catch
"anything the workbook raised on purpose" catches :class:`WorkbookError`.

Usage:

>>> error = NotReadyError("authorizer_arn", "03-create-authorizer")
>>> print(error)
authorizer_arn is not recorded yet: run notebook 03-create-authorizer first, then run this cell again.
>>> error.notebook
'03-create-authorizer'
>>> isinstance(KeyFileError("x"), WorkbookError)
True
"""
from __future__ import annotations

import sys
from pathlib import Path


class WorkbookError(Exception):
    """Root of every error the workbook helpers raise on purpose."""


class NotReadyError(WorkbookError):
    """A step needs something that an earlier notebook creates, and it is not there yet."""

    def __init__(self, missing: str, notebook: str):
        self.missing = missing
        self.notebook = notebook
        super().__init__(
            f"{missing} is not recorded yet: run notebook {notebook} first, "
            "then run this cell again."
        )


class StateFileError(WorkbookError):
    """The workbook state file cannot be read or written."""

    def __init__(self, message: str, path: Path | None = None):
        self.path = path
        super().__init__(message)


class KeyFileError(WorkbookError):
    """A token-signing key file is missing, damaged, unprotected or does not match its pair."""

    def __init__(self, message: str, path: Path | None = None):
        self.path = path
        super().__init__(message)


#: What to do about the AWS error codes a learner meets in this workbook (the code's own message says what).
AWS_FIXES = {
    "ResourceNotFoundException": "check the name or ARN and the region, or run the notebook that creates it",
    "NoSuchEntity": "check the name or ARN, or run the notebook that creates it",
    "ResourceAlreadyExistsException": "it exists already: re-run the notebook's cells from the top to reuse it",
    "EntityAlreadyExists": "it exists already: re-run the notebook's cells from the top to reuse it",
    "ResourceConflictException": "the change conflicts with what exists (a duplicate statement id?): read the message",
    "InvalidRequestException": "a value in the request is not valid: the message names it",
    "InvalidParameterValueException": "a parameter is not valid: the message names it",
    "ValidationError": "a parameter is not valid: the message names it",
    "InvalidResponseException": "the authorizer function failed or answered badly: read its log (notebook 08)",
    "LimitExceededException": "an account quota is reached: run notebook 10 to delete old workbook resources",
    "DeleteConflictException": "set the authorizer INACTIVE first (notebook 10 does)",
    "DeleteConflict": "detach the role's policies first (notebook 10 does)",
    "AccessDeniedException": "your credentials lack this permission: ask your account's administrator",
    "AccessDenied": "your credentials lack this permission: ask your account's administrator",
    "UnauthorizedException": "your credentials lack this permission: ask your account's administrator",
    "UnrecognizedClientException": "the access key is unknown: check AWS_ACCESS_KEY_ID / AWS_PROFILE (notebook 00)",
    "InvalidClientTokenId": "the access key is unknown: check AWS_ACCESS_KEY_ID / AWS_PROFILE (notebook 00)",
    "InvalidSignatureException": "the secret key is wrong: check your credentials (notebook 00)",
    "SignatureDoesNotMatch": "the secret key is wrong: check your credentials (notebook 00)",
    "ExpiredToken": "your session credentials expired: refresh them (aws sso login, or new keys), then re-run",
    "ExpiredTokenException": "your session credentials expired: refresh them (aws sso login, or new keys), then re-run",
    "ThrottlingException": "AWS is rate-limiting: wait a few seconds and run the cell again",
    "TooManyRequestsException": "AWS is rate-limiting: wait a few seconds and run the cell again",
    "ServiceUnavailableException": "the service is briefly unavailable: run the cell again",
    "NotConfiguredException": "nothing is configured yet: run the cell that sets it up first",
}
TRACEBACK_HINT = "(%tb shows the full traceback)"
#: Set in the kernel's namespace by the notebook's set-up cell (show_briefly()): tells "kernel restarted" apart.
SETUP_MARKER = "_workbook_set_up"


def one_line(error: BaseException, user_ns: dict | None = None) -> str | None:
    """The one line a learner sees for ``error``, or None to keep Python's own traceback.

    >>> one_line(NotReadyError("function_arn", "01-authorizer-function"))
    'NotReadyError: function_arn is not recorded yet: run notebook 01-authorizer-function first, then run this cell again.'
    >>> one_line(NameError("name 'wb' is not defined"), {})
    "NameError: name 'wb' is not defined: the kernel was restarted (or this notebook's first cells have not run): run this notebook from the top (Run > Run All Cells)."
    >>> one_line(ZeroDivisionError()) is None
    True
    """
    name = type(error).__name__
    if isinstance(error, WorkbookError):
        return f"{name}: {error}"
    if isinstance(error, NameError):
        if user_ns is not None and SETUP_MARKER not in user_ns:
            return (f"NameError: {error}: the kernel was restarted (or this notebook's first cells have not run): "
                    "run this notebook from the top (Run > Run All Cells).")
        return (f"NameError: {error}: a cell above that defines it has not run since the kernel started, or "
                f"the name is mistyped; run the cells above in order {TRACEBACK_HINT}")
    try:
        import botocore.exceptions
    except ImportError:  # pragma: no cover - botocore is pinned
        botocore = None
    if botocore is not None and isinstance(error, botocore.exceptions.ClientError):
        info = error.response.get("Error", {})
        code, message = info.get("Code", "Unknown"), (info.get("Message") or "").strip()
        operation = getattr(error, "operation_name", "") or ""
        fix = AWS_FIXES.get(code, "read AWS's message above")
        where = f" ({operation})" if operation else ""
        return f"AWS error {code}{where}: {message} -> fix: {fix} {TRACEBACK_HINT}"
    if botocore is not None and isinstance(error, (botocore.exceptions.EndpointConnectionError,
                                                   botocore.exceptions.ConnectTimeoutError)):
        url = str(getattr(error, "kwargs", {}).get("endpoint_url", ""))
        return f"{name}: could not reach {url or 'the endpoint'}. {_unreachable_hint(url)} {TRACEBACK_HINT}"
    if botocore is not None and isinstance(error, botocore.exceptions.NoCredentialsError):
        return (f"{name}: boto3 found no AWS credentials: run `aws configure` or choose the sandbox target in "
                f"notebook 00 {TRACEBACK_HINT}")
    if botocore is not None and isinstance(error, botocore.exceptions.ParamValidationError):
        return f"{name}: {' '.join(str(error).split())} -> fix the parameter named above {TRACEBACK_HINT}"
    try:
        import requests
    except ImportError:  # pragma: no cover - requests is pinned
        return None
    if isinstance(error, requests.exceptions.SSLError):
        return (f"SSLError: the server's certificate is not trusted: pass verify=wb.tls_verify to requests "
                f"(curl: --cacert \"$CA_BUNDLE\") {TRACEBACK_HINT}")
    if isinstance(error, requests.exceptions.ConnectionError):
        url = getattr(getattr(error, "request", None), "url", None) or ""
        return (f"ConnectionError: could not reach {url.split('?')[0] or 'the server'}. {_unreachable_hint(url)} "
                f"{TRACEBACK_HINT}")
    if isinstance(error, requests.exceptions.HTTPError):
        resp = getattr(error, "response", None)
        status = getattr(resp, "status_code", "?")
        body = (getattr(resp, "text", "") or "").strip().replace("\n", " ")[:200]
        return f"HTTPError: the server answered {status}: {body} {TRACEBACK_HINT}"
    if isinstance(error, requests.exceptions.RequestException):
        return f"{name}: {error} {TRACEBACK_HINT}"
    return None


def _unreachable_hint(url: str) -> str:
    """What to do when ``url`` did not answer: for the sandbox, where it runs now (or that it stopped)."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if (parsed.hostname or "") not in ("localhost", "127.0.0.1"):
        return "Check your network and the endpoint (wb.data_endpoint, describe-endpoint)."
    try:
        from helpers import sandbox
        current = sandbox.status()
    except Exception:  # the hint must never fail
        current = None
    if current is None:
        return ("The sandbox is not running: start it with `.venv/bin/python -m helpers.sandbox start` (or re-run "
                "this notebook's first cell), then run this cell again.")
    ports = {int(current.endpoint_url.rsplit(":", 1)[1]), int(current.data_endpoint.rsplit(":", 1)[1])}
    if parsed.port in ports:
        return "The sandbox runs on that port but did not answer: run this cell again in a moment."
    return (f"The sandbox was restarted and now answers at {current.endpoint_url} (data endpoint "
            f"{current.data_endpoint}): the ports changed because the old ones were taken. Run this notebook "
            "from the top so that every client uses the new ports.")


def _handled_types() -> tuple[type, ...]:
    types: list[type] = [WorkbookError, NameError]
    try:
        import botocore.exceptions as bce
        types += [bce.ClientError, bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.NoCredentialsError,
                  bce.ParamValidationError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests
        types.append(requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def _install(shell) -> None:
    def message_only(shell, etype, value, tb, tb_offset=None):
        line = one_line(value, shell.user_ns)
        if line is None:  # not one of ours after all: Python's own traceback
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return None
        # Keep the traceback for %tb, as IPython does for any error it shows.
        sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
        if hasattr(sys, "last_exc"):
            sys.last_exc = value
        shell._showtraceback(etype, value, [f"\x1b[0;31m{line}\x1b[0m"])
        return None

    shell.set_custom_exc(_handled_types(), message_only)


def show_briefly(shell=None) -> None:
    """In Jupyter/IPython, show errors a learner can act on as one line, without a stack trace.

    Covered: the workbook's own errors (:class:`WorkbookError`), AWS errors (botocore ``ClientError``:
    the error code, AWS's message and what to do), HTTP errors from ``requests``, and ``NameError``
    (which after a kernel restart says to run the notebook from the top). ``%tb`` still shows the
    full traceback. The cell still fails (so a later cell does not run on bad assumptions, and
    nbval's ``raises-exception`` tag still sees an error). Other exceptions keep their traceback.
    Outside IPython it does nothing. It returns nothing, so a cell that ends with it shows no output.

    Called by each notebook's set-up cell, it also marks the kernel as set up, and installs the
    kernel hook (:func:`install_kernel_hook`) so that the next kernel loads this before any cell.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
    if shell is None:
        return
    _install(shell)
    shell.user_ns[SETUP_MARKER] = True
    try:
        install_kernel_hook()
    except OSError:
        pass  # a read-only environment: the explicit call in every set-up cell still covers errors


def load_ipython_extension(shell) -> None:
    """``%load_ext helpers.errors`` (and the kernel hook): one-line errors from the kernel's first cell on."""
    _install(shell)


KERNEL_CONFIG = """# Written by helpers.errors.install_kernel_hook (iot-custom-auth-workbook); safe to delete.
# Every IPython kernel of this virtual environment loads helpers.errors before its first cell, so that a
# cell run after a kernel restart says "run this notebook from the top" in one line.
c = get_config()  # noqa: F821
c.InteractiveShellApp.extensions = ["helpers.errors"]
"""


def install_kernel_hook(prefix: str | None = None) -> Path | None:
    """Write ``<venv>/etc/ipython/ipython_kernel_config.py`` loading this module; None outside a venv.

    Only inside a virtual environment (never the system Python), and never over a file someone else wrote.
    """
    if prefix is None:
        if sys.prefix == getattr(sys, "base_prefix", sys.prefix):
            return None
        prefix = sys.prefix
    path = Path(prefix) / "etc" / "ipython" / "ipython_kernel_config.py"
    if path.exists():
        return path if path.read_text(encoding="utf-8", errors="replace") == KERNEL_CONFIG else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(KERNEL_CONFIG, encoding="utf-8")
    return path


class ConfigurationError(WorkbookError):
    """A setting (such as the WORKBOOK_TARGET environment variable) has a value the workbook cannot use."""
