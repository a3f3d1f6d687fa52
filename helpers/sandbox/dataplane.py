"""The device data endpoint's HTTP side: HTTPS publish and the MQTT-over-WebSocket upgrade.

``POST /topics/{topic}?qos=0|1[&retain=true]`` (iot-data's Publish route) is
authenticated either with SigV4 (service ``iotdata``, what boto3's ``iot-data``
client and ``aws iot-data publish`` send) or with custom authentication, in
AWS's order (``helpers/sandbox/README.md`` has the sources):

1. the request is well formed (qos, retain, topic, payload size): answered from
   the request head, before the body is read;
2. the custom-auth pipeline (``custom_auth.py``): the authorizer named by
   ``x-amz-customauthorizer-name`` (header or query) or the default one, the
   token and its signature (verified before the function is touched), the
   function, IoT's permission to invoke it, the invocation (5 s), its answer —
   unless ``enableCachingForHttp`` is on and this keep-alive connection already
   has a fresh decision for the same credentials;
3. ``isAuthenticated`` is true and the policies allow ``iot:Publish`` (and
   ``iot:RetainPublish`` for retain) on ``arn:aws:iot:REGION:ACCOUNT:topic/TOPIC``;
4. the payload goes to the broker, byte for byte, with the QoS asked.

Any refusal answers ``403 {"message":"Forbidden","traceId":...}``; nothing is
delivered; one ``AWSIotLogsV2`` entry says why. ``GET /mqtt`` upgrades to MQTT
over WebSocket, authenticated by a SigV4-presigned URL, by custom-auth
credentials in the upgrade request's headers or query string, or else at the
MQTT CONNECT (username and password), as AWS documents all three
(https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote_to_bytes

from wsproto.utilities import generate_accept_token

from helpers.topics import topic_name_error

from . import authz, core, custom_auth, http11, iot_logs, mqtt_ws, sigv4
from .core import Request, Response
from .gateway import WebSocketStream
from .services import iot

log = logging.getLogger("helpers.sandbox")

MAX_PAYLOAD = 128 * 1024          # "The payload for every publish request is limited to 128 KB"
CACHE_SIZE = 10_000
#: botocore's ``iot-data`` model signs with this name.
SIGV4_SERVICE = "iotdata"


class Refused(Exception):
    """A refusal with its AWSIotLogsV2 reason code and a learner-readable explanation."""

    def __init__(self, reason: str, details: str):
        super().__init__(details)
        self.reason = reason
        self.details = details


@dataclass
class Trace:
    """What happened to one publish: becomes its AWSIotLogsV2 entry."""

    trace_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    topic: str | None = None
    principal_id: str | None = None
    attempt: custom_auth.Attempt = field(default_factory=custom_auth.Attempt)
    deciding: dict | None = None


def _iot_error(code: str, message: str, status: int, trace_id: str | None = None) -> Response:
    return Response.json({"message": message, "traceId": trace_id or str(uuid.uuid4())}, status,
                         {"x-amzn-ErrorType": code})


def _forbidden(trace_id: str) -> Response:
    return Response.json({"message": "Forbidden", "traceId": trace_id}, 403, {"x-amzn-ErrorType": "ForbiddenException"})


def is_sigv4(req: Request) -> bool:
    return (req.headers.get("authorization", "").startswith(sigv4.ALGORITHM)
            or "X-Amz-Algorithm=" in req.raw_query)


class DataApp:
    """The data endpoint's HTTP app (``http11.App``): see the module docstring for the decision order.

    ``mqtt(stream, connection, transport, preauth)`` serves an upgraded WebSocket as an MQTT connection;
    ``preauth`` is the authorization the upgrade already established, or None to authenticate at CONNECT.
    """

    max_body = MAX_PAYLOAD

    def __init__(self, ctx: core.Context, broker, mqtt: Callable, authorization: Callable):
        self.base = ctx
        self.broker = broker
        self.mqtt = mqtt
        self.authorization = authorization   # (ctx, authorizer, result, connection) -> MQTT Authorization
        self._cache: OrderedDict[tuple, tuple[float, authz.AuthorizerResult]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def context(self, req: Request) -> core.Context:
        """The context of the region this request reached (from the host name in its TLS SNI)."""
        return self.base.in_region(iot.data_endpoint_region(self.base, req.server_name))
        self._cache: OrderedDict[tuple, tuple[float, authz.AuthorizerResult]] = OrderedDict()
        self._cache_lock = threading.Lock()

    # --- 1. the request head ----------------------------------------------------------------------------
    def early(self, req: Request) -> Response | None:
        if req.path in ("/mqtt", "/ping"):
            return None
        if not req.path.startswith("/topics/"):
            return _iot_error("ResourceNotFoundException",
                              "Not Found: the data endpoint serves POST /topics/{topic} and MQTT at /mqtt", 404)
        if req.method != "POST":
            return _iot_error("MethodNotAllowedException", f"The method {req.method} is not allowed on /topics; "
                              "publish with POST", 405)
        try:
            self._parse(req)
        except core.AwsError as err:
            return _iot_error(err.code, err.message, err.status)
        declared = req.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_PAYLOAD:
            return _iot_error("RequestEntityTooLargeException", f"The payload is {declared} bytes; AWS IoT accepts "
                              f"at most {MAX_PAYLOAD} bytes (128 KB)", 413)
        return None

    def _parse(self, req: Request) -> tuple[str, int, bool]:
        try:
            topic = unquote_to_bytes(req.path[len("/topics/"):]).decode("utf-8")
        except UnicodeDecodeError:
            raise core.AwsError("InvalidRequestException", "The topic name is not valid UTF-8: percent-encode "
                                "the topic's UTF-8 bytes in the URL", 400) from None
        problem = topic_name_error(topic)
        if problem:
            raise core.AwsError("InvalidRequestException", f"Cannot publish: {problem} (POST /topics/TOPIC)", 400)
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in topic):
            raise core.AwsError("InvalidRequestException", "A topic to publish to cannot contain control "
                                "characters", 400)
        raw_qos = req.query_value("qos", "0")
        if raw_qos not in ("0", "1"):
            raise core.AwsError("InvalidRequestException", f"qos must be 0 or 1, not {raw_qos!r}", 400)
        raw_retain = (req.query_value("retain", "false") or "").lower()
        if raw_retain not in ("true", "false"):
            raise core.AwsError("InvalidRequestException", f"retain must be true or false, not {raw_retain!r}", 400)
        return topic, int(raw_qos), raw_retain == "true"

    # --- the whole request ------------------------------------------------------------------------------
    async def respond(self, req: Request) -> Response:
        if req.path == "/mqtt":
            return await self._websocket(req)
        if req.path == "/ping":  # the benchmark's baseline: the same stack answering a trivial route
            return Response.json({"message": "OK"})
        topic, qos, retain = self._parse(req)
        trace = Trace(topic=topic)
        ctx = self.context(req)
        loop = asyncio.get_running_loop()
        try:
            if is_sigv4(req):
                self._check_sigv4(ctx, req, trace)
            else:
                try:  # a cached decision is answered on the loop; anything that needs SQLite or Lambda is not
                    self._authorize(ctx, req, trace, topic, retain, cached_only=True)
                except custom_auth.NotCached:
                    trace.attempt = custom_auth.Attempt()
                    await loop.run_in_executor(None, self._authorize, ctx, req, trace, topic, retain)
        except Refused as refusal:
            self._log(ctx, req, trace, "Failure", refusal.reason, refusal.details)
            return _forbidden(trace.trace_id)
        self.broker.publish(topic, req.body, qos=qos, retain=retain,
                            origin={"protocol": "HTTP", "principalId": trace.principal_id,
                                    "sourceIp": req.client_address[0]})
        self._log(ctx, req, trace, "Success", None, None)
        return Response.json({"message": "OK", "traceId": trace.trace_id})

    # --- 2. SigV4 (iot-data Publish) --------------------------------------------------------------------
    def _check_sigv4(self, ctx: core.Context, req: Request, trace: Trace) -> None:
        try:
            scope = sigv4.verify(req.method, req.path, req.raw_query, req.headers, req.body, ctx.credentials,
                                 service=SIGV4_SERVICE, region=ctx.region)
        except sigv4.SignatureError as err:
            raise Refused(custom_auth.AUTHENTICATION_FAILURE, f"SigV4: {err.code}: {err.message}") from None
        if scope.service != SIGV4_SERVICE:
            raise Refused(custom_auth.AUTHENTICATION_FAILURE, f"SigV4: the credential scope names the service "
                          f"{scope.service!r}; iot-data requests are signed for {SIGV4_SERVICE!r}.")
        trace.principal_id = scope.access_key
        trace.attempt.signature_verified = None

    # --- 2-3. custom authentication and authorization (in the executor) -------------------------------
    def _credential(self, req: Request, name: str | None) -> str | None:
        """A credential from a header (case-insensitive name) or else a query parameter (exact name)."""
        if not name:
            return None
        value = req.headers.get(name.lower())
        return value if value is not None else req.query_value(name)

    def credentials_of(self, ctx: core.Context, req: Request,
                       cached_only: bool = False) -> tuple[custom_auth.Credentials, dict]:
        """The custom-auth credentials in a request's headers or query string, and its authorizer."""
        name = self._credential(req, custom_auth.AUTHORIZER_NAME_PARAM)
        authorizer = custom_auth.find_authorizer(ctx, name, cached_only=cached_only)
        creds = custom_auth.Credentials(authorizer["name"], self._credential(req, authorizer.get("token_key_name")),
                                        self._credential(req, custom_auth.SIGNATURE_PARAM))
        return creds, authorizer

    def _authorize(self, ctx: core.Context, req: Request, trace: Trace, topic: str, retain: bool,
                   cached_only: bool = False) -> None:
        """The publish's decision; with ``cached_only`` it raises :class:`custom_auth.NotCached` rather than
        read the database or invoke the function (so that it may run on the event loop)."""
        attempt = trace.attempt
        try:
            creds, authorizer = self.credentials_of(ctx, req, cached_only)
            attempt.authorizer = authorizer["name"]
            cache_key = (req.connection_id, authorizer["name"], creds.token, creds.signature)
            result = self._cached(cache_key) if authorizer["enable_caching_for_http"] else None
            attempt.cached = result is not None
            if result is not None:  # cached only after its token's signature verified
                attempt.signature_verified = not authorizer["signing_disabled"]
            if result is None and cached_only:
                raise custom_auth.NotCached(authorizer["name"])
            if result is None:
                _, result = custom_auth.authenticate(
                    ctx, creds, authorizer=authorizer, attempt=attempt, connection_id=req.connection_id,
                    http={"headers": dict(req.headers), "queryString": req.raw_query},
                    tls_server_name=req.server_name)
                if authorizer["enable_caching_for_http"] and result.refresh_after_seconds:
                    self._remember(cache_key, result)
        except custom_auth.AuthFailure as failure:
            raise Refused(custom_auth.AUTHENTICATION_FAILURE, failure.details) from None
        trace.principal_id = result.principal_id
        if not result.is_authenticated:
            raise Refused(custom_auth.AUTHENTICATION_FAILURE, "The authorizer function answered isAuthenticated: false.")
        resource = authz.topic_arn(ctx.region, ctx.account_id, topic)
        variables = {"aws:SourceIp": req.client_address[0]}
        for action in ["iot:Publish"] + (["iot:RetainPublish"] if retain else []):
            decision = authz.evaluate(result.policies, action, resource, variables)
            trace.deciding = {"action": action, "effect": decision.effect, "policy": decision.policy_index,
                              "statement": decision.statement_index, "detail": decision.reason}
            if not decision.allowed:
                raise Refused(custom_auth.AUTHORIZATION_FAILURE, f"{action} on {resource}: {decision.reason}")

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

    # --- GET /mqtt: MQTT over WebSocket ---------------------------------------------------------------
    async def _websocket(self, req: Request) -> Response:
        if req.method != "GET":
            return Response.json({"message": f"The method {req.method} is not allowed on /mqtt; MQTT over "
                                  "WebSocket starts with GET"}, 405, {"Allow": "GET"})
        problem = mqtt_ws.handshake_problem(req.headers)
        if problem:
            return Response.json({"message": problem}, 400, {"Sec-WebSocket-Version": "13"})
        conn = http11.Connection(req.client_address, req.server_name, req.connection_id)
        ctx = self.context(req)
        preauth = None
        if is_sigv4(req):
            try:
                scope = sigv4.verify_presigned(req.method, req.path, req.raw_query, req.headers, ctx.credentials,
                                               service=mqtt_ws.SERVICE, region=ctx.region)
            except sigv4.SignatureError as err:
                self._log_connect_refusal(ctx, req, f"MQTT over WebSocket (SigV4): {err.code}: {err.message}")
                return Response.json({"message": "Forbidden"}, 403, {"x-amzn-ErrorType": "ForbiddenException"})
            preauth = self.authorization(ctx, None, scope.access_key, conn)
        elif self._has_custom_auth(ctx, req):
            loop = asyncio.get_running_loop()
            try:
                preauth = await loop.run_in_executor(None, self._authorize_upgrade, ctx, req, conn)
            except Refused as refusal:
                self._log_connect_refusal(ctx, req, f"MQTT over WebSocket (custom authentication in the upgrade "
                                          f"request): {refusal.details}")
                return Response.json({"message": "Forbidden"}, 403, {"x-amzn-ErrorType": "ForbiddenException"})
        headers = {"Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Accept": generate_accept_token(req.headers["sec-websocket-key"].strip().encode()
                                                                 ).decode()}
        if req.headers.get("sec-websocket-protocol") is not None:
            headers["Sec-WebSocket-Protocol"] = mqtt_ws.SUBPROTOCOL

        async def upgrade(reader, writer, leftover: bytes) -> None:
            await self.mqtt(WebSocketStream(reader, writer, leftover), conn, "websocket",
                            (preauth, dict(req.headers), req.raw_query))
        return Response(101, b"", headers, upgrade=upgrade)

    def _has_custom_auth(self, ctx: core.Context, req: Request) -> bool:
        """Custom-auth credentials in the upgrade request itself (else they come in the CONNECT)."""
        names = [custom_auth.AUTHORIZER_NAME_PARAM, custom_auth.SIGNATURE_PARAM]
        default = iot.default_authorizer_name(ctx)
        if default:
            authorizer = iot.get_authorizer(ctx, default)
            if authorizer and authorizer.get("token_key_name"):
                names.append(authorizer["token_key_name"])
        return any(self._credential(req, name) is not None for name in names)

    def _authorize_upgrade(self, ctx: core.Context, req: Request, conn: http11.Connection):
        attempt = custom_auth.Attempt()
        try:
            creds, authorizer = self.credentials_of(ctx, req)
            authorizer, result = custom_auth.authenticate(
                ctx, creds, authorizer=authorizer, attempt=attempt, connection_id=req.connection_id,
                http={"headers": dict(req.headers), "queryString": req.raw_query}, tls_server_name=req.server_name)
        except custom_auth.AuthFailure as failure:
            raise Refused(custom_auth.AUTHENTICATION_FAILURE, failure.details) from None
        if not result.is_authenticated:
            raise Refused(custom_auth.AUTHENTICATION_FAILURE, "The authorizer function answered isAuthenticated: false.")
        return self.authorization(ctx, authorizer, result, conn)

    # --- AWSIotLogsV2 ---------------------------------------------------------------------------------
    def _log(self, ctx: core.Context, req: Request, trace: Trace, status: str, reason: str | None,
             details: str | None) -> None:
        entry = iot_logs.entry(ctx, event_type="Publish-In", status=status, protocol="HTTP",
                               trace_id=trace.trace_id, topicName=trace.topic, principalId=trace.principal_id,
                               sourceIp=req.client_address[0], sourcePort=req.client_address[1],
                               reason=reason, details=details)
        entry["sandbox"] = {**trace.attempt.details(), "decidedBy": trace.deciding}
        iot_logs.write(ctx, entry, level=iot_logs.level_for(status))

    def _log_connect_refusal(self, ctx: core.Context, req: Request, details: str) -> None:
        entry = iot_logs.entry(ctx, event_type="Connect", status="Failure", protocol="MQTT",
                               sourceIp=req.client_address[0], sourcePort=req.client_address[1],
                               reason=custom_auth.AUTHENTICATION_FAILURE, details=details)
        iot_logs.write(ctx, entry, level="ERROR")
