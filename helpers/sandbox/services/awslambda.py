"""Lambda for the sandbox: functions from zip files, run by real worker processes (rest-json).

Served (routes as in botocore's ``lambda/2015-03-31`` model): CreateFunction,
GetFunction, GetFunctionConfiguration, ListFunctions, DeleteFunction,
UpdateFunctionCode, Invoke, AddPermission, GetPolicy, RemovePermission.
``FunctionName`` may be a name, a full ARN or a partial ARN
(``123456789012:function:NAME``) everywhere; the only qualifier is ``$LATEST``.

State lives in SQLite (the zip as a BLOB), so functions survive restarts. Code
runs through ``ctx.runtime`` (``helpers.sandbox.runtime.LambdaRuntime``);
:func:`invoke_function` also writes the log to CloudWatch Logs (``ctx.logs``).

Sandbox choices (see the module's constants for sources):

- ``State`` is ``Pending`` in the CreateFunction answer and ``Active`` on every later
  read (AWS: "Pending" while the function is created, then "Active"), so the
  ``function_active_v2`` waiter succeeds on its first poll.
- Runtimes whose AWS "Block function create" date has passed are refused with AWS's
  message; later deprecations stay accepted until their block date (``BLOCKED_RUNTIMES``).
- The role must exist in the sandbox's IAM and trust ``lambda.amazonaws.com``
  (``sts:AssumeRole``), else AWS's "The role defined for the function cannot be
  assumed by Lambda."
- Code only as ``ZipFile``; S3 locations, container images and published versions
  are answered with an error that says so.
- GetFunction's ``Code.Location`` is an S3-shaped URL that the sandbox does not serve.

Functions used by the IoT service (TestInvokeAuthorizer, custom authentication):
:func:`function_spec`, :func:`permission_allows`, :func:`invoke_function`.

Usage:

>>> parse_function_ref("arn:aws:lambda:us-west-2:123456789012:function:auth:$LATEST")
('auth', '$LATEST', 'us-west-2', '123456789012')
>>> parse_function_ref("123456789012:function:auth")
('auth', None, None, '123456789012')
>>> arn_like("arn:aws:iot:us-west-2:123456789012:authorizer/*", "arn:aws:iot:us-west-2:123456789012:authorizer/a1")
True
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import re
import threading
import time
import uuid
import zipfile
from datetime import datetime, timezone
from typing import Any

from helpers.sandbox import core
from helpers.sandbox.runtime import (NODEJS_RUNTIMES, PYTHON_RUNTIMES, CodeZipError, FunctionSpec, InvokeResult,
                                     RuntimeUnavailable, validate_code_zip)
from helpers.sandbox.services import iam

PROTOCOL = "rest-json"
SIGNING_NAMES = ("lambda",)

SCHEMA = """
CREATE TABLE IF NOT EXISTS lambda_functions (
    name TEXT PRIMARY KEY,
    runtime TEXT NOT NULL,
    role TEXT NOT NULL,
    handler TEXT NOT NULL,
    description TEXT NOT NULL,
    timeout INTEGER NOT NULL,
    memory_size INTEGER NOT NULL,
    environment TEXT,
    architectures TEXT NOT NULL,
    logging_config TEXT NOT NULL,
    ephemeral_storage INTEGER NOT NULL,
    tags TEXT NOT NULL,
    code BLOB NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size INTEGER NOT NULL,
    last_modified TEXT NOT NULL,
    revision_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lambda_permissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    function_name TEXT NOT NULL,
    sid TEXT NOT NULL,
    statement TEXT NOT NULL,
    UNIQUE (function_name, sid)
)
"""

log = logging.getLogger("helpers.sandbox.lambda")
router = core.Router()

FUNCTION_REF_PATTERN = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
                        r"(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?")
_FUNCTION_REF_RE = re.compile(
    r"(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9_.-]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9_-]+))?")
CREATE_NAME_RE = re.compile(r"[a-zA-Z0-9_-]+")
ROLE_PATTERN = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
HANDLER_PATTERN = r"[^\s]+"
STATEMENT_ID_RE = re.compile(r"[a-zA-Z0-9_-]+")
ACTION_RE = re.compile(r"lambda:[*]|lambda:[a-zA-Z]+|[*]")
SOURCE_ARN_RE = re.compile(r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)")
ENV_NAME_RE = re.compile(r"[a-zA-Z]([a-zA-Z0-9_])+")
LOG_GROUP_RE = re.compile(r"[\.\-_/#A-Za-z0-9]+")

#: Runtime identifiers of the model's Runtime enum that AWS no longer accepts for new
#: functions (past their "Block function create" date in the deprecated-runtimes table of
#: https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html, as of 2026-11),
#: mapped to the runtime the error message recommends (for Python and Node.js, the newest
#: one the sandbox's runtime can run). python3.9 and nodejs18.x are deprecated but, per
#: that table, still creatable until 2027, so they are accepted.
BLOCKED_RUNTIMES = {
    **{r: PYTHON_RUNTIMES[-1] for r in ("python2.7", "python3.6", "python3.7", "python3.8")},
    **{r: NODEJS_RUNTIMES[-1] for r in ("nodejs", "nodejs4.3", "nodejs4.3-edge", "nodejs6.10", "nodejs8.10",
                                 "nodejs10.x", "nodejs12.x", "nodejs14.x", "nodejs16.x")},
    **{r: "dotnet10" for r in ("dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6")},
    **{r: "ruby3.4" for r in ("ruby2.5", "ruby2.7")},
    "java8": "java25", "go1.x": "provided.al2023", "provided": "provided.al2023",
}
#: Environment variables Lambda sets itself (AWS: "Defined runtime environment variables").
RESERVED_ENV = {"_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
                "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
                "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
                "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"}
#: Invoke payload quotas (AWS "Lambda quotas": 6 MB synchronous, 1 MB asynchronous).
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 1024 * 1024
MAX_POLICY_BYTES = 20 * 1024
LOG_TAIL_BYTES = 4096


def _runtime_enum() -> list[str]:
    from botocore.loaders import Loader
    return list(Loader().load_service_model("lambda", "service-2")["shapes"]["Runtime"]["enum"])


RUNTIMES = _runtime_enum()


# --- errors ---------------------------------------------------------------------------------

def _error(code: str, message: str, status: int = 400) -> core.AwsError:
    return core.AwsError(code, message, status, Type="User")


def _invalid(message: str) -> core.AwsError:
    return _error("InvalidParameterValueException", message)


def _validation(value: Any, member: str, constraint: str) -> core.AwsError:
    return _error("ValidationException", f"1 validation error detected: Value '{value}' at '{member}' "
                  f"failed to satisfy constraint: {constraint}")


def _not_found(ctx: core.Context, name: str, qualifier: str | None = None) -> core.AwsError:
    suffix = f":{qualifier}" if qualifier else ""
    return _error("ResourceNotFoundException", f"Function not found: {_function_arn(ctx, name)}{suffix}", 404)


# --- names and rows -------------------------------------------------------------------------

def parse_function_ref(ref: str) -> tuple[str, str | None, str | None, str | None]:
    """Split a function name, partial ARN or ARN into (name, qualifier, region, account)."""
    m = _FUNCTION_REF_RE.fullmatch(ref)
    if m is None:
        raise _validation(ref, "functionName", f"Member must satisfy regular expression pattern: {FUNCTION_REF_PATTERN}")
    return m.group("name"), m.group("qualifier"), m.group("region"), m.group("account")


def _function_arn(ctx: core.Context, name: str) -> str:
    return f"arn:aws:lambda:{ctx.region}:{ctx.account_id}:function:{name}"


def _row(ctx: core.Context, ref: str, qualifier: str | None = None) -> Any:
    """The stored function ``ref`` names, or AWS's ResourceNotFoundException."""
    if not 1 <= len(ref) <= 256:
        raise _validation(ref, "functionName", "Member must have length less than or equal to 256")
    name, ref_qualifier, region, account = parse_function_ref(ref)
    qualifier = qualifier or ref_qualifier
    if (region and region != ctx.region) or (account and account != ctx.account_id):
        raise _error("ResourceNotFoundException", f"Function not found: {ref}. The sandbox has functions only in "
                     f"account {ctx.account_id}, region {ctx.region}.", 404)
    row = ctx.store.one("SELECT * FROM lambda_functions WHERE name = ?", (name,))
    if row is None or qualifier not in (None, "$LATEST"):
        raise _not_found(ctx, name, qualifier)
    return row


