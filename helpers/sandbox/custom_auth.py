"""The custom-authentication pipeline: one decision for every door.

``TestInvokeAuthorizer`` (``services/iot.py``), HTTPS publish (``dataplane.py``),
MQTT CONNECT and MQTT over WebSocket (``devices.py``) all call :func:`authenticate`;
each door only maps a :class:`AuthFailure` to its protocol's answer (a
test-invoke error, HTTP 403, a CONNACK refusal) and writes one ``AWSIotLogsV2``
entry. The stages run in AWS's order (``helpers/sandbox/README.md`` has the
sources):

1. ``authorizer``: the authorizer named by the request, else the account's
   default authorizer, exists and is ACTIVE (:func:`find_authorizer`);
2. ``credentials``/``signature``: with signing on, the token and its signature
   are present and the signature verifies with one of the authorizer's public
   keys. Until this passes the function is never touched;
3. ``function``: the authorizer's function exists;
4. ``permission``: its resource policy lets ``iot.amazonaws.com`` invoke it for
   this authorizer's ARN;
5. ``invoke``: it runs with the documented event and answers within
   min(its timeout, 5 s) without an error;
6. ``response``: its answer is a valid custom-auth response.

``isAuthenticated: false`` is not a failure of the pipeline (test-invoke returns
it as the answer); the devices' doors refuse it.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from . import authz, core
from .core import AwsError
from .runtime import RuntimeUnavailable
from .services import awslambda, iot

#: "The Lambda function timeout limit for custom authorizer is 5 seconds." (AWS IoT developer guide)
AUTHORIZER_TIMEOUT_SECONDS = 5.0
AUTHORIZER_NAME_PARAM = "x-amz-customauthorizer-name"
SIGNATURE_PARAM = "x-amz-customauthorizer-signature"
#: ``Credentials.where`` for TestInvokeAuthorizer (its messages name the CLI options).
TEST_INVOKE = "--token/--token-signature"

#: AWSIotLogsV2 reason codes. AWS documents AUTHORIZATION_FAILURE (a policy refused the action); the
#: sandbox labels a failure of the pipeline itself (authorizer, signature, function, its answer)
#: AUTHENTICATION_FAILURE, its own name (see the sandbox README's choices table).
AUTHORIZATION_FAILURE = "AUTHORIZATION_FAILURE"
AUTHENTICATION_FAILURE = "AUTHENTICATION_FAILURE"


class AuthFailure(Exception):
    """A stage of the pipeline refused; ``details`` says why and what to do, in a learner's words.

    ``stage`` is one of ``authorizer``, ``credentials``, ``signature``, ``function``,
    ``permission``, ``invoke``, ``response``; ``isAuthenticated: false`` is an answer, not a
    failure (each door decides). ``error`` is what TestInvokeAuthorizer answers with.
    """

    def __init__(self, stage: str, details: str, error: AwsError | None = None):
        super().__init__(details)
        self.stage = stage
        self.details = details
        self.error = error or AwsError("InvalidRequestException", details, 400)


@dataclass
class Attempt:
    """What happened during one authentication: the sandbox's extra details in its log entries."""

    authorizer: str | None = None
    signature_verified: bool | None = None
    lambda_invoked: bool = False
    lambda_ms: float | None = None
    lambda_request_id: str | None = None
    principal_id: str | None = None
    cached: bool = False

    def details(self) -> dict:
        """The ``sandbox`` object of a log entry (the key names the workbook's log readers use)."""
        return {"authorizerName": self.authorizer, "signatureVerified": self.signature_verified,
                "lambdaInvoked": self.lambda_invoked, "lambdaDurationMs": self.lambda_ms,
                "lambdaRequestId": self.lambda_request_id, "cachedDecision": self.cached}


@dataclass
class Credentials:
    """What a client presented: the authorizer's name (None: use the default), token and signature."""

    authorizer_name: str | None = None
    token: str | None = None
    signature: str | None = None
    #: Where they came from, for messages: "header or query parameter", "MQTT username", ...
    where: str = "header or query parameter"


class NotCached(Exception):
    """:func:`find_authorizer` with ``cached_only``: the answer would need the database."""


#: (store, name or None for the default) -> (store generation, authorizer dict or None). A row is reused only
#: while no transaction has committed since it was read, so an update is seen by the very next request.
_authorizers: dict[tuple[int, str | None], tuple[int, dict | None]] = {}


