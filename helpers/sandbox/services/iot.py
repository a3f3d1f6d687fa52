"""AWS IoT control plane (rest-json): custom authorizers, the default authorizer, endpoints, tags.

Routes, members and error classes follow botocore's ``iot`` model
(``botocore/data/iot/2015-05-28/service-2.json``), so an unmodified boto3 ``iot``
client or ``aws iot ...`` works against the sandbox. Served operations:
CreateAuthorizer, DescribeAuthorizer, ListAuthorizers, UpdateAuthorizer,
DeleteAuthorizer, TestInvokeAuthorizer, SetDefaultAuthorizer,
DescribeDefaultAuthorizer, ClearDefaultAuthorizer, DescribeEndpoint, and
TagResource / UntagResource / ListTagsForResource for authorizer ARNs.

The data plane (the HTTPS publish and MQTT endpoints) reads authorizers through
:func:`get_authorizer` and :func:`default_authorizer_name`.

Behaviour AWS does not document, and what the sandbox does instead (each also
noted where it happens):

- ``status`` defaults to ACTIVE (Terraform and the console do the same);
- signing enabled without ``tokenKeyName`` and a public key is refused (the
  authorizer could never authenticate anything);
- deleting an ACTIVE authorizer, or the default authorizer, is a
  DeleteConflictException (409), the only delete-specific error in the model;
- TestInvokeAuthorizer refuses INACTIVE authorizers, a bad signature and a
  missing ``lambda:InvokeFunction`` permission with InvalidRequestException, and
  any failure of the function itself with InvalidResponseException;
- SetDefaultAuthorizer replaces an existing default.

Usage:

>>> from helpers.sandbox.store import Store
>>> ctx = core.Context(store=Store(":memory:", [SCHEMA]), endpoints={"iot:Data-ATS": "localhost:8443"})
>>> body = json.dumps({"authorizerFunctionArn": "arn:aws:lambda:us-west-2:123456789012:function:auth",
...                    "signingDisabled": True}).encode()
>>> resp = handle(core.Request("POST", "/authorizer/my-auth", "", {}, body, service="iot"), ctx)
>>> json.loads(resp.body)["authorizerArn"]
'arn:aws:iot:us-west-2:123456789012:authorizer/my-auth'
>>> get_authorizer(ctx, "my-auth")["status"]
'ACTIVE'
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any

from helpers.sandbox import authz, core
from helpers.sandbox.core import AwsError, Response

PROTOCOL = "rest-json"
#: botocore signs ``iot`` client requests with the scope name ``iot`` (model metadata ``signingName``).
SIGNING_NAMES = ("iot", "execute-api")
#: "Maximum number of custom authenticators: 10" (AWS IoT limits table, 2019). Tests monkeypatch it.
AUTHORIZER_QUOTA = 10
#: AWS IoT allows 50 tags per resource.
TAG_QUOTA = 50

SCHEMA = """
CREATE TABLE IF NOT EXISTS iot_authorizers (
    name TEXT PRIMARY KEY,
    function_arn TEXT NOT NULL,
    token_key_name TEXT,
    public_keys TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    signing_disabled INTEGER NOT NULL DEFAULT 0,
    enable_caching_for_http INTEGER NOT NULL DEFAULT 0,
    creation_date REAL NOT NULL,
    last_modified_date REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS iot_tags (
    resource_arn TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
)
"""

#: Key of the default authorizer's name in the shared ``settings`` table.
DEFAULT_AUTHORIZER_SETTING = "iot.default_authorizer"

ENDPOINT_TYPES = ("iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs")
STATUSES = ("ACTIVE", "INACTIVE")

# Patterns from the model (Java regexes: \w is ASCII there, hence re.ASCII).
NAME_PATTERN = r"[\w=,@-]+"
TOKEN_KEY_NAME_PATTERN = r"[a-zA-Z0-9_-]+"
KEY_NAME_PATTERN = r"[a-zA-Z0-9:_-]+"
SIGNATURE_PATTERN = r"[A-Za-z0-9+/]+={0,2}"
MARKER_PATTERN = r"[A-Za-z0-9+/]+={0,2}"
FUNCTION_ARN_PATTERN = (r"arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:function:"
                        r"[a-zA-Z0-9_-]{1,64}(:(\$LATEST|[a-zA-Z0-9_-]{1,128}))?")
FUNCTION_ARN_SHAPE = "arn:aws:lambda:<region>:<account-id>:function:<function-name>[:<alias-or-version>]"

router = core.Router()


def handle(req: core.Request, ctx: core.Context) -> Response:
    """Answer one AWS IoT control-plane request (raises AwsError for AWS's errors)."""
    return router.dispatch(req, ctx)


# --- shared with the data plane -------------------------------------------------------------

def authorizer_arn(ctx: core.Context, name: str) -> str:
    return f"arn:aws:iot:{ctx.region}:{ctx.account_id}:authorizer/{name}"


def get_authorizer(ctx: core.Context, name: str, region: str | None = None) -> dict | None:
    """The authorizer called ``name`` in ``region`` (None: the context's) as a plain dict, or None."""
    ctx = ctx.in_region(region)
    row = ctx.store.one("SELECT * FROM iot_authorizers WHERE name = ?", (name,))
    if row is None:
        return None
    return {
        "name": row["name"],
        "arn": authorizer_arn(ctx, row["name"]),
        "function_arn": row["function_arn"],
        "token_key_name": row["token_key_name"],
        "public_keys": json.loads(row["public_keys"]),
        "status": row["status"],
        "signing_disabled": bool(row["signing_disabled"]),
        "enable_caching_for_http": bool(row["enable_caching_for_http"]),
        "creation_date": row["creation_date"],
        "last_modified_date": row["last_modified_date"],
    }


def default_authorizer_name(ctx: core.Context, region: str | None = None) -> str | None:
    """The name set with SetDefaultAuthorizer in ``region`` (None: the context's), or None."""
    return ctx.in_region(region).store.get_setting(DEFAULT_AUTHORIZER_SETTING)


#: Host names of the data endpoint: ``localhost`` for the default region, ``REGION.localhost`` for the
#: others (RFC 6761 keeps ``*.localhost`` for loopback; curl, browsers and systemd-resolved resolve it).
def data_endpoint_host(ctx: core.Context) -> str:
    """The host name DescribeEndpoint gives for the data endpoint of ``ctx``'s region."""
    return "localhost" if ctx.region == core.REGION else f"{ctx.region}.localhost"


def data_endpoint_region(ctx: core.Context, server_name: str | None) -> str:
    """The region a device reached, from the host name it connected with (TLS SNI).

    ``localhost``, an IP address or no SNI: the default region; ``REGION.localhost``: REGION
    (any other name: the default region too).
    """
    name = (server_name or "").lower().rstrip(".")
    if name.endswith(".localhost") and name[:-len(".localhost")] in core.REGIONS:
        return name[:-len(".localhost")]
    return core.REGION


# --- errors -----------------------------------------------------------------------------------

def _invalid(message: str) -> AwsError:
    return AwsError("InvalidRequestException", message, 400)


def _invalid_response(message: str) -> AwsError:
    return AwsError("InvalidResponseException", message, 400)


def _not_found(ctx: core.Context, name: str) -> AwsError:
    return AwsError("ResourceNotFoundException",
                    f"The authorizer {name!r} does not exist in account {ctx.account_id}, region {ctx.region}. "
                    "See the authorizers that do with: aws iot list-authorizers", 404)


def _require_authorizer(ctx: core.Context, name: str) -> dict:
    auth = get_authorizer(ctx, name)
    if auth is None:
        raise _not_found(ctx, name)
    return auth


# --- parameter checks (the model's constraints; AWS's "validation error" wording) -------------

def _shown(value: str) -> str:
    return value if len(value) <= 80 else value[:77] + "..."


def _check_string(value: Any, member: str, *, min_len: int = 0, max_len: int | None = None,
                  pattern: str | None = None) -> str:
    if not isinstance(value, str):
        raise _invalid(f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
                       f"Member must be a string (got {type(value).__name__}).")
    if len(value) < min_len:
        raise _invalid(f"1 validation error detected: Value '{_shown(value)}' at '{member}' failed to satisfy "
                       f"constraint: Member must have length greater than or equal to {min_len}")
    if max_len is not None and len(value) > max_len:
        raise _invalid(f"1 validation error detected: Value '{_shown(value)}' at '{member}' failed to satisfy "
                       f"constraint: Member must have length less than or equal to {max_len}")
    if pattern is not None and not re.fullmatch(pattern, value, re.ASCII):
        raise _invalid(f"1 validation error detected: Value '{_shown(value)}' at '{member}' failed to satisfy "
                       f"constraint: Member must satisfy regular expression pattern: {pattern}")
    return value


def _check_bool(body: dict, member: str, default: bool) -> bool:
    value = body.get(member, default)
    if not isinstance(value, bool):
        raise _invalid(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: "
                       "Member must be a boolean (true or false)")
    return value


def _check_name(name: Any, member: str = "authorizerName") -> str:
    return _check_string(name, member, min_len=1, max_len=128, pattern=NAME_PATTERN)


def _check_status(status: Any) -> str:
    if status not in STATUSES:
        raise _invalid(f"1 validation error detected: Value '{status}' at 'status' failed to satisfy constraint: "
                       "Member must satisfy enum value set: [ACTIVE, INACTIVE]")
    return status


def _check_function_arn(arn: Any) -> str:
    _check_string(arn, "authorizerFunctionArn", min_len=1, max_len=2048)
    if not re.fullmatch(FUNCTION_ARN_PATTERN, arn, re.ASCII):
        raise _invalid(f"authorizerFunctionArn {_shown(arn)!r} is not a Lambda function ARN. It must look like "
                       f"{FUNCTION_ARN_SHAPE} (allowed pattern: {FUNCTION_ARN_PATTERN}); copy the FunctionArn "
                       "that aws lambda get-function --function-name <name> prints.")
    return arn


def _check_token_key_name(value: Any) -> str:
    return _check_string(value, "tokenKeyName", min_len=1, max_len=128, pattern=TOKEN_KEY_NAME_PATTERN)


def _check_public_keys(keys: Any) -> dict[str, str]:
    if not isinstance(keys, dict):
        raise _invalid("tokenSigningPublicKeys must be a map of key name to PEM public key, "
                       'e.g. {"FIRST_KEY": "-----BEGIN PUBLIC KEY-----\\n...\\n-----END PUBLIC KEY-----"}.')
    for key_name, pem in keys.items():
        _check_string(key_name, "tokenSigningPublicKeys.key", min_len=1, max_len=128, pattern=KEY_NAME_PATTERN)
        _check_string(pem, f"tokenSigningPublicKeys.{key_name}", max_len=5120)
        try:
            authz.validate_public_key(pem)
        except authz.InvalidPublicKey as exc:
            raise _invalid(f"tokenSigningPublicKeys.{key_name}: {exc}") from None
    return dict(keys)


def _check_signing(signing_disabled: bool, token_key_name: str | None, keys: dict[str, str]) -> None:
    # AWS: "tokenKeyName and tokenSigningPublicKeys ... are required values if signing is enabled."
    # Whether the service itself checks is not documented; we do, since such an authorizer is unusable.
    if signing_disabled:
        return
    missing = [m for m, v in (("tokenKeyName", token_key_name), ("tokenSigningPublicKeys", keys)) if not v]
    if missing:
        raise _invalid(f"Token signing is enabled for this authorizer (signingDisabled is false), so "
                       f"{' and '.join(missing)} must be given: tokenKeyName names the header/query parameter "
                       "that carries the token, tokenSigningPublicKeys holds at least one PEM RSA public key "
                       "(>= 2048 bits) that verifies token signatures. To create an authorizer without "
                       "signing, pass --signing-disabled.")


def _check_tags(tags: Any) -> list[tuple[str, str]]:
    if tags is None:
        return []
    if not isinstance(tags, list):
        raise _invalid("tags must be a list of {\"Key\": ..., \"Value\": ...} objects.")
    out = []
    for i, tag in enumerate(tags):
        if not isinstance(tag, dict) or "Key" not in tag:
            raise _invalid(f"tags[{i}] must be an object with a Key (and an optional Value).")
        key = _check_string(tag["Key"], f"tags.{i + 1}.member.Key", min_len=1, max_len=128)
        value = _check_string(tag.get("Value", ""), f"tags.{i + 1}.member.Value", max_len=256)
        out.append((key, value))
    if len(out) > TAG_QUOTA:
        raise AwsError("LimitExceededException", f"A resource can have at most {TAG_QUOTA} tags.", 410)
    return out


# --- authorizers ----------------------------------------------------------------------------

def _description(auth: dict) -> dict:
    desc = {
        "authorizerName": auth["name"],
        "authorizerArn": auth["arn"],
        "authorizerFunctionArn": auth["function_arn"],
        "status": auth["status"],
        "creationDate": auth["creation_date"],
        "lastModifiedDate": auth["last_modified_date"],
        "signingDisabled": auth["signing_disabled"],
        "enableCachingForHttp": auth["enable_caching_for_http"],
    }
    if auth["token_key_name"] is not None:
        desc["tokenKeyName"] = auth["token_key_name"]
    if auth["public_keys"]:
        desc["tokenSigningPublicKeys"] = auth["public_keys"]
    return desc


@router.route("POST", "/authorizer/{authorizerName}")
def create_authorizer(req: core.Request, ctx: core.Context, authorizerName: str) -> Response:
    name = _check_name(authorizerName)
    body = req.json()
    if "authorizerFunctionArn" not in body:
        raise _invalid("authorizerFunctionArn is required: the ARN of the Lambda function that authorizes "
                       f"connections ({FUNCTION_ARN_SHAPE}).")
    function_arn = _check_function_arn(body["authorizerFunctionArn"])
    token_key_name = body.get("tokenKeyName")
    if token_key_name is not None:
        _check_token_key_name(token_key_name)
    keys = _check_public_keys(body.get("tokenSigningPublicKeys", {}))
    # AWS's docs give no default status: the sandbox's choice is ACTIVE, as Terraform's
    status = _check_status(body.get("status", "ACTIVE"))
    signing_disabled = _check_bool(body, "signingDisabled", False)
    caching = _check_bool(body, "enableCachingForHttp", False)
    tags = _check_tags(body.get("tags"))
    _check_signing(signing_disabled, token_key_name, keys)
    # The function need not exist yet: AWS does not check it here (TestInvokeAuthorizer does).
    arn = authorizer_arn(ctx, name)
    now = time.time()
    with ctx.store.tx() as db:
        if db.execute("SELECT 1 FROM iot_authorizers WHERE name = ?", (name,)).fetchone():
            raise AwsError("ResourceAlreadyExistsException",
                           f"An authorizer named {name!r} already exists. Choose another name, or change it "
                           "with aws iot update-authorizer.", 409, resourceId=name, resourceArn=arn)
        count = db.execute("SELECT COUNT(*) FROM iot_authorizers").fetchone()[0]
        if count >= AUTHORIZER_QUOTA:
            raise AwsError("LimitExceededException",
                           f"This account already has {count} authorizers, the maximum of {AUTHORIZER_QUOTA}. "
                           "Delete one you no longer need (aws iot update-authorizer --status INACTIVE, then "
                           "aws iot delete-authorizer) and try again.", 410)
        db.execute("INSERT INTO iot_authorizers (name, function_arn, token_key_name, public_keys, status, "
                   "signing_disabled, enable_caching_for_http, creation_date, last_modified_date) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (name, function_arn, token_key_name, json.dumps(keys), status, int(signing_disabled),
                    int(caching), now, now))
        db.executemany("INSERT INTO iot_tags (resource_arn, key, value) VALUES (?, ?, ?) "
                       "ON CONFLICT(resource_arn, key) DO UPDATE SET value = excluded.value",
                       [(arn, k, v) for k, v in tags])
    return Response.json({"authorizerName": name, "authorizerArn": arn})


@router.route("GET", "/authorizer/{authorizerName}")
def describe_authorizer(req: core.Request, ctx: core.Context, authorizerName: str) -> Response:
    name = _check_name(authorizerName)
    return Response.json({"authorizerDescription": _description(_require_authorizer(ctx, name))})


@router.route("PUT", "/authorizer/{authorizerName}")
def update_authorizer(req: core.Request, ctx: core.Context, authorizerName: str) -> Response:
    name = _check_name(authorizerName)
    body = req.json()
    if "signingDisabled" in body:
        # "You can't update the signing-disabled status of an authorizer after you create it." (AWS IoT guide)
        raise _invalid("signingDisabled can't be updated after the authorizer is created. To change it, "
                       "create a new authorizer with the signing setting you want (and delete this one: "
                       "set it INACTIVE, then delete it).")
    changes: dict[str, Any] = {}
    if "authorizerFunctionArn" in body:
        changes["function_arn"] = _check_function_arn(body["authorizerFunctionArn"])
    if "tokenKeyName" in body:
        changes["token_key_name"] = _check_token_key_name(body["tokenKeyName"])
    if "tokenSigningPublicKeys" in body:
        changes["public_keys"] = _check_public_keys(body["tokenSigningPublicKeys"])
    if "status" in body:
        changes["status"] = _check_status(body["status"])
    if "enableCachingForHttp" in body:
        changes["enable_caching_for_http"] = _check_bool(body, "enableCachingForHttp", False)
    with ctx.store.tx() as db:
        current = get_authorizer(ctx, name)
        if current is None:
            raise _not_found(ctx, name)
        merged = {**current, **changes}
        _check_signing(merged["signing_disabled"], merged["token_key_name"], merged["public_keys"])
        db.execute("UPDATE iot_authorizers SET function_arn = ?, token_key_name = ?, public_keys = ?, status = ?, "
                   "enable_caching_for_http = ?, last_modified_date = ? WHERE name = ?",
                   (merged["function_arn"], merged["token_key_name"], json.dumps(merged["public_keys"]),
                    merged["status"], int(merged["enable_caching_for_http"]), time.time(), name))
    return Response.json({"authorizerName": name, "authorizerArn": current["arn"]})


@router.route("DELETE", "/authorizer/{authorizerName}")
def delete_authorizer(req: core.Request, ctx: core.Context, authorizerName: str) -> Response:
    name = _check_name(authorizerName)
    with ctx.store.tx() as db:
        auth = get_authorizer(ctx, name)
        if auth is None:
            raise _not_found(ctx, name)
        # "A custom authorizer must be in the INACTIVE state before you can delete it." AWS's exact
        # error is not documented; DeleteConflictException is the delete-specific error in the model.
        if auth["status"] == "ACTIVE":
            raise AwsError("DeleteConflictException",
                           f"The authorizer {name!r} is ACTIVE, and an authorizer must be INACTIVE before it "
                           f"can be deleted. Run: aws iot update-authorizer --authorizer-name {name} "
                           "--status INACTIVE, then delete it again.", 409)
        if default_authorizer_name(ctx) == name:
            raise AwsError("DeleteConflictException",
                           f"The authorizer {name!r} is this account's default authorizer. Run "
                           "aws iot clear-default-authorizer first, then delete it again.", 409)
        db.execute("DELETE FROM iot_authorizers WHERE name = ?", (name,))
        db.execute("DELETE FROM iot_tags WHERE resource_arn = ?", (auth["arn"],))
    return Response.json({})


def _encode_marker(name: str) -> str:
    return base64.b64encode(json.dumps({"after": name}).encode()).decode()


def _decode_marker(marker: str) -> str:
    bad = _invalid(f"The marker {_shown(marker)!r} is not valid: pass the nextMarker of the previous "
                   "list-authorizers response unchanged.")
    if len(marker) > 1024 or not re.fullmatch(MARKER_PATTERN, marker):
        raise bad
    try:
        after = json.loads(base64.b64decode(marker, validate=True))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad from None
    if not isinstance(after, str):
        raise bad
    return after


@router.route("GET", "/authorizers/")
def list_authorizers(req: core.Request, ctx: core.Context) -> Response:
    raw_size = req.query_value("pageSize")
    page_size = 250
    if raw_size is not None:
        if not re.fullmatch(r"-?\d+", raw_size) or not 1 <= int(raw_size) <= 250:
            raise _invalid(f"1 validation error detected: Value '{raw_size}' at 'pageSize' failed to satisfy "
                           "constraint: Member must be an integer between 1 and 250")
        page_size = int(raw_size)
    raw_order = req.query_value("isAscendingOrder")
    if raw_order not in (None, "true", "false"):
        raise _invalid(f"isAscendingOrder must be true or false (got {raw_order!r}).")
    # "Return the list of authorizers in ascending alphabetical order." Omitted means ascending, as in the
    # AWS CLI example (aws iot list-authorizers lists CustomAuthorizer, ...2, ...3); false means descending.
    ascending = raw_order != "false"
    status = req.query_value("status")
    marker = req.query_value("marker")
    sql, params = "SELECT name FROM iot_authorizers WHERE 1 = 1", []
    if status is not None:
        sql += " AND status = ?"
        params.append(_check_status(status))
    if marker is not None:
        sql += " AND name > ?" if ascending else " AND name < ?"
        params.append(_decode_marker(marker))
    sql += f" ORDER BY name {'ASC' if ascending else 'DESC'} LIMIT ?"
    params.append(page_size + 1)
    names = [row["name"] for row in ctx.store.all(sql, tuple(params))]
    out: dict[str, Any] = {"authorizers": [{"authorizerName": n, "authorizerArn": authorizer_arn(ctx, n)}
                                           for n in names[:page_size]]}
    if len(names) > page_size:
        out["nextMarker"] = _encode_marker(names[page_size - 1])
    return Response.json(out)


# --- default authorizer -----------------------------------------------------------------------

@router.route("POST", "/default-authorizer")
def set_default_authorizer(req: core.Request, ctx: core.Context) -> Response:
    body = req.json()
    if "authorizerName" not in body:
        raise _invalid("authorizerName is required: the authorizer to use when a device names none.")
    name = _check_name(body["authorizerName"])
    with ctx.store.tx() as db:
        auth = get_authorizer(ctx, name)
        if auth is None:
            raise _not_found(ctx, name)
        # Replacing an existing default is allowed (AWS's behaviour here is not documented).
        db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (DEFAULT_AUTHORIZER_SETTING, name))
    return Response.json({"authorizerName": name, "authorizerArn": auth["arn"]})