def _now_modified() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


def _configuration(ctx: core.Context, row: Any, **overrides: Any) -> dict[str, Any]:
    env = json.loads(row["environment"]) if row["environment"] is not None else None
    doc: dict[str, Any] = {
        "FunctionName": row["name"], "FunctionArn": _function_arn(ctx, row["name"]),
        "Runtime": row["runtime"], "Role": row["role"], "Handler": row["handler"],
        "CodeSize": row["code_size"], "Description": row["description"], "Timeout": row["timeout"],
        "MemorySize": row["memory_size"], "LastModified": row["last_modified"], "CodeSha256": row["code_sha256"],
        "Version": "$LATEST", "TracingConfig": {"Mode": "PassThrough"}, "RevisionId": row["revision_id"],
        "State": "Active", "LastUpdateStatus": "Successful", "PackageType": "Zip",
        "Architectures": json.loads(row["architectures"]),
        "EphemeralStorage": {"Size": row["ephemeral_storage"]},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "RuntimeVersionConfig": {"RuntimeVersionArn": f"arn:aws:lambda:{ctx.region}::runtime:sandbox-{row['runtime']}"},
        "LoggingConfig": json.loads(row["logging_config"]),
    }
    if env is not None:
        doc["Environment"] = {"Variables": env}
    doc.update(overrides)
    return doc


def function_spec(ctx: core.Context, name_or_arn: str) -> FunctionSpec:
    """The runtime's description of a function; AWS's ResourceNotFoundException when there is none."""
    return _spec(ctx, _row(ctx, name_or_arn))


