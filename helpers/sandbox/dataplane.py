"""The device data endpoint: HTTPS publish authorized by a custom authorizer.

``POST /topics/{topic}?qos=0|1[&retain=true]`` (iot-data's Publish route),
authenticated the way AWS IoT's device gateway does it for custom auth, in
AWS's order (see ``helpers/sandbox/README.md`` for the sources):

1. the request is well formed (qos, retain, topic, payload size);
2. the authorizer named by ``x-amz-customauthorizer-name`` (header or query),
   else the account's default authorizer, exists and is ACTIVE;
3. with signing on, the token (in the header or query parameter named by the
   authorizer's ``tokenKeyName``) and ``x-amz-customauthorizer-signature``
   are present and the signature verifies: otherwise the function is never
   invoked;
4. the function's resource policy lets ``iot.amazonaws.com`` invoke it for
   this authorizer;
5. the function is invoked with the documented event (5 s limit), unless
   ``enableCachingForHttp`` is on and this keep-alive connection already has a
   fresh decision for the same token;
6. its response is valid and ``isAuthenticated`` is true;
7. its policies allow ``iot:Publish`` (and ``iot:RetainPublish`` for retain)
   on ``arn:aws:iot:REGION:ACCOUNT:topic/TOPIC``, with no explicit Deny;
8. the payload goes to the MQTT broker, byte for byte, with the QoS asked.

Any refusal answers ``403 {"message":"Forbidden","traceId":...}`` and nothing
is delivered. Every decision is written to the ``AWSIotLogsV2`` log group in
AWS IoT's log-entry format, plus a ``sandbox`` object saying what only a
sandbox can see: whether the signature verified, whether the function ran and
how long it took, and which policy statement decided.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import unquote

from . import authz, core, iot_logs, mqtt_ws
from .core import Request, Response
from .runtime import RuntimeUnavailable
from .services import awslambda, iot

log = logging.getLogger("helpers.sandbox")

AUTHORIZER_HEADER = "x-amz-customauthorizer-name"
SIGNATURE_HEADER = "x-amz-customauthorizer-signature"
MAX_PAYLOAD = 128 * 1024          # "The payload for every publish request is limited to 128 KB"
MAX_TOPIC_BYTES = 256             # "limited to 256 bytes of UTF-8 encoded characters"
MAX_TOPIC_SLASHES = 7             # "limited to 7 forward slashes (/)"
AUTHORIZER_TIMEOUT = 5.0          # "The Lambda function timeout limit for custom authorizer is 5 seconds."
LOG_GROUP = "AWSIotLogsV2"
CACHE_SIZE = 10_000


class Refused(Exception):
    """A refusal with the log entry's reason code and a learner-readable explanation."""

    def __init__(self, reason: str, details: str):
        super().__init__(details)
        self.reason = reason
        self.details = details


@dataclass
class Trace:
    """What happened to one request: becomes its AWSIotLogsV2 entry."""

    trace_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    topic: str | None = None
    authorizer: str | None = None
    principal_id: str | None = None
    signature_verified: bool | None = None
    lambda_invoked: bool = False
    lambda_ms: float | None = None
    lambda_request_id: str | None = None
    cached: bool = False
    deciding: dict | None = None


def _iot_error(code: str, message: str, status: int, trace_id: str) -> Response:
    return Response.json({"message": message, "traceId": trace_id}, status, {"x-amzn-ErrorType": code})