def _no_default() -> AwsError:
    return AwsError("ResourceNotFoundException",
                    "No default authorizer is set for this account. Set one with: "
                    "aws iot set-default-authorizer --authorizer-name <name>", 404)


@router.route("GET", "/default-authorizer")
def describe_default_authorizer(req: core.Request, ctx: core.Context) -> Response:
    name = default_authorizer_name(ctx)
    auth = get_authorizer(ctx, name) if name else None
    if auth is None:
        raise _no_default()
    return Response.json({"authorizerDescription": _description(auth)})


@router.route("DELETE", "/default-authorizer")
def clear_default_authorizer(req: core.Request, ctx: core.Context) -> Response:
    with ctx.store.tx() as db:
        if db.execute("DELETE FROM settings WHERE key = ?", (DEFAULT_AUTHORIZER_SETTING,)).rowcount == 0:
            raise _no_default()
    return Response.json({})


# --- TestInvokeAuthorizer ---------------------------------------------------------------------

def _optional_object(body: dict, member: str) -> dict | None:
    value = body.get(member)
    if value is not None and not isinstance(value, dict):
        raise _invalid(f"{member} must be an object.")
    return value


def _http_context(body: dict) -> dict | None:
    http = _optional_object(body, "httpContext")
    if http is None:
        return None
    headers = http.get("headers", {})
    if not isinstance(headers, dict):
        raise _invalid("httpContext.headers must be a map of header name to value.")
    for key, value in headers.items():
        _check_string(key, "httpContext.headers.key", min_len=1, max_len=8192)
        _check_string(value, f"httpContext.headers.{key}", min_len=1, max_len=8192)
    out: dict[str, Any] = {"headers": dict(headers)}
    if "queryString" in http:
        out["queryString"] = _check_string(http["queryString"], "httpContext.queryString", min_len=1, max_len=4096)
    return out