def _spec(ctx: core.Context, row: Any) -> FunctionSpec:
    return FunctionSpec(
        name=row["name"], arn=_function_arn(ctx, row["name"]), runtime=row["runtime"], handler=row["handler"],
        code_sha256=row["code_sha256"], code_zip=bytes(row["code"]), timeout=float(row["timeout"]),
        memory_size=row["memory_size"], environment=json.loads(row["environment"] or "{}"),
        region=ctx.region, version="$LATEST", role=row["role"])


def execution_credentials(ctx: core.Context, spec: FunctionSpec,
                          extra: dict[str, str] | None = None) -> tuple[dict[str, str], float]:
    """The environment a new worker of ``spec`` gets for its execution role: (variables, expiry epoch).

    AWS_ACCESS_KEY_ID (``ASIA...``), AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN of a
    session of the function's role named after the function, as Lambda provides
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime);
    ``extra`` is added (the sandbox passes AWS_ENDPOINT_URL and AWS_CA_BUNDLE, so that
    a handler's boto3 calls reach this sandbox, not AWS).
    """
    from helpers.sandbox.services import sts

    role = iam.role_by_arn(ctx, spec.role)
    if role is None:
        raise _invalid(f"The role defined for the function cannot be assumed by Lambda: {spec.role} no longer "
                       "exists. Create it again, or update the function's role.")
    credential = sts.credentials_for_role(ctx, role, spec.name)
    env = {"AWS_ACCESS_KEY_ID": credential.access_key_id, "AWS_SECRET_ACCESS_KEY": credential.secret_access_key,
           "AWS_SESSION_TOKEN": credential.session_token, **(extra or {})}
    return env, credential.expires_at


# --- validation of CreateFunction / UpdateFunctionCode members ------------------------------

def _int(body: dict[str, Any], key: str, member: str, default: int, low: int, high: int, code: str) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _error("SerializationException", f"{key} must be an integer, not {value!r}")
    if not low <= value <= high:
        bound = f"greater than or equal to {low}" if value < low else f"less than or equal to {high}"
        if code == "ValidationException":
            raise _validation(value, member, f"Member must have value {bound}")
        raise _invalid(f"'{key}' value failed to satisfy constraint: Member must have value {bound}")
    return value


