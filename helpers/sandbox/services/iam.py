"""IAM for the sandbox: the role operations a Lambda function needs, on AWS's query protocol.

Served: CreateRole, GetRole, DeleteRole, AttachRolePolicy, DetachRolePolicy,
ListAttachedRolePolicies, GetPolicy and GetPolicyVersion (AWS managed policies). Requests are form-encoded (``Action=CreateRole&RoleName=...``,
lists as ``Tags.member.1.Key``); answers are XML in IAM's namespace. Errors use
IAM's codes and texts: ``EntityAlreadyExists`` (409), ``NoSuchEntity`` (404),
``DeleteConflict`` (409), ``MalformedPolicyDocument``, ``InvalidInput`` and
``ValidationError`` (400).

Sandbox choices (no real IAM behind it):

- AWS managed policies are shipped as data (``iam_managed_policies.json``: the policies the
  workbook, the tutorial and AWS's custom-auth docs use, with their documents and default
  versions as IAM publishes them). Any other policy ARN - a typo such as a missing
  ``service-role/``, a managed policy the sandbox does not ship, or a customer-managed
  policy (the sandbox has no CreatePolicy) - answers ``NoSuchEntity`` with AWS's
  "Policy ARN does not exist or is not attachable."
- :func:`role_allows` evaluates a role's attached policies the way IAM does (default
  deny, Allow, explicit Deny wins); Lambda uses it to decide whether a function's logs
  are written (``logs:CreateLogGroup``, ``logs:CreateLogStream``, ``logs:PutLogEvents``).
- Role names are unique ignoring case, as in IAM ("Role names are not distinguished
  by case"); lookups ignore case too.
- Policy documents come back URL-encoded, as IAM sends them; boto3 decodes them to dicts.

Other services read roles through :func:`role_by_arn`.

Usage:

>>> from helpers.sandbox import core
>>> from helpers.sandbox.store import Store
>>> ctx = core.Context(store=Store(":memory:", [SCHEMA]))
>>> form = "Action=CreateRole&RoleName=r1&AssumeRolePolicyDocument=%7B%22Statement%22%3A%5B%5D%7D"
>>> resp = handle(core.Request("POST", "/", "", {}, form.encode(), service="iam"), ctx)
>>> resp.status, role_by_arn(ctx, "arn:aws:iam::123456789012:role/r1")["RoleName"]
(200, 'r1')
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import string
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from helpers.sandbox import core

PROTOCOL = "query"
SIGNING_NAMES = ("iam",)
NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"

SCHEMA = """
CREATE TABLE IF NOT EXISTS iam_roles (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    role_id TEXT NOT NULL,
    path TEXT NOT NULL,
    arn TEXT NOT NULL,
    assume_role_policy TEXT NOT NULL,
    description TEXT,
    max_session_duration INTEGER NOT NULL,
    tags TEXT NOT NULL,
    create_date TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS iam_role_policies (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    role_name TEXT NOT NULL COLLATE NOCASE,
    policy_arn TEXT NOT NULL,
    UNIQUE (role_name, policy_arn)
)
"""

ROLE_NAME_RE = re.compile(r"[\w+=,.@-]+", re.ASCII)
PATH_RE = re.compile(r"(/)|(/[\u0021-\u007E]+/)")
POLICY_ARN_RE = re.compile(r"arn:aws:iam::(aws|\d{12}):policy((?:/[\w+=,.@-]+)*)/([\w+=,.@-]+)", re.ASCII)
TAG_RE = re.compile(r"[\w\s.:/=+\-@]*")


def _db(ctx: core.Context):
    """IAM's store: global, the same whichever region the request's scope names."""
    return ctx.iam_store if ctx.iam_store is not None else ctx.store


# --- AWS managed policies (data) -----------------------------------------------------------

def _load_managed() -> dict[str, dict[str, Any]]:
    from pathlib import Path
    doc = json.loads((Path(__file__).with_name("iam_managed_policies.json")).read_text())
    return {p["Arn"]: p for p in doc["Policies"]}


MANAGED_POLICIES = _load_managed()


def managed_policy(arn: str) -> dict[str, Any] | None:
    """The AWS managed policy ``arn`` names (PolicyName, Arn, Path, DefaultVersionId, Document...), or None."""
    return MANAGED_POLICIES.get(arn)


# --- helpers other services use -------------------------------------------------------------

def role_policies(ctx: core.Context, role_arn: str) -> list[dict[str, Any]]:
    """The documents of the policies attached to the role ``role_arn`` (none when there is no such role)."""
    row = _db(ctx).one("SELECT name FROM iam_roles WHERE arn = ?", (role_arn,))
    if row is None:
        return []
    arns = [r["policy_arn"] for r in _db(ctx).all(
        "SELECT policy_arn FROM iam_role_policies WHERE role_name = ? ORDER BY seq", (row["name"],))]
    return [MANAGED_POLICIES[a]["Document"] for a in arns if a in MANAGED_POLICIES]


def role_allows(ctx: core.Context, role_arn: str, action: str, resource: str) -> bool:
    """True when the role's attached policies allow ``action`` on ``resource`` (IAM's evaluation)."""
    from helpers.sandbox.authz import evaluate
    return evaluate(role_policies(ctx, role_arn), action, resource).allowed


def role_by_arn(ctx: core.Context, arn: str) -> dict[str, Any] | None:
    """The role whose ARN is ``arn`` (as a dict of GetRole's members), or None."""
    row = _db(ctx).one("SELECT * FROM iam_roles WHERE arn = ?", (arn,))
    return _role_doc(row, decode_policy=True) if row else None


# --- wire format ----------------------------------------------------------------------------

def _xml(value: Any) -> str:
    """Serialize members the way the query protocol does: dicts as elements, lists as <member>."""
    if isinstance(value, dict):
        return "".join(f"<{k}>{_xml(v)}</{k}>" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "".join(f"<member>{_xml(v)}</member>" for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return core.xml_escape(str(value))


def _answer(action: str, req: core.Request, result: dict[str, Any] | None) -> core.Response:
    inner = f"<{action}Result>{_xml(result)}</{action}Result>" if result is not None else ""
    body = (f'<{action}Response xmlns="{NAMESPACE}">{inner}'
            f"<ResponseMetadata><RequestId>{req.request_id}</RequestId></ResponseMetadata>"
            f"</{action}Response>")
    resp = core.Response.xml(body)
    resp.headers["x-amzn-RequestId"] = req.request_id
    return resp


def _validation(value: Any, member: str, constraint: str) -> core.AwsError:
    return core.AwsError("ValidationError", f"1 validation error detected: Value '{value}' at '{member}' "
                         f"failed to satisfy constraint: {constraint}", 400)


def _required(form: dict[str, str], name: str) -> str:
    if name not in form:
        raise core.AwsError("ValidationError", f"1 validation error detected: Value null at '{name[0].lower() + name[1:]}' "
                            "failed to satisfy constraint: Member must not be null", 400)
    return form[name]


def _role_name(form: dict[str, str]) -> str:
    name = _required(form, "RoleName")
    if not 1 <= len(name) <= 64:
        raise _validation(name, "roleName", "Member must have length between 1 and 64")
    if not ROLE_NAME_RE.fullmatch(name):
        raise _validation(name, "roleName", r"Member must satisfy regular expression pattern: [\w+=,.@-]+")
    return name


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _role_doc(row: Any, decode_policy: bool = False) -> dict[str, Any]:
    policy = row["assume_role_policy"]
    doc: dict[str, Any] = {
        "Path": row["path"], "RoleName": row["name"], "RoleId": row["role_id"], "Arn": row["arn"],
        "CreateDate": row["create_date"],
        # IAM returns policy documents URL-encoded (RFC 3986); boto3 decodes them.
        "AssumeRolePolicyDocument": policy if decode_policy else quote(policy, safe=""),
        "Description": row["description"], "MaxSessionDuration": row["max_session_duration"],
    }
    tags = json.loads(row["tags"])
    if tags:
        doc["Tags"] = tags
    return doc


def _get_row(ctx: core.Context, name: str) -> Any:
    row = _db(ctx).one("SELECT * FROM iam_roles WHERE name = ?", (name,))
    if row is None:
        raise core.AwsError("NoSuchEntity", f"The role with name {name} cannot be found.", 404)
    return row


def _tags(form: dict[str, str]) -> list[dict[str, str]]:
    indexes = sorted({int(m.group(1)) for k in form if (m := re.fullmatch(r"Tags\.member\.(\d+)\.Key", k))})
    tags = [{"Key": form[f"Tags.member.{i}.Key"], "Value": form.get(f"Tags.member.{i}.Value", "")} for i in indexes]
    if len(tags) > 50:
        raise core.AwsError("LimitExceeded", "Cannot exceed quota for TagsPerRole: 50.", 409)
    for tag in tags:
        if not (1 <= len(tag["Key"]) <= 128 and TAG_RE.fullmatch(tag["Key"])):
            raise _validation(tag["Key"], "tags.member.key", "Member must have length between 1 and 128 and "
                              r"satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]+")
        if not (len(tag["Value"]) <= 256 and TAG_RE.fullmatch(tag["Value"])):
            raise _validation(tag["Value"], "tags.member.value", "Member must have length less than or equal to 256 "
                              r"and satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]*")
    if len({t["Key"].lower() for t in tags}) != len(tags):
        raise core.AwsError("InvalidInput", "Duplicate tag keys found. Please note that Tag keys are case insensitive.", 400)
    return tags


def _check_policy_document(text: str) -> None:
    if len(text) > 131072:
        raise _validation("...", "assumeRolePolicyDocument", "Member must have length less than or equal to 131072")
    try:
        doc = json.loads(text)
    except ValueError:
        raise core.AwsError("MalformedPolicyDocument", "This policy contains invalid Json", 400) from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise core.AwsError("MalformedPolicyDocument", "Syntax errors in policy.", 400)


def _policy_arn(ctx: core.Context, form: dict[str, str]) -> re.Match[str]:
    arn = _required(form, "PolicyArn")
    m = POLICY_ARN_RE.fullmatch(arn)
    if m is None:
        raise core.AwsError("InvalidInput", f"ARN {arn} is not valid.", 400)
    if m.group(1) != "aws" or arn not in MANAGED_POLICIES:
        raise core.AwsError("NoSuchEntity", f"Policy {arn} does not exist or is not attachable.", 404)
    return m


# --- operations -----------------------------------------------------------------------------

def _unknown(req: core.Request, action: str) -> core.AwsError:
    return core.AwsError("InvalidAction", f"Could not find operation {action or '(none)'} for version 2010-05-08. "
                         f"The sandbox's IAM serves: {', '.join(router.operations)}.", 400)


router = core.ActionRouter(core.query_action, _unknown)


@router.route("CreateRole")
def create_role(req: core.Request, ctx: core.Context) -> core.Response:
    form = req.form()
    name = _role_name(form)
    policy = _required(form, "AssumeRolePolicyDocument")
    path = form.get("Path", "/")
    if not (1 <= len(path) <= 512 and PATH_RE.fullmatch(path)):
        raise _validation(path, "path", r"Member must satisfy regular expression pattern: (\u002F)|(\u002F[\u0021-\u007E]+\u002F)")
    description = form.get("Description")
    if description is not None and len(description) > 1000:
        raise _validation(description, "description", "Member must have length less than or equal to 1000")
    try:
        duration = int(form.get("MaxSessionDuration", "3600"))
    except ValueError:
        raise _validation(form["MaxSessionDuration"], "maxSessionDuration", "Member must be an integer") from None
    if not 3600 <= duration <= 43200:
        raise core.AwsError("ValidationError", f"The requested MaxSessionDuration {duration} exceeds the allowed range. "
                            "Choose a value between 3600 and 43200 seconds.", 400)
    if "PermissionsBoundary" in form:
        raise core.AwsError("InvalidInput", "The sandbox does not support permissions boundaries; omit PermissionsBoundary.", 400)
    tags = _tags(form)
    _check_policy_document(policy)
    role_id = "AROA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(17))
    arn = f"arn:aws:iam::{ctx.account_id}:role{path}{name}"
    with _db(ctx).tx() as db:
        if db.execute("SELECT 1 FROM iam_roles WHERE name = ?", (name,)).fetchone():
            raise core.AwsError("EntityAlreadyExists", f"Role with name {name} already exists.", 409)
        db.execute("INSERT INTO iam_roles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (name, role_id, path, arn, policy, description, duration, json.dumps(tags), _now_iso()))
    return _answer("CreateRole", req, {"Role": _role_doc(_get_row(ctx, name))})


@router.route("GetRole")
def get_role(req: core.Request, ctx: core.Context) -> core.Response:
    form = req.form()
    doc = _role_doc(_get_row(ctx, _role_name(form)))
    doc["RoleLastUsed"] = {}
    return _answer("GetRole", req, {"Role": doc})


@router.route("DeleteRole")
def delete_role(req: core.Request, ctx: core.Context) -> core.Response:
    form = req.form()
    name = _role_name(form)
    with _db(ctx).tx() as db:
        if not db.execute("SELECT 1 FROM iam_roles WHERE name = ?", (name,)).fetchone():
            raise core.AwsError("NoSuchEntity", f"The role with name {name} cannot be found.", 404)
        if db.execute("SELECT 1 FROM iam_role_policies WHERE role_name = ?", (name,)).fetchone():
            raise core.AwsError("DeleteConflict", "Cannot delete entity, must detach all policies first.", 409)
        db.execute("DELETE FROM iam_roles WHERE name = ?", (name,))
    return _answer("DeleteRole", req, None)


@router.route("AttachRolePolicy")
def attach_role_policy(req: core.Request, ctx: core.Context) -> core.Response:
    form = req.form()
    name = _role_name(form)
    arn = _policy_arn(ctx, form).group(0)
    with _db(ctx).tx() as db:
        row = db.execute("SELECT name FROM iam_roles WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise core.AwsError("NoSuchEntity", f"The role with name {name} cannot be found.", 404)
        db.execute("INSERT OR IGNORE INTO iam_role_policies (role_name, policy_arn) VALUES (?, ?)", (row["name"], arn))
    return _answer("AttachRolePolicy", req, None)


@router.route("DetachRolePolicy")
def detach_role_policy(req: core.Request, ctx: core.Context) -> core.Response:
    form = req.form()
    name = _role_name(form)
    arn = _policy_arn(ctx, form).group(0)
    with _db(ctx).tx() as db:
        if not db.execute("SELECT 1 FROM iam_roles WHERE name = ?", (name,)).fetchone():
            raise core.AwsError("NoSuchEntity", f"The role with name {name} cannot be found.", 404)
        gone = db.execute("DELETE FROM iam_role_policies WHERE role_name = ? AND policy_arn = ?", (name, arn)).rowcount
        if not gone:
            raise core.AwsError("NoSuchEntity", f"Policy {arn} was not found.", 404)
    return _answer("DetachRolePolicy", req, None)


@router.route("ListAttachedRolePolicies")
def list_attached_role_policies(req: core.Request, ctx: core.Context) -> core.Response:
    form = req.form()
    name = _role_name(form)
    _get_row(ctx, name)
    try:
        max_items = int(form.get("MaxItems", "100"))
    except ValueError:
        raise _validation(form["MaxItems"], "maxItems", "Member must be an integer") from None
    if not 1 <= max_items <= 1000:
        raise _validation(max_items, "maxItems", "Member must have value between 1 and 1000")
    after = 0
    if "Marker" in form:
        try:
            after = int(base64.b64decode(form["Marker"], validate=True).decode().removeprefix("seq:"))
        except ValueError:
            raise core.AwsError("InvalidInput", "Invalid Marker: pass the Marker value of the previous response.", 400) from None
    prefix = form.get("PathPrefix", "/")
    rows = _db(ctx).all("SELECT seq, policy_arn FROM iam_role_policies WHERE role_name = ? AND seq > ? ORDER BY seq",
                         (name, after))
    matching = []
    for row in rows:
        m = POLICY_ARN_RE.fullmatch(row["policy_arn"])
        if m and (m.group(2) + "/").startswith(prefix):
            matching.append((row["seq"], {"PolicyName": m.group(3), "PolicyArn": row["policy_arn"]}))
    page, truncated = matching[:max_items], len(matching) > max_items
    result: dict[str, Any] = {"AttachedPolicies": [p for _, p in page], "IsTruncated": truncated}
    if truncated:
        result["Marker"] = base64.b64encode(f"seq:{page[-1][0]}".encode()).decode()
    return _answer("ListAttachedRolePolicies", req, result)


def _policy_doc(policy: dict[str, Any]) -> dict[str, Any]:
    return {"PolicyName": policy["PolicyName"], "PolicyId": policy["PolicyId"], "Arn": policy["Arn"],
            "Path": policy["Path"], "DefaultVersionId": policy["DefaultVersionId"], "AttachmentCount": 0,
            "PermissionsBoundaryUsageCount": 0, "IsAttachable": True, "CreateDate": policy["CreateDate"],
            "UpdateDate": policy["UpdateDate"]}


def _known_policy(form: dict[str, str]) -> dict[str, Any]:
    arn = _required(form, "PolicyArn")
    if not POLICY_ARN_RE.fullmatch(arn):
        raise core.AwsError("InvalidInput", f"ARN {arn} is not valid.", 400)
    policy = MANAGED_POLICIES.get(arn)
    if policy is None:
        raise core.AwsError("NoSuchEntity", f"Policy {arn} does not exist or is not attachable.", 404)
    return policy


@router.route("GetPolicy")
def get_policy(req: core.Request, ctx: core.Context) -> core.Response:
    form = req.form()
    return _answer("GetPolicy", req, {"Policy": _policy_doc(_known_policy(form))})


@router.route("GetPolicyVersion")
def get_policy_version(req: core.Request, ctx: core.Context) -> core.Response:
    form = req.form()
    policy = _known_policy(form)
    version = _required(form, "VersionId")
    if version != policy["DefaultVersionId"]:
        raise core.AwsError("NoSuchEntity", f"Policy {policy['Arn']} version {version} does not exist or is not "
                            "attachable.", 404)
    return _answer("GetPolicyVersion", req, {"PolicyVersion": {
        "Document": quote(json.dumps(policy["Document"]), safe=""), "VersionId": version,
        "IsDefaultVersion": True, "CreateDate": policy["UpdateDate"]}})


def handle(req: core.Request, ctx: core.Context) -> core.Response:
    return router.dispatch(req, ctx)