def _mqtt_context(body: dict) -> dict | None:
    mqtt = _optional_object(body, "mqttContext")
    if mqtt is None:
        return None
    out: dict[str, Any] = {}
    if "username" in mqtt:
        out["username"] = _check_string(mqtt["username"], "mqttContext.username", min_len=1, max_len=65535)
    if "password" in mqtt:
        # A blob: base64 on the wire. The event carries it base64-encoded too ("Your Lambda function must
        # decode it"), so decode to check and re-encode canonically.
        raw = mqtt["password"]
        try:
            password = base64.b64decode(raw, validate=True) if isinstance(raw, str) else None
        except binascii.Error:
            password = None
        if password is None or not 1 <= len(password) <= 65535:
            raise _invalid("mqttContext.password must be the base64 encoding of 1 to 65535 bytes "
                           "(e.g. echo -n PASSWORD | base64).")
        out["password"] = base64.b64encode(password).decode()
    if "clientId" in mqtt:
        out["clientId"] = _check_string(mqtt["clientId"], "mqttContext.clientId", min_len=1, max_len=65535)
    return out


def _tls_server_name(body: dict) -> str | None:
    tls = _optional_object(body, "tlsContext")
    if tls is None or "serverName" not in tls:
        return None
    return _check_string(tls["serverName"], "tlsContext.serverName", min_len=1, max_len=253)