class DataApp:
    """The data endpoint's ``app(request) -> response``; see the module docstring for the decision order."""

    def __init__(self, ctx: core.Context, broker):
        self.ctx = ctx
        self.broker = broker
        self._cache: OrderedDict[tuple, tuple[float, authz.AuthorizerResult]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # --- entry point -------------------------------------------------------------------------------
    def __call__(self, req: Request) -> Response:
        if req.path == "/mqtt":  # MQTT over WebSocket with SigV4 (helpers/sandbox/mqtt_ws.py)
            return mqtt_ws.websocket_upgrade(req, self.ctx, self.broker)
        if req.path == "/ping":  # the benchmark's baseline: the same stack answering a trivial route
            return Response.json({"message": "OK"})
        if not req.path.startswith("/topics/"):
            return _iot_error("ResourceNotFoundException", "Not Found: the data endpoint serves POST /topics/{topic}",
                              404, str(uuid.uuid4()))
        if req.method != "POST":
            return _iot_error("MethodNotAllowedException", f"The method {req.method} is not allowed on /topics; "
                              "publish with POST", 405, str(uuid.uuid4()))
        trace = Trace()
        try:
            topic, qos, retain = self._parse(req, trace)
        except core.AwsError as err:
            return _iot_error(err.code, err.message, err.status, trace.trace_id)
        try:
            self._authorize(req, trace, topic, retain)
        except Refused as refusal:
            self._log(req, trace, "Failure", refusal.reason, refusal.details)
            return Response.json({"message": "Forbidden", "traceId": trace.trace_id}, 403,
                                 {"x-amzn-ErrorType": "ForbiddenException"})
        try:
            self.broker.publish(topic, req.body, qos=qos, retain=retain, wait=False)
        except Exception as exc:  # broker down or stopped: AWS's InternalFailure, and say so in the log
            log.exception("delivery to the broker failed")
            self._log(req, trace, "Failure", "SERVER_ERROR", f"The message broker did not accept the message: {exc}")
            return _iot_error("InternalFailureException", "Internal failure delivering the message", 500,
                              trace.trace_id)
        self._log(req, trace, "Success", None, None)
        return Response.json({"message": "OK", "traceId": trace.trace_id})

    # --- 1. the request itself -----------------------------------------------------------------------
    def _parse(self, req: Request, trace: Trace) -> tuple[str, int, bool]:
        topic = unquote(req.path[len("/topics/"):])
        trace.topic = topic
        if not topic:
            raise core.AwsError("InvalidRequestException", "The topic name is empty: POST /topics/{topic}", 400)
        if len(topic.encode()) > MAX_TOPIC_BYTES:
            raise core.AwsError("InvalidRequestException",
                                f"The topic is {len(topic.encode())} bytes long; AWS IoT allows {MAX_TOPIC_BYTES}", 400)
        if topic.count("/") > MAX_TOPIC_SLASHES:
            raise core.AwsError("InvalidRequestException", f"The topic has {topic.count('/')} forward slashes; "
                                f"AWS IoT allows {MAX_TOPIC_SLASHES}", 400)
        if "+" in topic or "#" in topic or "\x00" in topic:
            raise core.AwsError("InvalidRequestException", "A topic to publish to cannot contain the MQTT "
                                "wildcards + or #, or a NUL character", 400)
        raw_qos = req.query_value("qos", "0")
        if raw_qos not in ("0", "1"):
            raise core.AwsError("InvalidRequestException", f"qos must be 0 or 1, not {raw_qos!r}", 400)
        raw_retain = (req.query_value("retain", "false") or "").lower()
        if raw_retain not in ("true", "false"):
            raise core.AwsError("InvalidRequestException", f"retain must be true or false, not {raw_retain!r}", 400)
        if len(req.body) > MAX_PAYLOAD:
            raise core.AwsError("RequestEntityTooLargeException", f"The payload is {len(req.body)} bytes; "
                                f"AWS IoT accepts at most {MAX_PAYLOAD} bytes (128 KB)", 413)
        return topic, int(raw_qos), raw_retain == "true"

    # --- 2..7. custom authentication and authorization ------------------------------------------------
    def _credential(self, req: Request, name: str) -> str | None:
        """A credential from a header (case-insensitive name) or else a query parameter (exact name)."""
        value = req.headers.get(name.lower())
        return value if value is not None else req.query_value(name)

    def _authorize(self, req: Request, trace: Trace, topic: str, retain: bool) -> None:
        name = self._credential(req, AUTHORIZER_HEADER) or iot.default_authorizer_name(self.ctx)
        if not name:
            raise Refused("AUTHENTICATION_FAILURE", f"The request names no authorizer (no {AUTHORIZER_HEADER} "
                          "header or query parameter) and the account has no default authorizer.")
        trace.authorizer = name
        authorizer = iot.get_authorizer(self.ctx, name)
        if authorizer is None:
            raise Refused("AUTHENTICATION_FAILURE", f"No authorizer named {name!r} exists in this account and region.")
        if authorizer["status"] != "ACTIVE":
            raise Refused("AUTHENTICATION_FAILURE", f"The authorizer {name!r} is {authorizer['status']}; "
                          "only ACTIVE authorizers are used.")

        token_key = authorizer.get("token_key_name")
        token = self._credential(req, token_key) if token_key else None
        signature = self._credential(req, SIGNATURE_HEADER)
        if authorizer["signing_disabled"]:
            trace.signature_verified = False
        else:
            if token is None:
                raise Refused("AUTHENTICATION_FAILURE", f"Signing is on but the request has no token: send it in "
                              f"the {token_key!r} header or query parameter (the authorizer's tokenKeyName).")
            if not signature:
                raise Refused("AUTHENTICATION_FAILURE", f"Signing is on but the request has no {SIGNATURE_HEADER} "
                              "header or query parameter. The function was not invoked.")
            key_name = authz.verify_token_signature(token, signature, authorizer["public_keys"])
            trace.signature_verified = key_name is not None
            if key_name is None:
                raise Refused("AUTHENTICATION_FAILURE", "The token signature did not verify with any of the "
                              f"authorizer's public keys ({', '.join(authorizer['public_keys'])}); the function "
                              "was not invoked. In a query string the signature must be URL-encoded (+ / =).")

        cache_key = (req.connection_id, name, token, signature)
        result = self._cached(cache_key) if authorizer["enable_caching_for_http"] else None
        trace.cached = result is not None
        if result is None:
            result = self._invoke(req, trace, authorizer, token)
            if authorizer["enable_caching_for_http"] and result.refresh_after_seconds:
                self._remember(cache_key, result)
        trace.principal_id = result.principal_id
        if not result.is_authenticated:
            raise Refused("AUTHENTICATION_FAILURE", "The authorizer function answered isAuthenticated: false.")

        resource = authz.topic_arn(self.ctx.region, self.ctx.account_id, topic)
        variables = {"aws:SourceIp": req.client_address[0]}
        actions = ["iot:Publish"] + (["iot:RetainPublish"] if retain else [])
        for action in actions:
            decision = authz.evaluate(result.policies, action, resource, variables)
            trace.deciding = {"action": action, "effect": decision.effect, "policy": decision.policy_index,
                              "statement": decision.statement_index, "detail": decision.reason}
            if not decision.allowed:
                raise Refused("AUTHORIZATION_FAILURE", f"{action} on {resource}: {decision.reason}")

    def _invoke(self, req: Request, trace: Trace, authorizer: dict, token: str | None) -> authz.AuthorizerResult:
        function_arn = authorizer["function_arn"]
        if not awslambda.permission_allows(self.ctx, function_arn, principal="iot.amazonaws.com",
                                           source_arn=authorizer["arn"], source_account=self.ctx.account_id):
            raise Refused("AUTHENTICATION_FAILURE", f"The function {function_arn} does not let iot.amazonaws.com "
                          f"invoke it for {authorizer['arn']}: add it with lambda add-permission "
                          "--principal iot.amazonaws.com --source-arn AUTHORIZER_ARN.")
        try:
            spec = awslambda.function_spec(self.ctx, function_arn)
        except core.AwsError:
            raise Refused("AUTHENTICATION_FAILURE", f"The authorizer's function {function_arn} does not exist.") from None
        event = authz.build_event(
            token=token, signature_verified=bool(trace.signature_verified),
            http={"headers": dict(req.headers), "queryString": req.raw_query},
            tls_server_name=req.server_name, connection_id=req.connection_id,
        )
        started = time.perf_counter()
        try:
            outcome = awslambda.invoke_function(self.ctx, spec, json.dumps(event).encode(),
                                                timeout=min(spec.timeout, AUTHORIZER_TIMEOUT))
        except RuntimeUnavailable as exc:
            raise Refused("AUTHENTICATION_FAILURE", f"The authorizer function could not run: {exc}") from None
        finally:
            trace.lambda_invoked = True
            trace.lambda_ms = round((time.perf_counter() - started) * 1000, 2)
        trace.lambda_request_id = outcome.request_id
        if outcome.function_error:
            detail = outcome.payload.decode("utf-8", "replace")[:500]
            raise Refused("AUTHENTICATION_FAILURE", f"The authorizer function failed: {detail}")
        try:
            return authz.parse_authorizer_response(outcome.payload)
        except authz.InvalidAuthorizerResponse as exc:
            raise Refused("AUTHENTICATION_FAILURE", f"The authorizer function's response is invalid: {exc}") from None

    # --- enableCachingForHttp -------------------------------------------------------------------------
    def _cached(self, key: tuple) -> authz.AuthorizerResult | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            expires, result = hit
            if time.monotonic() >= expires:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return result

    def _remember(self, key: tuple, result: authz.AuthorizerResult) -> None:
        with self._cache_lock:
            self._cache[key] = (time.monotonic() + result.refresh_after_seconds, result)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)

    # --- AWSIotLogsV2 ---------------------------------------------------------------------------------
    def _log(self, req: Request, trace: Trace, status: str, reason: str | None, details: str | None) -> None:
        entry = {
            "traceId": trace.trace_id,
            "accountId": self.ctx.account_id,
            "status": status,
            "eventType": "Publish-In",
            "protocol": "HTTP",
            "topicName": trace.topic,
            "principalId": trace.principal_id,
            "sourceIp": req.client_address[0],
            "sourcePort": req.client_address[1],
        }
        if reason:
            entry["reason"] = reason
            entry["details"] = details
        entry["sandbox"] = {
            "authorizerName": trace.authorizer,
            "signatureVerified": trace.signature_verified,
            "lambdaInvoked": trace.lambda_invoked,
            "lambdaDurationMs": trace.lambda_ms,
            "lambdaRequestId": trace.lambda_request_id,
            "cachedDecision": trace.cached,
            "decidedBy": trace.deciding,
        }
        # written only when SetV2LoggingOptions turned logging on at this level, as on AWS
        iot_logs.write(self.ctx, entry, level=iot_logs.level_for(status))