def _zip_from(code: Any, member: str = "Code") -> bytes:
    if not isinstance(code, dict) or "ZipFile" not in code:
        if isinstance(code, dict) and ("S3Bucket" in code or "S3Key" in code):
            raise _invalid("The sandbox cannot read code from S3 (it has no S3). Upload the zip itself: "
                           "Code={'ZipFile': zip_bytes} (aws CLI: --zip-file fileb://function.zip).")
        if isinstance(code, dict) and "ImageUri" in code:
            raise _invalid("The sandbox runs only .zip deployment packages, not container images.")
        raise _invalid(f"Please provide a source for function code: {member}.ZipFile (the zip's bytes).")
    try:
        data = base64.b64decode(code["ZipFile"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise _invalid("Could not unzip uploaded file. Please check your file, then try to upload again.") from None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if archive.testzip() is not None:
                raise zipfile.BadZipFile("corrupt member")
        validate_code_zip(data)  # also refuses members that would unpack outside the code directory
    except CodeZipError as exc:
        raise _invalid(str(exc)) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError):
        raise _invalid("Could not unzip uploaded file. Please check your file, then try to upload again.") from None
    return data


def _check_runtime(runtime: Any) -> str:
    if runtime not in RUNTIMES:
        raise _validation(runtime, "runtime", f"Member must satisfy enum value set: [{', '.join(RUNTIMES)}] "
                          "or be a valid ARN")
    if runtime in BLOCKED_RUNTIMES:
        raise _invalid(f"The runtime parameter of {runtime} is no longer supported for creating or updating AWS "
                       f"Lambda functions. We recommend you use the new runtime ({BLOCKED_RUNTIMES[runtime]}) "
                       "while creating or updating functions.")
    return runtime


def _role_trusts_lambda(policy_text: str) -> bool:
    try:
        statements = json.loads(policy_text).get("Statement", [])
    except (ValueError, AttributeError):
        return False
    for st in statements if isinstance(statements, list) else [statements]:
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        principal = st.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if (principal == "*" or "lambda.amazonaws.com" in services) and \
                any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            return True
    return False


def _check_role(ctx: core.Context, role: Any) -> str:
    if not isinstance(role, str) or not re.fullmatch(ROLE_PATTERN, role):
        raise _validation(role, "role", f"Member must satisfy regular expression pattern: {ROLE_PATTERN}")
    found = iam.role_by_arn(ctx, role)
    if found is None or not _role_trusts_lambda(found["AssumeRolePolicyDocument"]):
        raise _invalid("The role defined for the function cannot be assumed by Lambda.")
    return role


def _environment(body: dict[str, Any]) -> dict[str, str] | None:
    env = body.get("Environment")
    if env is None:
        return None
    variables = env.get("Variables", {}) if isinstance(env, dict) else None
    if not isinstance(variables, dict):
        raise _invalid("Environment must look like {'Variables': {'NAME': 'value'}}.")
    for key in variables:
        if not ENV_NAME_RE.fullmatch(key):
            raise _validation(key, "environment.variables", "Member must satisfy regular expression pattern: "
                              "[a-zA-Z]([a-zA-Z0-9_])+")
    reserved = sorted(k for k in variables if k in RESERVED_ENV)
    if reserved:
        raise _invalid("Lambda was unable to configure your environment variables because the environment variables "
                       "you have provided contains reserved keys that are currently not supported for modification. "
                       f"Reserved keys used in this request: {', '.join(reserved)}")
    return {k: str(v) for k, v in variables.items()}


def _architectures(body: dict[str, Any]) -> list[str]:
    archs = body.get("Architectures", ["x86_64"])
    if not isinstance(archs, list) or len(archs) != 1 or archs[0] not in ("x86_64", "arm64"):
        raise _validation(archs, "architectures", "Member must have length 1 and each member must satisfy enum "
                          "value set: [x86_64, arm64]")
    return archs


def _logging_config(body: dict[str, Any], name: str) -> dict[str, Any]:
    given = body.get("LoggingConfig") or {}
    config: dict[str, Any] = {"LogFormat": given.get("LogFormat", "Text"),
                              "LogGroup": given.get("LogGroup", f"/aws/lambda/{name}")}
    if config["LogFormat"] not in ("Text", "JSON"):
        raise _validation(config["LogFormat"], "loggingConfig.logFormat", "Member must satisfy enum value set: [JSON, Text]")
    if not (1 <= len(config["LogGroup"]) <= 512 and LOG_GROUP_RE.fullmatch(config["LogGroup"])):
        raise _validation(config["LogGroup"], "loggingConfig.logGroup",
                          r"Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]+")
    for key in ("ApplicationLogLevel", "SystemLogLevel"):
        if key in given:
            if config["LogFormat"] != "JSON":
                raise _invalid(f"{key} is only supported when LogFormat is JSON.")
            config[key] = given[key]
    return config


def _check_revision(row: Any, revision_id: str | None) -> None:
    if revision_id is not None and revision_id != row["revision_id"]:
        raise _error("PreconditionFailedException", "The Revision Id provided does not match the latest Revision Id. "
                     "Call the GetFunction/GetAlias API to retrieve the latest Revision Id", 412)


# --- function operations --------------------------------------------------------------------

@router.route("POST", "/2015-03-31/functions")
def create_function(req: core.Request, ctx: core.Context) -> core.Response:
    body = req.json()
    for member in ("FunctionName", "Role", "Code"):
        if member not in body:
            raise _validation("null", member[0].lower() + member[1:], "Member must not be null")
    ref = body["FunctionName"]
    if not isinstance(ref, str) or not 1 <= len(ref) <= 140:
        raise _validation(ref, "functionName", "Member must have length less than or equal to 140")
    name, qualifier, region, account = parse_function_ref(ref)
    if qualifier or not CREATE_NAME_RE.fullmatch(name) or len(name) > 64:
        raise _validation(ref, "functionName", "Member must satisfy regular expression pattern: "
                          r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
                          r"(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))? and a name of at most 64 characters")
    if (region and region != ctx.region) or (account and account != ctx.account_id):
        raise _invalid(f"The function ARN {ref} is not in the sandbox's account {ctx.account_id} and region {ctx.region}.")
    if body.get("PackageType", "Zip") != "Zip":
        raise _invalid("The sandbox runs only .zip deployment packages (PackageType Zip), not container images.")
    if body.get("Publish"):
        raise _invalid("The sandbox does not publish function versions; omit Publish (the function runs as $LATEST).")
    for unsupported in ("VpcConfig", "Layers", "FileSystemConfigs", "KMSKeyArn", "CodeSigningConfigArn",
                        "DeadLetterConfig", "SnapStart", "ImageConfig"):
        if body.get(unsupported):
            raise _invalid(f"The sandbox does not support {unsupported}; create the function without it.")
    if "Runtime" not in body or "Handler" not in body:
        raise _invalid("Runtime and Handler are mandatory parameters for functions created with deployment packages.")
    runtime = _check_runtime(body["Runtime"])
    handler = body["Handler"]
    if not isinstance(handler, str) or len(handler) > 128 or not re.fullmatch(HANDLER_PATTERN, handler):
        raise _validation(handler, "handler", f"Member must satisfy regular expression pattern: {HANDLER_PATTERN} "
                          "and have length less than or equal to 128")
    description = body.get("Description", "")
    if not isinstance(description, str) or len(description) > 256:
        raise _validation(description, "description", "Member must have length less than or equal to 256")
    timeout = _int(body, "Timeout", "timeout", 3, 1, 900, "ValidationException")
    memory = _int(body, "MemorySize", "memorySize", 128, 128, 10240, "InvalidParameterValueException")
    storage = (body.get("EphemeralStorage") or {}).get("Size", 512)
    if not isinstance(storage, int) or not 512 <= storage <= 10240:
        raise _validation(storage, "ephemeralStorage.size", "Member must have value between 512 and 10240")
    environment = _environment(body)
    architectures = _architectures(body)
    logging_config = _logging_config(body, name)
    tags = body.get("Tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise _invalid("Tags must be a map of string keys to string values.")
    code = _zip_from(body["Code"])
    role = _check_role(ctx, body["Role"])
    with ctx.store.tx() as db:
        if db.execute("SELECT 1 FROM lambda_functions WHERE name = ?", (name,)).fetchone():
            raise _error("ResourceConflictException", f"Function already exist: {name}", 409)
        db.execute(
            "INSERT INTO lambda_functions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, runtime, role, handler, description, timeout, memory,
             json.dumps(environment) if environment is not None else None, json.dumps(architectures),
             json.dumps(logging_config), storage, json.dumps(tags), code,
             base64.b64encode(hashlib.sha256(code).digest()).decode(), len(code), _now_modified(), str(uuid.uuid4())))
    row = ctx.store.one("SELECT * FROM lambda_functions WHERE name = ?", (name,))
    doc = _configuration(ctx, row, State="Pending", StateReason="The function is being created.",
                         StateReasonCode="Creating")
    return core.Response.json(doc, 201)


@router.route("GET", "/2015-03-31/functions/{FunctionName}")
def get_function(req: core.Request, ctx: core.Context, FunctionName: str) -> core.Response:
    row = _row(ctx, FunctionName, req.query_value("Qualifier"))
    doc: dict[str, Any] = {
        "Configuration": _configuration(ctx, row),
        "Code": {"RepositoryType": "S3",
                 "Location": f"https://awslambda-{ctx.region}-tasks.s3.{ctx.region}.amazonaws.com/snapshots/"
                             f"{ctx.account_id}/{row['name']}-{row['revision_id']}"},
    }
    tags = json.loads(row["tags"])
    if tags:
        doc["Tags"] = tags
    return core.Response.json(doc)


@router.route("GET", "/2015-03-31/functions/{FunctionName}/configuration")
def get_function_configuration(req: core.Request, ctx: core.Context, FunctionName: str) -> core.Response:
    return core.Response.json(_configuration(ctx, _row(ctx, FunctionName, req.query_value("Qualifier"))))


@router.route("GET", "/2015-03-31/functions/")
@router.route("GET", "/2015-03-31/functions")
def list_functions(req: core.Request, ctx: core.Context) -> core.Response:
    try:
        max_items = int(req.query_value("MaxItems", "50"))
        after = req.query_value("Marker") or ""
        after = base64.b64decode(after, validate=True).decode() if after else ""
    except (ValueError, UnicodeDecodeError):
        raise _invalid("Marker and MaxItems must be the values of a previous ListFunctions answer.") from None
    if not 1 <= max_items <= 10000:
        raise _validation(max_items, "maxItems", "Member must have value between 1 and 10000")
    rows = ctx.store.all("SELECT * FROM lambda_functions WHERE name > ? ORDER BY name LIMIT ?", (after, max_items + 1))
    doc: dict[str, Any] = {"Functions": [_configuration(ctx, r) for r in rows[:max_items]]}
    if len(rows) > max_items:
        doc["NextMarker"] = base64.b64encode(rows[max_items - 1]["name"].encode()).decode()
    return core.Response.json(doc)


@router.route("DELETE", "/2015-03-31/functions/{FunctionName}")
def delete_function(req: core.Request, ctx: core.Context, FunctionName: str) -> core.Response:
    name = _row(ctx, FunctionName, req.query_value("Qualifier"))["name"]
    with ctx.store.tx() as db:
        db.execute("DELETE FROM lambda_permissions WHERE function_name = ?", (name,))
        db.execute("DELETE FROM lambda_functions WHERE name = ?", (name,))
    if ctx.runtime is not None:
        ctx.runtime.discard(name)
    return core.Response.empty(204)


@router.route("PUT", "/2015-03-31/functions/{FunctionName}/code")
def update_function_code(req: core.Request, ctx: core.Context, FunctionName: str) -> core.Response:
    body = req.json()
    row = _row(ctx, FunctionName)
    if body.get("Publish"):
        raise _invalid("The sandbox does not publish function versions; omit Publish (the function runs as $LATEST).")
    code = _zip_from(body, member="UpdateFunctionCode")
    architectures = _architectures({"Architectures": body.get("Architectures", json.loads(row["architectures"]))})
    _check_revision(row, body.get("RevisionId"))
    if body.get("DryRun"):
        return core.Response.json(_configuration(ctx, row))
    with ctx.store.tx() as db:
        db.execute("UPDATE lambda_functions SET code = ?, code_sha256 = ?, code_size = ?, architectures = ?, "
                   "last_modified = ?, revision_id = ? WHERE name = ?",
                   (code, base64.b64encode(hashlib.sha256(code).digest()).decode(), len(code),
                    json.dumps(architectures), _now_modified(), str(uuid.uuid4()), row["name"]))
    if ctx.runtime is not None:
        ctx.runtime.discard(row["name"])
    row = ctx.store.one("SELECT * FROM lambda_functions WHERE name = ?", (row["name"],))
    return core.Response.json(_configuration(ctx, row, LastUpdateStatus="InProgress",
                                             LastUpdateStatusReason="The function is being created.",
                                             LastUpdateStatusReasonCode="Creating"))


# --- invocation -----------------------------------------------------------------------------

#: CloudWatch Logs' event limit: 256 KB, counted as the UTF-8 message plus 26 bytes
#: (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html).
MAX_LOG_EVENT_BYTES = 256 * 1024 - 26


def _chunks(line: str, limit: int = MAX_LOG_EVENT_BYTES) -> list[str]:
    """``line`` cut into pieces of at most ``limit`` UTF-8 bytes, never inside a character."""
    data = line.encode("utf-8")
    if len(data) <= limit:
        return [line]
    pieces, start = [], 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # a continuation byte: back off to a boundary
            end -= 1
        pieces.append(data[start:end].decode("utf-8"))
        start = end
    return pieces


def _log_events(result: InvokeResult, started_ms: int, ended_ms: int) -> list[tuple[int, str]]:
    """The invocation's log as CloudWatch events: one per line, long lines split into events of at most 256 KB."""
    lines = [line for line in (result.init_log + result.log).splitlines() if line.strip()]
    events = []
    for line in lines:
        late = line.startswith(("END RequestId", "REPORT RequestId"))
        events.extend((ended_ms if late else started_ms, piece) for piece in _chunks(line))
    return events


def _log_stream(spec: FunctionSpec, when: float) -> str:
    """Lambda's stream-name shape, one stream a day per code version (AWS: one per execution environment)."""
    day = time.strftime("%Y/%m/%d", time.gmtime(when))
    digest = hashlib.md5(f"{spec.arn}|{spec.code_sha256}|{day}".encode()).hexdigest()
    return f"{day}/[{spec.version}]{digest}"


def invoke_function(ctx: core.Context, spec: FunctionSpec, payload: bytes, *,
                    timeout: float | None = None) -> InvokeResult:
    """Run ``spec`` on ``payload`` through ``ctx.runtime`` and record its log in CloudWatch Logs.

    Raises AwsError: ServiceException when the runtime is not running, InvalidRuntimeException
    (502) when the function's runtime cannot run here.
    """
    if ctx.runtime is None:
        raise _error("ServiceException", "The sandbox's Lambda runtime is not running; restart the sandbox.", 500)
    started = time.time()
    try:
        result = ctx.runtime.invoke(spec, payload, timeout=timeout)
    except RuntimeUnavailable as exc:
        raise _error("InvalidRuntimeException", str(exc), 502) from None
    ended = time.time()
    if ctx.logs is not None:
        events = _log_events(result, int(started * 1000), int(ended * 1000))
        group, stream = f"/aws/lambda/{spec.name}", _log_stream(spec, started)
        if events and _may_write_logs(ctx, spec, group, stream):
            ctx.logs.put_events(group=group, stream=stream, events=events)
    return result


def _may_write_logs(ctx: core.Context, spec: FunctionSpec, group: str, stream: str) -> bool:
    """Whether the execution role lets Lambda write this invocation's log, as on AWS.

    Lambda writes with the role's permissions: ``logs:CreateLogStream`` and
    ``logs:PutLogEvents`` on the stream, and ``logs:CreateLogGroup`` while the group
    does not exist (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html).
    A role without them (no AWSLambdaBasicExecutionRole) gets no logs at all.
    """
    if not spec.role:
        return True  # a spec built outside the Lambda service (tests of the runtime)
    base = f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:{group}"
    stream_arn = f"{base}:log-stream:{stream}"
    if not (iam.role_allows(ctx, spec.role, "logs:CreateLogStream", stream_arn)
            and iam.role_allows(ctx, spec.role, "logs:PutLogEvents", stream_arn)):
        return False
    exists = getattr(ctx.logs, "group_exists", None)
    return (exists is not None and exists(group)) or iam.role_allows(ctx, spec.role, "logs:CreateLogGroup", f"{base}:*")


def _invoke_in_background(ctx: core.Context, spec: FunctionSpec, payload: bytes) -> None:
    def run() -> None:
        try:
            result = invoke_function(ctx, spec, payload)
        except core.AwsError as err:
            log.warning("asynchronous invocation of %s failed: %s", spec.name, err.message)
            return
        except Exception:  # the runtime may be shutting down; an Event invoke has no caller to tell
            log.exception("asynchronous invocation of %s failed", spec.name)
            return
        if result.function_error:
            log.info("asynchronous invocation of %s ended with a %s function error", spec.name, result.function_error)

    threading.Thread(target=run, name=f"lambda-event-{spec.name}", daemon=True).start()


@router.route("POST", "/2015-03-31/functions/{FunctionName}/invocations")
def invoke(req: core.Request, ctx: core.Context, FunctionName: str) -> core.Response:
    row = _row(ctx, FunctionName, req.query_value("Qualifier"))
    kind = req.headers.get("x-amz-invocation-type", "RequestResponse")
    if kind not in ("RequestResponse", "Event", "DryRun"):
        raise _validation(kind, "invocationType", "Member must satisfy enum value set: [Event, RequestResponse, DryRun]")
    log_type = req.headers.get("x-amz-log-type", "None")
    if log_type not in ("None", "Tail"):
        raise _validation(log_type, "logType", "Member must satisfy enum value set: [Tail, None]")
    payload = req.body or b"{}"
    limit = MAX_ASYNC_PAYLOAD if kind == "Event" else MAX_SYNC_PAYLOAD
    if len(payload) > limit:
        raise _error("RequestTooLargeException", f"Request must be smaller than {limit} bytes for the "
                     f"{'InvokeAsync' if kind == 'Event' else 'InvokeFunction'} operation", 413)
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _error("InvalidRequestContentException",
                     f"Could not parse request body into json: Could not parse payload into json: {exc}") from None
    spec = _spec(ctx, row)
    if kind == "DryRun":
        return core.Response(204, b"", {"x-amzn-RequestId": req.request_id})
    if kind == "Event":
        _invoke_in_background(ctx, spec, payload)
        return core.Response(202, b"", {"x-amzn-RequestId": req.request_id})
    result = invoke_function(ctx, spec, payload)
    headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST",
               "x-amzn-RequestId": req.request_id}
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if log_type == "Tail":
        headers["X-Amz-Log-Result"] = base64.b64encode(result.log.encode()[-LOG_TAIL_BYTES:]).decode()
    return core.Response(200, result.payload, headers)