def _check_signature(signature: Any) -> str:
    if isinstance(signature, str) and re.search(r"\s", signature):
        raise _invalid("tokenSignature contains whitespace or line breaks. Base64-encode the signature on one "
                       "line (openssl base64 -A, or base64 -w0) and pass it unchanged.")
    return _check_string(signature, "tokenSignature", min_len=1, max_len=2560, pattern=SIGNATURE_PATTERN)


@router.route("POST", "/authorizer/{authorizerName}/test")
def run_test_invoke_authorizer(req: core.Request, ctx: core.Context, authorizerName: str) -> Response:
    from helpers.sandbox import custom_auth  # it imports this module for the authorizer lookups

    name = _check_name(authorizerName)
    body = req.json()
    auth = _require_authorizer(ctx, name)
    token = body.get("token")
    if token is not None:
        _check_string(token, "token", min_len=1, max_len=6144)
    signature = body.get("tokenSignature")
    if signature is not None:
        _check_signature(signature)
    http = _http_context(body)
    mqtt = _mqtt_context(body)
    tls_server_name = _tls_server_name(body)
    # The same pipeline the device endpoints run (helpers/sandbox/custom_auth.py), in AWS's order: the
    # signature before anything touches the function, then the function, the permission, the invocation.
    # Choice (undocumented): an INACTIVE authorizer is refused, so that a test never passes for an authorizer
    # the endpoints would not use.
    try:
        _, answer = custom_auth.authenticate(
            ctx, custom_auth.Credentials(name, token, signature, where=custom_auth.TEST_INVOKE),
            http=http, mqtt=mqtt, tls_server_name=tls_server_name,
            authorizer=custom_auth.find_authorizer(ctx, auth["name"]))
    except custom_auth.AuthFailure as failure:
        raise failure.error from None
    out: dict[str, Any] = {"isAuthenticated": answer.is_authenticated, "principalId": answer.principal_id,
                           "policyDocuments": list(answer.policy_documents),
                           "refreshAfterInSeconds": answer.refresh_after_seconds,
                           "disconnectAfterInSeconds": answer.disconnect_after_seconds}
    return Response.json({k: v for k, v in out.items() if v is not None})


