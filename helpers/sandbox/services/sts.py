"""STS for the sandbox: ``GetCallerIdentity`` on AWS's query protocol (form request, XML answer).

The sandbox has one identity, the learner's: an IAM user named ``sandbox-learner``
in the documentation account ``123456789012``. Its ``UserId`` looks like a real
IAM user id (``AIDA`` + 17 characters) and is deliberately not an access key id.

Usage:

>>> from helpers.sandbox import core
>>> req = core.Request("POST", "/", "", {}, b"Action=GetCallerIdentity&Version=2011-06-15", service="sts")
>>> body = handle(req, core.Context(store=None)).body.decode()
>>> "<Account>123456789012</Account>" in body and "user/sandbox-learner" in body
True
"""
from __future__ import annotations

from helpers.sandbox import core

PROTOCOL = "query"
SIGNING_NAMES = ("sts",)
SCHEMA = ""

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
#: The learner's IAM user (documented in helpers/sandbox/README.md).
USER_NAME = "sandbox-learner"
#: IAM user ids start with AIDA; this one is fixed and is not an access key id (AKIA...).
USER_ID = "AIDASANDBOXLEARNER001"


def handle(req: core.Request, ctx: core.Context) -> core.Response:
    action = req.form().get("Action", "")
    if action != "GetCallerIdentity":
        raise core.AwsError("InvalidAction", f"Could not find operation {action or '(none)'} for version 2011-06-15. "
                            "The sandbox's STS serves only GetCallerIdentity.", 400)
    account = ctx.account_id
    result = (f"<UserId>{USER_ID}</UserId><Account>{account}</Account>"
              f"<Arn>arn:aws:iam::{account}:user/{USER_NAME}</Arn>")
    body = (f'<GetCallerIdentityResponse xmlns="{NAMESPACE}">'
            f"<GetCallerIdentityResult>{result}</GetCallerIdentityResult>"
            f"<ResponseMetadata><RequestId>{req.request_id}</RequestId></ResponseMetadata>"
            "</GetCallerIdentityResponse>")
    resp = core.Response.xml(body)
    resp.headers["x-amzn-RequestId"] = req.request_id
    return resp