# --- resource policy ------------------------------------------------------------------------

def _principal(principal: str) -> Any:
    if principal == "*":
        return "*"
    if re.fullmatch(r"\d{12}", principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if principal.startswith("arn:"):
        return {"AWS": principal}
    if re.fullmatch(r"[a-z0-9][a-z0-9.-]*\.[a-z0-9.-]+", principal):
        return {"Service": principal}
    raise _invalid("The provided principal was invalid. Please check the principal and try again.")


def _statements(ctx: core.Context, name: str) -> list[dict[str, Any]]:
    rows = ctx.store.all("SELECT statement FROM lambda_permissions WHERE function_name = ? ORDER BY seq", (name,))
    return [json.loads(r["statement"]) for r in rows]


@router.route("POST", "/2015-03-31/functions/{FunctionName}/policy")
def add_permission(req: core.Request, ctx: core.Context, FunctionName: str) -> core.Response:
    body = req.json()
    row = _row(ctx, FunctionName, req.query_value("Qualifier"))
    for member in ("StatementId", "Action", "Principal"):
        if member not in body:
            raise _validation("null", member[0].lower() + member[1:], "Member must not be null")
    sid, action, principal = body["StatementId"], body["Action"], body["Principal"]
    if not (isinstance(sid, str) and 1 <= len(sid) <= 100 and STATEMENT_ID_RE.fullmatch(sid)):
        raise _validation(sid, "statementId", "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")
    if not (isinstance(action, str) and ACTION_RE.fullmatch(action)):
        raise _validation(action, "action", "Member must satisfy regular expression pattern: "
                          "(lambda:[*]|lambda:[a-zA-Z]+|[*])")
    if not (isinstance(principal, str) and re.fullmatch(r"[^\s]+", principal)):
        raise _validation(principal, "principal", r"Member must satisfy regular expression pattern: [^\s]+")
    source_arn, source_account = body.get("SourceArn"), body.get("SourceAccount")
    if source_arn is not None and not (isinstance(source_arn, str) and SOURCE_ARN_RE.fullmatch(source_arn)):
        raise _validation(source_arn, "sourceArn", "Member must satisfy regular expression pattern: "
                          r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)")
    if source_account is not None and not (isinstance(source_account, str) and re.fullmatch(r"\d{12}", source_account)):
        raise _validation(source_account, "sourceAccount", r"Member must satisfy regular expression pattern: \d{12}")
    _check_revision(row, body.get("RevisionId"))
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Principal": _principal(principal),
                                 "Action": action, "Resource": _function_arn(ctx, row["name"])}
    condition: dict[str, Any] = {}
    if source_arn:
        condition["ArnLike"] = {"AWS:SourceArn": source_arn}
    equals = {key: body[member] for member, key in (("SourceAccount", "AWS:SourceAccount"),
                                                    ("EventSourceToken", "lambda:EventSourceToken"),
                                                    ("PrincipalOrgID", "aws:PrincipalOrgID"),
                                                    ("FunctionUrlAuthType", "lambda:FunctionUrlAuthType"))
              if body.get(member)}
    if equals:
        condition["StringEquals"] = equals
    if body.get("InvokedViaFunctionUrl"):
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    if condition:
        statement["Condition"] = condition
    text = json.dumps(statement, separators=(",", ":"))
    with ctx.store.tx() as db:
        if db.execute("SELECT 1 FROM lambda_permissions WHERE function_name = ? AND sid = ?",
                      (row["name"], sid)).fetchone():
            raise _error("ResourceConflictException", f"The statement id ({sid}) provided already exists. Please "
                         "provide a new statement id, or remove the existing statement.", 409)
        existing = [r["statement"] for r in db.execute(
            "SELECT statement FROM lambda_permissions WHERE function_name = ?", (row["name"],))]
        size = len(_policy_text([json.loads(s) for s in existing] + [statement]))
        if size > MAX_POLICY_BYTES:
            raise _error("PolicyLengthExceededException",
                         f"The final policy size ({size}) is bigger than the limit ({MAX_POLICY_BYTES}).")
        db.execute("INSERT INTO lambda_permissions (function_name, sid, statement) VALUES (?, ?, ?)",
                   (row["name"], sid, text))
        db.execute("UPDATE lambda_functions SET revision_id = ? WHERE name = ?", (str(uuid.uuid4()), row["name"]))
    return core.Response.json({"Statement": text}, 201)