# --- endpoints ----------------------------------------------------------------------------------

@router.route("GET", "/endpoint")
def describe_endpoint(req: core.Request, ctx: core.Context) -> Response:
    endpoint_type = req.query_value("endpointType") or "iot:Data"  # no type: the legacy iot:Data one, as AWS
    if endpoint_type not in ENDPOINT_TYPES:
        raise _invalid(f"Endpoint type {_shown(endpoint_type)!r} is not valid. Valid types: "
                       f"{', '.join(ENDPOINT_TYPES)} (use iot:Data-ATS for devices).")
    address = ctx.endpoints.get(endpoint_type)
    if address and address.startswith("localhost:"):
        address = f"{data_endpoint_host(ctx)}:{address.split(':', 1)[1]}"
    if not address:
        served = ", ".join(t for t in ENDPOINT_TYPES if ctx.endpoints.get(t)) or "none"
        raise _invalid(f"The sandbox does not serve an {endpoint_type} endpoint (served: {served}).")
    return Response.json({"endpointAddress": address})


# --- tags ---------------------------------------------------------------------------------------

def _tagged_authorizer(ctx: core.Context, arn: Any) -> str:
    _check_string(arn, "resourceArn", min_len=1)
    prefix = f"arn:aws:iot:{ctx.region}:{ctx.account_id}:authorizer/"
    if not arn.startswith(prefix):
        raise _invalid(f"The sandbox can only tag authorizers; {_shown(arn)!r} is not an authorizer ARN of "
                       f"this account and region ({prefix}<name>).")
    _require_authorizer(ctx, arn[len(prefix):])
    return arn


