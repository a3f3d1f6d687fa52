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

from . import REPO_ROOT
from .errors import ConfigurationError, WorkbookError
from .state import WorkbookState
from .targets import SANDBOX_CA_NAME, SANDBOX_KEY_PREFIX, check_target

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
    _data_endpoint: tuple | None = field(default=None, repr=False)

    @property
    def region(self) -> str:
        return self.session.region_name

    @property
    def names(self):
        return self.state.names

    def refresh(self) -> None:
        """Sandbox target: follow the running sandbox (restarted after a stop, a crash or a laptop's sleep).

        The endpoint is looked up from the running sandbox every time, never kept from an earlier run;
        if the sandbox is not running it is started again (its state is kept). Clients made before a
        port changed are dropped, so ``wb.client(...)`` always reaches the sandbox that runs now.
        """
        if self.target != "sandbox":
            return
        from . import sandbox

        home = getattr(self.sandbox, "home", None)
        current = sandbox.status(home) if home else sandbox.status()
        if current is None:
            current = sandbox.ensure_running(home) if home else sandbox.ensure_running()
            print("(the sandbox was not running: started it again; everything it held is kept)")
        if current.endpoint_url != self.endpoint_url:
            self._clients.clear()
            self.__dict__.pop("data_endpoint", None)
        self.sandbox, self.endpoint_url, self.ca_bundle = current, current.endpoint_url, str(current.ca_bundle)

    def client(self, service: str):
        """A boto3 client for ``service``, pointed at the target (cached per service and endpoint)."""
        self.refresh()
        if service not in self._clients:
            kwargs: dict[str, Any] = {}
            if self.endpoint_url:
                kwargs.update(endpoint_url=self.endpoint_url, verify=self.ca_bundle)
            self._clients[service] = self.session.client(service, **kwargs)
        return self._clients[service]

    @cached_property
    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]

    @property
    def data_endpoint(self) -> str:
        """The account's device data endpoint (``iot:Data-ATS``): host, or host:port for the sandbox.

        Asked once per API endpoint (``describe-endpoint``); on the sandbox the answer follows a restart.
        """
        iot = self.client("iot")  # refreshes first: a restarted sandbox's endpoint is asked again
        key = (self.endpoint_url, self.region)
        if self._data_endpoint is None or self._data_endpoint[0] != key:
            address = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
            self._data_endpoint = (key, address)
        return self._data_endpoint[1]

    @property
    def tls_verify(self) -> str | bool:
        """What ``requests`` needs as ``verify=``: the sandbox's CA or ``AWS_CA_BUNDLE``, else the system's trust."""
        self.refresh()
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
        """Remember a resource this workbook created, so that notebook 10 deletes exactly these."""
        self.state.record_resource(kind, resource_id)

    def summary(self) -> str:
        where = f"the local sandbox ({self.endpoint_url})" if self.target == "sandbox" else "your AWS account"
        return (f"target:   {self.target} — {where}\n"
                f"region:   {self.region}\n"
                f"suffix:   {self.state.suffix} (in every resource name this workbook creates)")


def _isolated_botocore():
    """A botocore session that reads no profile, config or credentials file and no AWS_PROFILE."""
    import botocore.session

    return botocore.session.Session(session_vars={
        "profile": (None, None, None, None),
        "config_file": (None, None, os.devnull, None),
        "credentials_file": (None, None, os.devnull, None),
    })


def open_workbook(target: str | None = None, state: WorkbookState | None = None) -> Workbook:
    """The workbook for the target in the state file (or ``target``), started/checked and ready."""
    state = state or WorkbookState.load()
    target = check_target(target or state.target, "The target")
    if target == "sandbox":
        from . import sandbox

        settings = sandbox.ensure_running()
        # Only the sandbox's own key pair: botocore is given it explicitly and a profile that does not
        # exist, so AWS_PROFILE, ~/.aws/credentials or a real AWS_ACCESS_KEY_ID are never read or used.
        session = boto3.session.Session(aws_access_key_id=settings.access_key_id,
                                        aws_secret_access_key=settings.secret_access_key,
                                        region_name=state.region, botocore_session=_isolated_botocore())
        return _checked(Workbook(state, target, session, settings.endpoint_url, str(settings.ca_bundle), settings))
    refuse_sandbox_settings_for_aws()
    session = boto3.session.Session(region_name=state.region)
    if session.get_credentials() is None:
        raise AwsSetupError("The target is 'aws' but boto3 found no credentials. Run `aws configure` (or set "
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), then re-run this cell; "
                            "or choose the sandbox target in notebook 00.")
    # AWS_CA_BUNDLE is what boto3 trusts too; requests and the MQTT watcher get the same bundle (None = system's)
    return _checked(Workbook(state, target, session, ca_bundle=os.environ.get("AWS_CA_BUNDLE") or None))


