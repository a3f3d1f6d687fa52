"""STS for the sandbox: ``GetCallerIdentity`` on AWS's query protocol (form request, XML answer).

The answer is the identity that signed the request: the learner's (an IAM user
named ``sandbox-learner`` in the documentation account ``123456789012``, for the
home's own key pair; its ``UserId`` looks like a real IAM user id, ``AIDA`` + 17
characters, and is deliberately not an access key id), or a Lambda function's
execution role session (``arn:aws:sts::ACCOUNT:assumed-role/ROLE/FUNCTION``, user id
``ROLEID:FUNCTION``) for the temporary credentials :func:`credentials_for_role`
issued to it, as on AWS.

Usage:

>>> from helpers.sandbox import core
>>> req = core.Request("POST", "/", "", {}, b"Action=GetCallerIdentity&Version=2011-06-15", service="sts")
>>> body = handle(req, core.Context(store=None)).body.decode()
>>> "<Account>123456789012</Account>" in body and "user/sandbox-learner" in body
True
"""
from __future__ import annotations

from helpers.sandbox import core
from helpers.sandbox.home import USER_ID, USER_NAME

PROTOCOL = "query"
SIGNING_NAMES = ("sts",)
SCHEMA = ""

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
#: Replace a warm worker whose credentials have less than this left (AWS refreshes them long before expiry).
REFRESH_MARGIN = 300


def credentials_for_role(ctx: core.Context, role: dict, session_name: str):
    """Temporary credentials (``ASIA...`` + session token) for ``role`` (GetRole's members), as Lambda gets.

    Valid for the role's MaxSessionDuration (one hour by default), the longest an
    AssumeRole session of that role may last.
    """
    arn = f"arn:aws:sts::{ctx.account_id}:assumed-role/{role['RoleName']}/{session_name}"
    return ctx.credentials.issue_temporary(arn, f"{role['RoleId']}:{session_name}",
                                           int(role.get("MaxSessionDuration") or 3600))


def _unknown(req: core.Request, action: str) -> core.AwsError:
    return core.AwsError("InvalidAction", f"Could not find operation {action or '(none)'} for version 2011-06-15. "
                         "The sandbox's STS serves only GetCallerIdentity.", 400)


router = core.ActionRouter(core.query_action, _unknown)


@router.route("GetCallerIdentity")
def get_caller_identity(req: core.Request, ctx: core.Context) -> core.Response:
    account = ctx.account_id
    who = req.credential
    user_id, arn = ((who.user_id, who.arn) if who is not None and who.arn
                    else (USER_ID, f"arn:aws:iam::{account}:user/{USER_NAME}"))
    result = (f"<UserId>{core.xml_escape(user_id)}</UserId><Account>{account}</Account>"
              f"<Arn>{core.xml_escape(arn)}</Arn>")
    body = (f'<GetCallerIdentityResponse xmlns="{NAMESPACE}">'
            f"<GetCallerIdentityResult>{result}</GetCallerIdentityResult>"
            f"<ResponseMetadata><RequestId>{req.request_id}</RequestId></ResponseMetadata>"
            "</GetCallerIdentityResponse>")
    resp = core.Response.xml(body)
    resp.headers["x-amzn-RequestId"] = req.request_id
    return resp


def handle(req: core.Request, ctx: core.Context) -> core.Response:
    return router.dispatch(req, ctx)