@router.route("GET", "/tags")
def list_tags_for_resource(req: core.Request, ctx: core.Context) -> Response:
    arn = _tagged_authorizer(ctx, req.query_value("resourceArn"))
    rows = ctx.store.all("SELECT key, value FROM iot_tags WHERE resource_arn = ? ORDER BY key", (arn,))
    return Response.json({"tags": [{"Key": r["key"], "Value": r["value"]} for r in rows]})


@router.route("POST", "/tags")
def tag_resource(req: core.Request, ctx: core.Context) -> Response:
    body = req.json()
    arn = _tagged_authorizer(ctx, body.get("resourceArn"))
    tags = _check_tags(body.get("tags", []))
    with ctx.store.tx() as db:
        db.executemany("INSERT INTO iot_tags (resource_arn, key, value) VALUES (?, ?, ?) "
                       "ON CONFLICT(resource_arn, key) DO UPDATE SET value = excluded.value",
                       [(arn, k, v) for k, v in tags])
        if db.execute("SELECT COUNT(*) FROM iot_tags WHERE resource_arn = ?", (arn,)).fetchone()[0] > TAG_QUOTA:
            raise AwsError("LimitExceededException", f"A resource can have at most {TAG_QUOTA} tags.", 410)
    return Response.json({})


@router.route("POST", "/untag")
def untag_resource(req: core.Request, ctx: core.Context) -> Response:
    body = req.json()
    arn = _tagged_authorizer(ctx, body.get("resourceArn"))
    keys = body.get("tagKeys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _invalid("tagKeys must be a list of tag keys.")
    with ctx.store.tx() as db:
        db.executemany("DELETE FROM iot_tags WHERE resource_arn = ? AND key = ?", [(arn, k) for k in keys])
    return Response.json({})


# --- logging (SetV2LoggingOptions / GetV2LoggingOptions; the gating is in helpers/sandbox/iot_logs.py) ------

@router.route("POST", "/v2LoggingOptions")
def set_v2_logging_options(req: core.Request, ctx: core.Context) -> Response:
    from helpers.sandbox import iot_logs

    iot_logs.set_options(ctx, req.json())
    return Response.json({})


@router.route("GET", "/v2LoggingOptions")
def get_v2_logging_options(req: core.Request, ctx: core.Context) -> Response:
    from helpers.sandbox import iot_logs

    options = iot_logs.get_options(ctx)
    if options is None:  # the model's error for "never configured"
        raise AwsError("NotConfiguredException",
                       "AWS IoT logging is not configured in this account and region: call "
                       "SetV2LoggingOptions (aws iot set-v2-logging-options --role-arn ROLE_ARN "
                       "--default-log-level INFO) first.", 404)
    return Response.json(options)