def _checked(wb: Workbook) -> Workbook:
    """Once per state file: say so when workbook resources exist that it does not record (a lost state file)."""
    if wb.state.resources() or wb.state.get(f"orphans_checked_{wb.target}"):
        return wb
    from .cleanup import find_orphans

    try:
        orphans = find_orphans(wb)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        print(f"(could not look for earlier workbook resources: {error})")
        return wb
    if orphans.resources:
        print(f"Note: {orphans.summary()} This state file is new (suffix {wb.state.suffix}); run "
              "10-cleanup.ipynb to delete the earlier ones, or carry on: they will not collide.")
    wb.state.set(**{f"orphans_checked_{wb.target}": True})
    return wb


#: Set to 1 only by a test that drives the aws code path against the sandbox on purpose.
ALLOW_SANDBOX_AS_AWS_ENV = "WORKBOOK_ALLOW_SANDBOX_AS_AWS"


class TargetMismatchError(WorkbookError):
    """The target is 'aws' but a setting points at the local sandbox."""


def _sandbox_like(url: str) -> bool:
    from urllib.parse import urlparse

    host = (urlparse(url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")


def _is_sandbox_ca(path: str) -> bool:
    """Whether the PEM bundle at ``path`` holds the sandbox's own CA certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    import warnings

    try:
        with warnings.catch_warnings():  # system bundles hold old certificates cryptography warns about
            warnings.simplefilter("ignore")
            certs = x509.load_pem_x509_certificates(Path(path).expanduser().read_bytes())
    except (OSError, ValueError):
        return False
    return any(attr.value == SANDBOX_CA_NAME for cert in certs for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))


def refuse_sandbox_settings_for_aws(environ=None) -> None:
    """Raise :class:`TargetMismatchError` when settings meant for the sandbox would redirect the aws target.

    ``eval "$(python -m helpers.sandbox start)"`` exports AWS_ENDPOINT_URL, AWS_CA_BUNDLE and the
    sandbox's key pair; boto3 honours all of them, so the aws target would silently talk to the sandbox.
    """
    env = os.environ if environ is None else environ
    if env.get(ALLOW_SANDBOX_AS_AWS_ENV) == "1":
        return
    problems = []
    for var in [k for k in env if k == "AWS_ENDPOINT_URL" or k.startswith("AWS_ENDPOINT_URL_")]:
        if _sandbox_like(env[var]):
            problems.append(f"{var}={env[var]}")
    bundle = env.get("AWS_CA_BUNDLE", "")
    if bundle and _is_sandbox_ca(bundle):
        problems.append("AWS_CA_BUNDLE (the sandbox's CA)")
    if env.get("AWS_ACCESS_KEY_ID", "").startswith(SANDBOX_KEY_PREFIX):
        problems.append("AWS_ACCESS_KEY_ID (the sandbox's key id)")
    if problems:
        names = " ".join(p.split("=")[0].split(" ")[0] for p in problems)
        raise TargetMismatchError(
            f"The target is 'aws' but {', '.join(problems)} point(s) at the local sandbox (left over from "
            f"`eval \"$(python -m helpers.sandbox start)\"`?). Remove them (`unset {names}`) and restart the kernel, "
            "or choose the sandbox target in notebook 00.")


def choose_target(target: str, region: str | None = None, state: WorkbookState | None = None) -> Workbook:
    """Record the target (and region) in the state file and open the workbook on it."""
    state = state or WorkbookState.load()
    target = check_target(target, "The target")
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