def _policy_text(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Id": "default", "Statement": statements}, separators=(",", ":"))


@router.route("GET", "/2015-03-31/functions/{FunctionName}/policy")
def get_policy(req: core.Request, ctx: core.Context, FunctionName: str) -> core.Response:
    row = _row(ctx, FunctionName, req.query_value("Qualifier"))
    statements = _statements(ctx, row["name"])
    if not statements:
        raise _error("ResourceNotFoundException", "No policy is associated with the given resource.", 404)
    return core.Response.json({"Policy": _policy_text(statements), "RevisionId": row["revision_id"]})


@router.route("DELETE", "/2015-03-31/functions/{FunctionName}/policy/{StatementId}")
def remove_permission(req: core.Request, ctx: core.Context, FunctionName: str, StatementId: str) -> core.Response:
    row = _row(ctx, FunctionName, req.query_value("Qualifier"))
    _check_revision(row, req.query_value("RevisionId"))
    with ctx.store.tx() as db:
        if not db.execute("SELECT 1 FROM lambda_permissions WHERE function_name = ?", (row["name"],)).fetchone():
            raise _error("ResourceNotFoundException", "No policy is associated with the given resource.", 404)
        gone = db.execute("DELETE FROM lambda_permissions WHERE function_name = ? AND sid = ?",
                          (row["name"], StatementId)).rowcount
        if not gone:
            raise _error("ResourceNotFoundException", f"Statement {StatementId} is not found in resource policy.", 404)
        db.execute("UPDATE lambda_functions SET revision_id = ? WHERE name = ?", (str(uuid.uuid4()), row["name"]))
    return core.Response.empty(204)


def arn_like(pattern: str, value: str) -> bool:
    """IAM's ArnLike: ``*`` matches any characters, ``?`` exactly one; everything else literally."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statement_matches(st: dict[str, Any], principal: str, action: str, source_arn: str | None,
                       source_account: str | None) -> bool:
    who = st.get("Principal")
    if who != "*" and not (isinstance(who, dict) and (principal in _as_list(who.get("Service", []))
                                                       or "*" in _as_list(who.get("AWS", [])))):
        return False
    if not any(a in (action, "lambda:*", "*") for a in _as_list(st.get("Action", []))):
        return False
    for operator, entries in (st.get("Condition") or {}).items():
        for key, expected in entries.items():
            key = key.lower()
            if operator == "ArnLike" and key == "aws:sourcearn":
                if source_arn is None or not any(arn_like(p, source_arn) for p in _as_list(expected)):
                    return False
            elif operator == "StringEquals" and key == "aws:sourceaccount":
                if source_account not in _as_list(expected):
                    return False
            else:  # a condition the caller cannot satisfy (event source token, organisation...)
                return False
    return True


def permission_allows(ctx: core.Context, name_or_arn: str, *, principal: str, source_arn: str | None,
                      source_account: str | None = None, action: str = "lambda:InvokeFunction") -> bool:
    """True when the function's resource policy lets service ``principal`` call ``action``.

    ``source_account`` defaults to the account in ``source_arn`` (what AWS services send as
    aws:SourceAccount). An explicit Deny statement wins over any Allow.
    """
    row = _row(ctx, name_or_arn)
    if source_account is None and source_arn:
        parts = source_arn.split(":")
        source_account = parts[4] if len(parts) > 5 and parts[4] else None
    allowed = False
    for st in _statements(ctx, row["name"]):
        if _statement_matches(st, principal, action, source_arn, source_account):
            if st.get("Effect") == "Deny":
                return False
            allowed = allowed or st.get("Effect") == "Allow"
    return allowed


def handle(req: core.Request, ctx: core.Context) -> core.Response:
    resp = router.dispatch(req, ctx)
    resp.headers.setdefault("x-amzn-RequestId", req.request_id)
    return resp