def _lookup(ctx: core.Context, name: str | None, cached_only: bool) -> dict | str | None:
    store = ctx.store
    key = (id(store), name)
    hit = _authorizers.get(key)
    if hit is not None and hit[0] == store.generation:
        return hit[1]
    if cached_only:
        raise NotCached(name)
    generation = store.generation
    value = iot.get_authorizer(ctx, name) if name else iot.default_authorizer_name(ctx)
    if len(_authorizers) > 10_000:
        _authorizers.clear()
    _authorizers[key] = (generation, value)
    return value


def find_authorizer(ctx: core.Context, name: str | None, *, where: str = "header or query parameter",
                    cached_only: bool = False) -> dict:
    """The ACTIVE authorizer named ``name``, else the default one; :class:`AuthFailure` otherwise.

    ``cached_only``: answer from memory or raise :class:`NotCached` (the event loop's fast path never
    touches the database)."""
    if not name:
        name = _lookup(ctx, None, cached_only)
        if not name:
            raise AuthFailure("authorizer", f"The request names no authorizer (no {AUTHORIZER_NAME_PARAM} {where}) "
                              "and the account has no default authorizer (aws iot set-default-authorizer).")
    authorizer = _lookup(ctx, name, cached_only)
    if authorizer is None:
        raise AuthFailure("authorizer", f"No authorizer named {name!r} exists in this account and region "
                          "(aws iot list-authorizers shows the ones that do).",
                          AwsError("ResourceNotFoundException", f"The authorizer {name!r} does not exist.", 404))
    if authorizer["status"] != "ACTIVE":
        raise AuthFailure("authorizer", f"The authorizer {name!r} is INACTIVE, so AWS IoT does not use it. Activate "
                          f"it with aws iot update-authorizer --authorizer-name {name} --status ACTIVE.")
    return authorizer


def check_signature(authorizer: dict, token: str | None, signature: str | None, *,
                    where: str = "header or query parameter", attempt: Attempt | None = None) -> bool:
    """Stage 2: True when signing is on and the signature verifies, False when signing is off."""
    attempt = attempt or Attempt()
    name = authorizer["name"]
    if authorizer["signing_disabled"]:
        attempt.signature_verified = False
        return False
    token_key = authorizer.get("token_key_name")
    if token is None or not signature:
        if where == TEST_INVOKE:
            raise AuthFailure("credentials", f"The authorizer {name!r} has token signing enabled, so both token and "
                              "tokenSignature are required: --token <token> --token-signature <base64 RSA SHA-256 "
                              "signature of the token>.")
        missing = " and ".join(x for x, v in ((f"the token ({token_key!r})", token), (SIGNATURE_PARAM, signature))
                               if not v)
        raise AuthFailure("credentials", f"The authorizer {name!r} has token signing on, so the request needs both "
                          f"the token (in the {token_key!r} {where}, the authorizer's tokenKeyName) and its "
                          f"signature ({SIGNATURE_PARAM}); {missing} is missing. The function was not invoked.")
    if authz.verify_token_signature(token, signature, authorizer["public_keys"]) is None:
        attempt.signature_verified = False
        raise AuthFailure("signature", "The token signature is invalid: it does not verify against any of the "
                          f"authorizer {name!r}'s tokenSigningPublicKeys ({', '.join(sorted(authorizer['public_keys']))})."
                          " Sign exactly the token (echo -n TOKEN | openssl dgst -sha256 -sign private-key.pem | "
                          "openssl base64 -A) with the private key matching one of those public keys; in a query "
                          "string or MQTT username the signature must be URL-encoded (+ / =). The authorizer "
                          "function was not invoked.")
    attempt.signature_verified = True
    return True


