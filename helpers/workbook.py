"""Where the notebooks' AWS calls go: the local sandbox or a real AWS account, through one code path.

Every notebook starts with ``wb = open_workbook()``. What differs between the
two targets is only where boto3 connects and with which credentials:

- ``sandbox`` (the default): the local sandbox is started if needed, and
  clients get its endpoint URL, its CA bundle and its (fake) credentials;
- ``aws``: clients come from boto3's ordinary configuration, exactly as in any
  other script: credentials from the environment, ``~/.aws`` or an instance
  role, ``AWS_ENDPOINT_URL``/``AWS_CA_BUNDLE`` honoured if set.

After that, the notebooks make the same calls either way: ``wb.client("iot")``,
``wb.data_endpoint``, ``wb.tls_verify`` for ``requests``, ``wb.credentials()``
for the MQTT client. The target is chosen in notebook 00 (or with the
``WORKBOOK_TARGET`` environment variable) and kept in the state file.

Usage:

    from helpers.workbook import open_workbook
    wb = open_workbook()
    wb.client("sts").get_caller_identity()["Account"]
"""
from __future__ import annotations

import io
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import boto3
import botocore.exceptions

from .errors import ConfigurationError, WorkbookError
from .state import WorkbookState

TARGETS = ("sandbox", "aws")
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The authorizer function's source folder, deployed by notebook 01.
FUNCTION_DIR = REPO_ROOT / "functions" / "custom_auth"
#: The tag every resource the workbook creates carries (value: the workbook's suffix).
TAG_KEY = "iot-custom-auth-workbook"


class AwsSetupError(WorkbookError):
    """AWS could not be reached with the credentials boto3 found; the message says how to configure them."""


@dataclass
class Workbook:
    state: WorkbookState
    target: str
    session: boto3.session.Session
    endpoint_url: str | None = None
    ca_bundle: str | None = None
    sandbox: Any = None  # helpers.sandbox.Settings when the target is the sandbox
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def region(self) -> str:
        return self.session.region_name

    @property
    def names(self):
        return self.state.names

    def client(self, service: str):
        """A boto3 client for ``service``, pointed at the target (cached per service)."""
        if service not in self._clients:
            kwargs: dict[str, Any] = {}
            if self.endpoint_url:
                kwargs.update(endpoint_url=self.endpoint_url, verify=self.ca_bundle)
            self._clients[service] = self.session.client(service, **kwargs)
        return self._clients[service]

    @cached_property
    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]

    @cached_property
    def data_endpoint(self) -> str:
        """The account's device data endpoint (``iot:Data-ATS``): host, or host:port for the sandbox."""
        return self.client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]

    @property
    def tls_verify(self) -> str | bool:
        """What ``requests`` needs as ``verify=``: the sandbox's CA or ``AWS_CA_BUNDLE``, else the system's trust."""
        return self.ca_bundle or True

    def credentials(self):
        """The session's credentials (frozen), for signing MQTT-over-WebSocket URLs."""
        creds = self.session.get_credentials()
        if creds is None:
            raise AwsSetupError("boto3 found no AWS credentials. Configure them (aws configure, or the "
                                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables), or use the sandbox target.")
        return creds.get_frozen_credentials()

    @property
    def keys_dir(self) -> Path:
        """Where the token-signing key pair lives: a folder beside the state file (git-ignored, 0700)."""
        return Path(self.state.path).parent / "keys"

    def relative(self, path) -> str:
        """A path as shown to the learner: relative to the repository when inside it."""
        try:
            return str(Path(path).resolve().relative_to(REPO_ROOT))
        except ValueError:
            return str(path)

    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.state.suffix}

    def record(self, kind: str, resource_id: str) -> None:
        """Remember a resource this workbook created, so that notebook 09 deletes exactly these."""
        self.state.record_resource(kind, resource_id)

    def summary(self) -> str:
        where = f"the local sandbox ({self.endpoint_url})" if self.target == "sandbox" else "your AWS account"
        return (f"target:   {self.target} — {where}\n"
                f"region:   {self.region}\n"
                f"suffix:   {self.state.suffix} (in every resource name this workbook creates)")


def open_workbook(target: str | None = None, state: WorkbookState | None = None) -> Workbook:
    """The workbook for the target in the state file (or ``target``), started/checked and ready."""
    state = state or WorkbookState.load()
    target = (target or state.target).strip().lower()
    if target not in TARGETS:
        raise ConfigurationError(f"Unknown target {target!r}: choose 'sandbox' or 'aws'.")
    if target == "sandbox":
        from . import sandbox

        settings = sandbox.ensure_running()
        session = boto3.session.Session(aws_access_key_id=settings.access_key_id,
                                        aws_secret_access_key=settings.secret_access_key,
                                        region_name=state.region)
        return Workbook(state, target, session, settings.endpoint_url, str(settings.ca_bundle), settings)
    session = boto3.session.Session(region_name=state.region)
    if session.get_credentials() is None:
        raise AwsSetupError("The target is 'aws' but boto3 found no credentials. Run `aws configure` (or set "
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), then re-run this cell; "
                            "or choose the sandbox target in notebook 00.")
    # AWS_CA_BUNDLE is what boto3 trusts too; requests and the MQTT watcher get the same bundle (None = system's)
    return Workbook(state, target, session, ca_bundle=os.environ.get("AWS_CA_BUNDLE") or None)


def choose_target(target: str, region: str | None = None, state: WorkbookState | None = None) -> Workbook:
    """Record the target (and region) in the state file and open the workbook on it."""
    state = state or WorkbookState.load()
    target = target.strip().lower()
    if target not in TARGETS:
        raise ConfigurationError(f"Unknown target {target!r}: choose 'sandbox' or 'aws'.")
    if region is not None and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise ConfigurationError(f"{region!r} does not look like an AWS region (for example us-west-2).")
    before = {"target": state.get("target"), "region": state.get("region")}
    state.set(target=target, **({"region": region} if region else {}))
    try:
        return open_workbook(target, state)
    except Exception:
        state.set(**before)  # a target that cannot be opened is not recorded
        raise


def zip_function(directory: Path | str) -> bytes:
    """The deployment package for a Lambda function: every file of ``directory`` in a zip, in memory.

    What ``zip -r function.zip .`` does from inside the folder; caches and compiled files are left out.
    """
    directory = Path(directory)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                zf.write(path, path.relative_to(directory).as_posix())
    return buf.getvalue()


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (e.g. 'ResourceConflictException'), else None."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def retry_while(call: Callable[[], Any], *, codes: tuple[str, ...], message_contains: str = "",
                attempts: int = 10, delay: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call ``call()``, retrying (bounded) while AWS answers one of ``codes``.

    Used for IAM's propagation delay: a role created a moment ago can be refused by Lambda with
    InvalidParameterValueException "The role defined for the function cannot be assumed by Lambda".
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            retryable = error_code(exc) in codes and message_contains in str(exc)
            if not retryable or attempt == attempts:
                raise
            sleep(delay)
    raise AssertionError("unreachable")