def invoke(ctx: core.Context, authorizer: dict, *, token: str | None, signature_verified: bool,
           http: dict | None = None, mqtt: dict | None = None, tls_server_name: str | None = None,
           connection_id: str | None = None, attempt: Attempt | None = None) -> authz.AuthorizerResult:
    """Stages 3-6: the function exists and may be invoked by AWS IoT; run it; check its answer."""
    attempt = attempt or Attempt()
    name, function_arn = authorizer["name"], authorizer["function_arn"]
    try:
        spec = awslambda.function_spec(ctx, function_arn)
    except AwsError as exc:
        if exc.code != "ResourceNotFoundException":
            raise
        message = (f"The authorizer function {function_arn} does not exist (Lambda: {exc.message}). Create it (aws "
                   "lambda create-function), or point the authorizer at an existing function with aws iot "
                   f"update-authorizer --authorizer-name {name} --authorizer-function-arn <arn>.")
        raise AuthFailure("function", message, AwsError("ResourceNotFoundException", message, 404)) from None
    if not awslambda.permission_allows(ctx, function_arn, principal="iot.amazonaws.com",
                                       source_arn=authorizer["arn"], source_account=ctx.account_id):
        raise AuthFailure("permission", f"AWS IoT is not allowed to invoke {function_arn} for the authorizer {name!r}: "
                          "the function's resource policy has no statement allowing lambda:InvokeFunction to "
                          f"principal iot.amazonaws.com with source ARN {authorizer['arn']}. Add it with: aws lambda "
                          f"add-permission --function-name {function_arn} --principal iot.amazonaws.com --source-arn "
                          f"{authorizer['arn']} --statement-id {name}-invoke --action lambda:InvokeFunction")
    event = authz.build_event(token=token, signature_verified=signature_verified, http=http, mqtt=mqtt,
                              tls_server_name=tls_server_name, connection_id=connection_id)
    started = time.perf_counter()
    try:
        outcome = awslambda.invoke_function(ctx, spec, json.dumps(event).encode(),
                                            timeout=min(spec.timeout, AUTHORIZER_TIMEOUT_SECONDS))
    except (RuntimeUnavailable, AwsError) as exc:
        why = f"{exc.code}: {exc.message}" if isinstance(exc, AwsError) else str(exc)
        message = f"The authorizer function {function_arn} could not be run: {why}"
        raise AuthFailure("invoke", message, AwsError("InvalidResponseException", message, 400)) from None
    finally:
        attempt.lambda_invoked = True
        attempt.lambda_ms = round((time.perf_counter() - started) * 1000, 2)
    attempt.lambda_request_id = outcome.request_id
    if outcome.function_error:
        message = _function_failure(authorizer, outcome.payload, outcome.function_error)
        raise AuthFailure("invoke", message, AwsError("InvalidResponseException", message, 400))
    try:
        result = authz.parse_authorizer_response(outcome.payload)
    except authz.InvalidAuthorizerResponse as exc:
        message = f"The authorizer function {function_arn} returned an invalid response: {exc.reason}"
        raise AuthFailure("response", message, AwsError("InvalidResponseException", message, 400)) from None
    attempt.principal_id = result.principal_id
    return result


def authenticate(ctx: core.Context, credentials: Credentials, *, http: dict | None = None,
                 mqtt: dict | None = None, tls_server_name: str | None = None,
                 connection_id: str | None = None, attempt: Attempt | None = None,
                 authorizer: dict | None = None) -> tuple[dict, authz.AuthorizerResult]:
    """The whole pipeline for a device door: ``(authorizer, result)`` or :class:`AuthFailure`."""
    attempt = attempt if attempt is not None else Attempt()
    if authorizer is None:
        authorizer = find_authorizer(ctx, credentials.authorizer_name, where=credentials.where)
    attempt.authorizer = authorizer["name"]
    verified = check_signature(authorizer, credentials.token, credentials.signature, where=credentials.where,
                               attempt=attempt)
    result = invoke(ctx, authorizer, token=credentials.token, signature_verified=verified, http=http, mqtt=mqtt,
                    tls_server_name=tls_server_name, connection_id=connection_id, attempt=attempt)
    return authorizer, result


def _function_failure(authorizer: dict, payload: bytes, function_error: str) -> str:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and ("errorType" in doc or "errorMessage" in doc):
        detail = f"{doc.get('errorType', function_error)}: {doc.get('errorMessage', '')}"
    else:
        detail = payload.decode("utf-8", "replace")[:500] or function_error
    function_name = authorizer["function_arn"].split(":")[6]
    hint = ""
    if "timed out" in detail.lower():
        hint = (f" AWS IoT waits at most {AUTHORIZER_TIMEOUT_SECONDS:g} seconds for an authorizer function, "
                "and the function's own Timeout applies too.")
    return (f"The authorizer function {authorizer['function_arn']} failed ({function_error}) instead of returning a "
            f"response: {detail}.{hint} Check the function's logs (CloudWatch Logs group "
            f"/aws/lambda/{function_name}), fix it, and test again.")
