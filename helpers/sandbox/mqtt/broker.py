"""The sandbox's MQTT broker (3.1.1 and 5), run on the caller's asyncio loop, with no listener.

The device gateway accepts a connection (MQTT over TLS with ALPN ``mqtt``, or MQTT
over WebSocket), wraps it in a :class:`Stream` and awaits :meth:`Broker.serve`.
Everything a client may do is decided by :class:`Hooks` and the connection's
:class:`Authorization`, as AWS IoT Core does:

- CONNECT: the credentials go to ``hooks.authenticate`` (custom auth; skipped when the
  WebSocket upgrade already authenticated, ``ConnInfo.preauth``); a refusal answers
  CONNACK 4/5 (MQTT 5: 0x86/0x87). Then ``iot:Connect`` on ``client/<clientId>``.
- PUBLISH: ``iot:Publish`` on ``topic/<topic>`` (+ ``iot:RetainPublish`` when retained).
  Refused: MQTT 3.1.1 closes the connection (3.1.1 has no way to say no); MQTT 5
  answers PUBACK 0x87 (QoS 1) or drops the message (QoS 0) and keeps the connection.
- SUBSCRIBE: ``iot:Subscribe`` on ``topicfilter/<filter>`` per filter; refused filters
  get SUBACK 0x80 (MQTT 5: 0x87).
- delivery: ``iot:Receive`` on ``topic/<topic>`` per message per subscriber.
- ``refresh_after`` re-invokes the authorizer (``Authorization.refresh``), and
  ``disconnect_after`` closes the connection, as for custom-auth connections.

Every decision writes one ``AWSIotLogsV2`` entry through ``hooks.log`` (``Connect``,
``Disconnect``, ``Subscribe``, ``Unsubscribe``, ``Publish-In``, ``Publish-Out``).

Bounds (:class:`Limits`): a deadline for the CONNECT and for any half-sent packet;
keep-alive x 1.5; maximum packet and payload sizes; per subscriber an outbound queue
bounded in bytes and messages (passing it disconnects that subscriber, never blocks the
publisher) and a QoS 1 in-flight window (``min(Limits.max_inflight, client's Receive
Maximum)``): packet identifiers are only assigned within the window, so a client that
never sends PUBACK cannot exhaust them; its later messages wait in its queue until the
queue bound drops it. Choices where AWS is silent are marked "Choice:".
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from helpers.topics import MAX_TOPIC_BYTES, MAX_TOPIC_SLASHES, topic_filter_error, topic_name_error

from .. import authz
from . import codec as c
from .auth import AllowAll, PolicyAuthorization

log = logging.getLogger(__name__)

READ_SIZE = 65536


# ----------------------------------------------------------------------------- the interfaces

class Stream(Protocol):
    """One client's byte stream (a TLS socket, or the binary messages of a WebSocket).

    ``close()`` must make a pending ``read()`` return ``b""`` (or raise) promptly.
    """

    async def read(self, max_bytes: int) -> bytes: ...   # b"" at EOF
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class ConnInfo:
    transport: str                 # "mqtt" (TLS + ALPN mqtt) or "websocket"
    source_ip: str
    source_port: int
    server_name: str | None        # SNI host name
    connection_id: str             # the UUID the authorizer event carries as connectionMetadata.id
    preauth: Any = None            # an Authorization when the WebSocket upgrade already authenticated
    http: dict | None = None       # over WebSocket: the upgrade request's headers and query string (the event's http)


@dataclass
class Refusal:
    """A refused CONNECT. ``not_authorized``: False -> bad credentials (3.1.1 return code 4,
    MQTT 5 0x86); True -> not authorized (return code 5, 0x87)."""

    not_authorized: bool
    reason: str                    # AWSIotLogsV2 reason, e.g. AUTHENTICATION_FAILURE
    details: str                   # human text
    account_id: str | None = None
    sandbox: dict | None = None    # extra facts for the log entry's "sandbox" object
    principal_id: str | None = None


class Authorization(Protocol):
    principal_id: str
    region: str
    account_id: str
    refresh_after: float | None
    disconnect_after: float | None

    def decide(self, action: str, resource: str, variables: dict[str, str]) -> authz.Decision: ...
    async def refresh(self) -> "Authorization | Refusal": ...


class Hooks(Protocol):
    async def authenticate(self, conn: ConnInfo, connect: c.Connect) -> "Authorization | Refusal": ...
    def log(self, entry: dict) -> None: ...


class RetainedQuotaExceeded(Exception):
    """``Broker.publish(retain=True)`` when the retained-message store is full (AWS: throttled)."""


@dataclass
class Limits:
    """Bounds; AWS IoT Core's values where AWS documents one (see the sandbox README)."""

    connect_timeout: float = 10.0          # Choice: the whole CONNECT must arrive within this
    packet_timeout: float = 10.0           # Choice: a started packet must be complete within this
    authenticate_timeout: float = 10.0     # safety net; the custom-auth pipeline has its own 5 s
    refresh_timeout: float = 10.0
    keep_alive_min: int = 30               # AWS: keep-alive 30-1200 s
    keep_alive_max: int = 1200
    max_packet_size: int = 149504          # Remaining Length bound (146 KB); payload bound below
    max_payload_bytes: int = 128 * 1024    # AWS: 128 KB per PUBLISH payload
    max_client_id_bytes: int = 128         # AWS: client id up to 128 bytes
    max_topic_bytes: int = MAX_TOPIC_BYTES  # AWS: topic up to 256 bytes
    max_topic_slashes: int = MAX_TOPIC_SLASHES  # AWS: up to 7 forward slashes (8 levels)
    max_subscriptions_per_subscribe: int = 8   # AWS: 8 per SUBSCRIBE
    max_subscriptions_per_connection: int = 50  # AWS: 50 per connection
    receive_maximum: int = 100             # AWS: 100 unacknowledged inbound QoS 1 publishes
    max_inflight: int = 100                # outbound QoS 1 window per subscriber
    topic_alias_maximum: int = 8           # AWS: 8 topic aliases per connection
    max_queued_bytes: int = 1 << 20        # Choice: per-subscriber outbound queue (bytes) ...
    max_queued_messages: int = 1000        # ... and messages; past either, the subscriber is dropped
    max_retained_messages: int = 10000     # Choice: sandbox memory bound
    max_retained_bytes: int = 64 << 20


# ----------------------------------------------------------------------------- topics (AWS rules)
# Topic names and filters are checked by helpers.topics (topic_name_error, topic_filter_error).

def _topic_name_error(topic: str, limits: Limits) -> str | None:
    return topic_name_error(topic, max_bytes=limits.max_topic_bytes, max_slashes=limits.max_topic_slashes)


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """``$share/group/filter`` -> ("group", "filter"); other filters -> (None, filter).

    Raises ValueError for a malformed shared subscription.
    """
    if not topic_filter.startswith("$share/"):
        return None, topic_filter
    parts = topic_filter.split("/", 2)
    if len(parts) < 3 or not parts[1] or "+" in parts[1] or "#" in parts[1] or not parts[2]:
        raise ValueError(f"shared subscription {topic_filter!r} must be $share/GROUP/FILTER with a group name "
                         "without + or #")
    return parts[1], parts[2]


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a (valid) filter matches a topic, as AWS IoT matches.

    As the MQTT specification, except that ``a/#`` does not match the parent ``a``
    (AWS IoT: "the parent topic is not matched").

    >>> topic_matches("a/+/c", "a/b/c"), topic_matches("a/#", "a"), topic_matches("a/#", "a/"), topic_matches("#", "$aws/x")
    (True, False, True, False)
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return i < len(t_levels)
        if i >= len(t_levels) or (f != "+" and f != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


# ----------------------------------------------------------------------------- internal state

#: PUBLISH properties that travel with a message to its subscribers (MQTT 5 §3.3.2.3).
_FORWARDED = ("payload_format_indicator", "message_expiry_interval", "content_type", "response_topic",
              "correlation_data", "user_property")


class _Message:
    __slots__ = ("topic", "payload", "qos", "retain", "properties", "expires_at", "origin", "size", "_enc")

    def __init__(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict | None,
                 now: float, origin: str | None):
        self.topic, self.payload, self.qos, self.retain = topic, payload, qos, retain
        props = {k: properties[k] for k in _FORWARDED if properties and k in properties}
        self.properties = props
        expiry = props.get("message_expiry_interval")
        self.expires_at = now + expiry if expiry is not None else None
        self.origin = origin
        self.size = len(payload) + len(topic) + 32
        self._enc: dict = {}

    def packet(self, level: int, qos: int, retain: bool, packet_id: int | None, now: float) -> bytes | None:
        """The PUBLISH bytes for one subscriber, or None when the message has expired."""
        props: dict = {}
        if level == 5 and self.properties:
            props = self.properties
            if self.expires_at is not None:
                remaining = math.ceil(self.expires_at - now)
                if remaining <= 0:
                    return None
                props = dict(props, message_expiry_interval=remaining)
        elif self.expires_at is not None and self.expires_at <= now:
            return None
        if qos == 0 and self.expires_at is None:
            key = (level == 5, retain)
            data = self._enc.get(key)
            if data is None:
                data = self._enc[key] = c.encode(c.Publish(self.topic, self.payload, 0, retain, False, None, props),
                                                 level)
            return data
        return c.encode(c.Publish(self.topic, self.payload, qos, retain, False, packet_id, props), level)


@dataclass
class _Sub:
    topic_filter: str              # as subscribed (with $share/group/ for shared ones)
    match: str                     # the filter topics are matched against
    group: str | None
    qos: int
    no_local: bool = False
    retain_as_published: bool = False


class _Session:
    def __init__(self, broker: "Broker", stream: Stream, conn: ConnInfo):
        self.broker, self.stream, self.conn = broker, stream, conn
        self.level = 4
        self.v5 = False
        self.client_id = ""
        self.auth: Any = None
        self.principal_id: str | None = None
        self.account_id: str | None = None
        self.variables: dict[str, str] = {}
        self.keep_alive = 0
        self.will: c.Will | None = None
        self.subs: dict[str, _Sub] = {}
        self.aliases: dict[int, str] = {}
        self.ctrl: collections.deque[bytes] = collections.deque()
        self.data: collections.deque[tuple[_Message, int, bool]] = collections.deque()
        self.queued_bytes = 0
        self.inflight: dict[int, _Message] = {}
        self.window = broker.limits.max_inflight
        self.client_max_packet = c.MQTT_MAX_REMAINING
        self.next_id = 0
        self.wake = asyncio.Event()
        self.writer: asyncio.Task | None = None
        self.timers: list[asyncio.TimerHandle] = []
        self.decisions: dict[tuple[str, str], authz.Decision] = {}
        self.connected = False       # CONNACK 0 sent
        self.closed = False
        self.end_reason = "CONNECTION_LOST"
        self.end_details: str | None = None
        self.publish_will = True
        self.last_rx = 0.0
        self.done = asyncio.Event()

    # --- authorization with a per-connection cache (variables are fixed per connection) ---

    def decide(self, action: str, resource: str) -> authz.Decision:
        key = (action, resource)
        d = self.decisions.get(key)
        if d is None:
            try:
                d = self.auth.decide(action, resource, self.variables)
            except Exception as exc:   # an authorization object must never break the broker
                log.exception("Authorization.decide failed")
                d = authz.Decision(False, f"the authorization failed: {exc}", None, None, None, None)
            if len(self.decisions) >= 1024:
                self.decisions.clear()
            self.decisions[key] = d
        return d

    # --- output ---

    def send_ctrl(self, packet: c.Packet) -> None:
        if self.closed:
            return
        self.ctrl.append(c.encode(packet, self.level))
        self.wake.set()

    def flush(self) -> int:
        """Write what may be written now; the bytes written."""
        written = 0
        stream, loop_time = self.stream, self.broker._now
        while not self.closed:
            if self.ctrl:
                data = self.ctrl.popleft()
            elif self.data:
                msg, qos, retain = self.data[0]
                if qos and len(self.inflight) >= self.window:
                    break
                self.data.popleft()
                self.queued_bytes -= msg.size
                packet_id = None
                if qos:
                    packet_id = self._packet_id()
                data = msg.packet(self.level, qos, retain, packet_id, loop_time())
                if data is None:
                    continue                       # expired while queued (MQTT 5 message expiry)
                if len(data) > self.client_max_packet:
                    continue                       # larger than the client accepts: discarded (MQTT-3.1.2-25)
                if qos:
                    self.inflight[packet_id] = msg
                self.broker._delivered += 1
            else:
                break
            stream.write(data)
            written += len(data)
        return written

    def _packet_id(self) -> int:
        while True:
            self.next_id = self.next_id % 65535 + 1
            if self.next_id not in self.inflight:
                return self.next_id


# ----------------------------------------------------------------------------- the broker

class Broker:
    """MQTT 3.1.1/5 broker on the running asyncio loop. See the module docstring."""

    def __init__(self, hooks: Hooks, limits: Limits | None = None, *, account_id: str | None = None,
                 clock: Callable[[], float] | None = None):
        """``clock``: seconds, monotonic (default: the running loop's time); tests move it to expire messages."""
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self.hooks = hooks
        self.limits = limits or Limits()
        self.account_id = account_id or getattr(hooks, "account_id", None)
        self._conns: set[_Session] = set()
        self._by_client_id: dict[str, _Session] = {}
        self._exact: dict[str, dict[_Session, _Sub]] = {}
        self._wild: dict[str, dict[_Session, _Sub]] = {}
        self._shared: dict[tuple[str, str], dict[_Session, _Sub]] = {}
        self._shared_next: dict[tuple[str, str], int] = {}
        self._retained: dict[str, _Message] = {}
        self._retained_bytes = 0
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self._published = self._delivered = self._acked = 0
        self._dropped_slow = self._refused = 0
        #: optional ``hooks.log_wanted(log_level) -> bool``: skip building entries nobody keeps
        #: (AWS writes INFO entries only at log level INFO/DEBUG, ERROR ones at ERROR and above).
        self._log_wanted = getattr(hooks, "log_wanted", None)
        self._stamp_second, self._stamp_text = -1, ""

    # --- public API ---

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool, properties: dict | None = None,
                origin: dict | None = None) -> int:
        """Publish an already-authorized message (HTTPS publish); the number of deliveries.

        Never blocks: each subscriber's copy is queued (a subscriber whose queue is full is
        disconnected). ``iot:Receive`` is checked per subscriber. ``origin`` may carry
        ``clientId`` (for MQTT 5 No Local). Raises ValueError for an invalid topic/QoS and
        :class:`RetainedQuotaExceeded` when a retained message cannot be stored.
        """
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (AWS IoT Core does not support QoS {qos})")
        problem = _topic_name_error(topic, self.limits)
        if problem:
            raise ValueError(problem)
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        msg = _Message(topic, bytes(payload), qos, bool(retain), properties, self._now(),
                       (origin or {}).get("clientId"))
        if retain and not self._store_retained(msg):
            raise RetainedQuotaExceeded("the retained-message store of the sandbox is full")
        return self._route(msg)

    async def close(self) -> None:
        """Disconnect every client (server shutting down: no will messages) and wait for them."""
        self._closing = True
        sessions = list(self._conns)
        for s in sessions:
            self._kick(s, "SERVER_INITIATED_DISCONNECT", 0x8B, "the sandbox is shutting down", will=False)
        waits = [asyncio.ensure_future(s.done.wait()) for s in sessions]
        if waits:
            await asyncio.wait(waits, timeout=5)
            for w in waits:
                w.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._closing = False

    def stats(self) -> dict:
        return {"published": self._published, "delivered": self._delivered, "acked": self._acked,
                "clients": len(self._by_client_id), "connections": len(self._conns),
                "retained": len(self._retained),
                "subscriptions": sum(len(s.subs) for s in self._by_client_id.values()),
                "dropped_slow_consumers": self._dropped_slow, "refused_connects": self._refused,
                "queued_bytes": sum(s.queued_bytes for s in self._conns),
                "inflight": sum(len(s.inflight) for s in self._conns)}

    def retained(self) -> dict[str, tuple[bytes, int]]:
        """The retained messages, topic -> (payload, qos)."""
        return {t: (m.payload, m.qos) for t, m in self._retained.items()}

    # --- one connection ---

    async def serve(self, stream: Stream, conn: ConnInfo) -> None:
        s = _Session(self, stream, conn)
        self._conns.add(s)
        try:
            await self._run(s)
        except c.MqttProtocolError as exc:
            self._protocol_error(s, exc)
        except _Deadline as exc:
            self._kick(s, exc.reason, exc.code, str(exc))
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            self._kick(s, "CONNECTION_LOST", None, "the connection was lost")
        except asyncio.CancelledError:
            self._kick(s, "SERVER_INITIATED_DISCONNECT", 0x8B, "the sandbox is shutting down", will=False)
            raise
        except Exception:   # a bug here must not take the gateway down
            log.exception("MQTT session failed")
            self._kick(s, "SERVER_ERROR", c.UNSPECIFIED_ERROR, "internal error in the sandbox broker")
        finally:
            await self._cleanup(s)

    def _now(self) -> float:
        return self._clock()

    async def _read(self, s: _Session, deadline: float, reason: str, code: int, why: str) -> bytes:
        timeout = deadline - self._now()
        if timeout <= 0:
            raise _Deadline(reason, code, why)
        try:
            async with asyncio.timeout(timeout):
                return await s.stream.read(READ_SIZE)
        except TimeoutError:
            raise _Deadline(reason, code, why) from None

    async def _run(self, s: _Session) -> None:
        lim = self.limits
        decoder = c.Decoder(lim.max_packet_size)
        deadline = self._now() + lim.connect_timeout
        packets: list = []
        try:
            while not packets:
                data = await self._read(s, deadline, "CLIENT_ERROR", c.PROTOCOL_ERROR,
                                        f"no complete CONNECT within {lim.connect_timeout:g} s")
                if not data or s.closed:
                    return
                packets = decoder.feed(data)
        except c.MqttProtocolError as exc:
            if exc.reason_code == c.UNSUPPORTED_PROTOCOL_VERSION:
                # Unknown level: answer in 3.1.1 form (return code 1), which every client can read.
                s.stream.write(c.encode(c.Connack(False, c.RC_BAD_PROTOCOL), 4))
                self._refused += 1
                s.end_details = str(exc)
                s.closed = True
                s.stream.close()
                return
            raise
        if not await self._connect(s, packets.pop(0)):
            return
        s.last_rx = self._now()
        partial_since = None
        while True:
            for packet in packets:
                self._handle(s, packet)
                if s.closed:
                    return
            now = self._now()
            if decoder.pending:
                partial_since = partial_since if partial_since is not None else now
            else:
                partial_since = None
            if packets:
                s.last_rx = now
            keep = s.last_rx + s.keep_alive * 1.5
            if partial_since is not None and partial_since + lim.packet_timeout < keep:
                data = await self._read(s, partial_since + lim.packet_timeout, "CLIENT_ERROR", c.PROTOCOL_ERROR,
                                        f"a packet was not completed within {lim.packet_timeout:g} s")
            else:
                data = await self._read(s, keep, "MQTT_KEEP_ALIVE_TIMEOUT", c.KEEP_ALIVE_TIMEOUT,
                                        f"no packet within 1.5 x the keep-alive of {s.keep_alive} s")
            if not data or s.closed:
                return
            packets = decoder.feed(data)

    # --- CONNECT ---

    async def _connect(self, s: _Session, connect: c.Connect) -> bool:
        lim = self.limits
        s.level, s.v5 = connect.protocol_level, connect.protocol_level == 5
        props = connect.properties
        cid = connect.client_id
        s.client_id = cid
        if s.v5 and "authentication_method" in props:
            return self._refuse(s, None, Refusal(False, "AUTHENTICATION_FAILURE",
                                                 "MQTT 5 enhanced authentication (AUTH) is not supported by AWS IoT "
                                                 "Core: remove the Authentication Method property"),
                                code5=c.BAD_AUTHENTICATION_METHOD)
        if len(cid.encode("utf-8")) > lim.max_client_id_bytes:
            return self._refuse(s, None, Refusal(False, "CLIENT_ERROR",
                                                 f"the client id is {len(cid.encode())} bytes; AWS IoT allows at "
                                                 f"most {lim.max_client_id_bytes}"),
                                code311=c.RC_BAD_CLIENT_ID, code5=c.CLIENT_IDENTIFIER_NOT_VALID)
        assigned = None
        if not cid:
            if not s.v5 and not connect.clean_start:
                return self._refuse(s, None, Refusal(False, "CLIENT_ERROR",
                                                     "an empty client id needs clean session = 1 (MQTT-3.1.3-7)"),
                                    code311=c.RC_BAD_CLIENT_ID, code5=c.CLIENT_IDENTIFIER_NOT_VALID)
            assigned = cid = s.client_id = f"sandbox-{uuid.uuid4().hex[:16]}"
        will = connect.will
        if will is not None:
            problem = _topic_name_error(will.topic, lim)
            if problem or will.qos > 1 or len(will.payload) > lim.max_payload_bytes:
                why = problem or ("will QoS 2 is not supported by AWS IoT Core" if will.qos > 1 else
                                  f"the will payload is larger than {lim.max_payload_bytes} bytes")
                if not s.v5:
                    raise c.MqttProtocolError(c.PROTOCOL_ERROR, f"invalid will message: {why}")
                code = (c.QOS_NOT_SUPPORTED if will.qos > 1 else
                        c.TOPIC_NAME_INVALID if problem else c.PACKET_TOO_LARGE)
                return self._refuse(s, None, Refusal(False, "CLIENT_ERROR", f"invalid will message: {why}"),
                                    code5=code)
        # authenticate (custom auth), unless the WebSocket upgrade already did
        if s.conn.preauth is not None:
            result: Any = s.conn.preauth
        else:
            try:
                async with asyncio.timeout(lim.authenticate_timeout):
                    result = await self.hooks.authenticate(s.conn, connect)
            except TimeoutError:
                result = Refusal(False, "AUTHENTICATION_FAILURE",
                                 f"authentication did not finish within {lim.authenticate_timeout:g} s")
            except Exception as exc:
                log.exception("Hooks.authenticate failed")
                result = Refusal(False, "AUTHENTICATION_FAILURE", f"authentication failed: {exc}")
        if s.closed:
            return False
        if isinstance(result, Refusal):
            return self._refuse(s, None, result)
        s.auth = result
        s.principal_id, s.account_id = result.principal_id, result.account_id
        s.variables = {"iot:ClientId": cid, "aws:SourceIp": s.conn.source_ip}
        if s.conn.server_name:
            s.variables["iot:DomainName"] = s.conn.server_name
        decision = s.decide("iot:Connect", authz.client_arn(result.region, result.account_id, cid))
        if not decision.allowed:
            return self._refuse(s, decision, Refusal(True, "AUTHORIZATION_FAILURE",
                                                     f"iot:Connect is not allowed for client id {cid!r}: "
                                                     f"{decision.reason}"))
        # keep-alive, within AWS's range
        ka = connect.keep_alive
        s.keep_alive = lim.keep_alive_max if ka == 0 else min(max(ka, lim.keep_alive_min), lim.keep_alive_max)
        # duplicate client id: the new connection wins (AWS IoT; MQTT-3.1.4-2)
        previous = self._by_client_id.get(cid)
        if previous is not None and previous is not s:
            self._kick(previous, "DUPLICATE_CLIENTID", c.SESSION_TAKEN_OVER,
                       f"another connection connected with the same client id {cid!r}")
        self._by_client_id[cid] = s
        s.will = will
        connack_props: dict = {}
        if s.v5:
            s.window = min(lim.max_inflight, props.get("receive_maximum", 65535))
            s.client_max_packet = props.get("maximum_packet_size", c.MQTT_MAX_REMAINING)
            connack_props = {
                "receive_maximum": lim.receive_maximum,
                "maximum_qos": 1,
                "retain_available": 1,
                "maximum_packet_size": lim.max_packet_size,
                "topic_alias_maximum": lim.topic_alias_maximum,
                "wildcard_subscription_available": 1,
                "subscription_identifier_available": 0,
                "shared_subscription_available": 1,
            }
            if props.get("session_expiry_interval"):
                # Choice: the sandbox keeps no session after the connection ends; it says so.
                connack_props["session_expiry_interval"] = 0
            if s.keep_alive != ka:
                connack_props["server_keep_alive"] = s.keep_alive
            if assigned:
                connack_props["assigned_client_identifier"] = assigned
        s.connected = True
        s.writer = asyncio.ensure_future(self._writer(s))
        s.send_ctrl(c.Connack(False, 0, connack_props))
        self._log("Connect", "Success", s)
        self._schedule_auth_timers(s)
        return True

    def _refuse(self, s: _Session, decision, refusal: Refusal, *, code311: int | None = None,
                code5: int | None = None) -> bool:
        self._refused += 1
        if code311 is None:
            code311 = c.RC_NOT_AUTHORIZED if refusal.not_authorized else c.RC_BAD_CREDENTIALS
        if code5 is None:
            code5 = c.NOT_AUTHORIZED if refusal.not_authorized else c.BAD_USERNAME_OR_PASSWORD
        props = {"reason_string": refusal.details[:200]} if s.v5 else {}
        s.stream.write(c.encode(c.Connack(False, code5 if s.v5 else code311, props), s.level))
        s.account_id = s.account_id or refusal.account_id
        s.principal_id = s.principal_id or refusal.principal_id
        extra = dict(refusal.sandbox or {})
        self._log("Connect", "Failure", s, reason=refusal.reason, details=refusal.details, sandbox=extra)
        s.closed = True
        s.stream.close()
        return False

    def _schedule_auth_timers(self, s: _Session) -> None:
        loop = asyncio.get_running_loop()
        for t in s.timers:
            t.cancel()
        s.timers = []
        refresh_after = getattr(s.auth, "refresh_after", None)
        if refresh_after:
            s.timers.append(loop.call_later(refresh_after, lambda: self._spawn(self._refresh(s))))
        disconnect_after = getattr(s.auth, "disconnect_after", None)
        if disconnect_after and not getattr(s, "disconnect_at", None):
            s.disconnect_at = loop.time() + disconnect_after
            s.disconnect_timer = loop.call_later(
                disconnect_after, self._kick, s, "CUSTOMAUTH_TTL_EXPIRATION", c.MAXIMUM_CONNECT_TIME,
                f"the connection reached disconnectAfterInSeconds ({disconnect_after:g} s)")

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, s: _Session) -> None:
        if s.closed:
            return
        try:
            async with asyncio.timeout(self.limits.refresh_timeout):
                result = await s.auth.refresh()
        except Exception as exc:
            result = Refusal(False, "AUTHENTICATION_FAILURE", f"refreshing the authorization failed: {exc}")
        if s.closed:
            return
        if isinstance(result, Refusal):
            self._kick(s, "AUTH_ERROR", c.NOT_AUTHORIZED, f"policy refresh refused the connection: {result.details}")
            return
        s.auth = result
        s.decisions.clear()
        decision = s.decide("iot:Connect", authz.client_arn(result.region, result.account_id, s.client_id))
        if not decision.allowed:
            self._kick(s, "AUTH_ERROR", c.NOT_AUTHORIZED, f"after the policy refresh, {decision.reason}")
            return
        self._schedule_auth_timers(s)

    # --- packets after CONNECT ---

    def _handle(self, s: _Session, p: c.Packet) -> None:
        if isinstance(p, c.Publish):
            self._on_publish(s, p)
        elif isinstance(p, c.Puback):
            if s.inflight.pop(p.packet_id, None) is not None:
                self._acked += 1
                s.wake.set()
        elif isinstance(p, c.Subscribe):
            self._on_subscribe(s, p)
        elif isinstance(p, c.Unsubscribe):
            self._on_unsubscribe(s, p)
        elif isinstance(p, c.Pingreq):
            s.send_ctrl(c.Pingresp())
        elif isinstance(p, c.Disconnect):
            if s.v5 and p.properties.get("session_expiry_interval"):
                raise c.MqttProtocolError(c.PROTOCOL_ERROR, "DISCONNECT sets a session expiry interval after "
                                                            "CONNECT had none (MQTT-3.14.2-2)")
            will = s.v5 and p.reason_code == c.DISCONNECT_WITH_WILL
            s.end_reason, s.end_details, s.publish_will = "CLIENT_INITIATED_DISCONNECT", None, will
            self._finish_writes_and_close(s)
        elif isinstance(p, (c.Pubrec, c.Pubrel, c.Pubcomp)):
            raise c.MqttProtocolError(c.PROTOCOL_ERROR, "QoS 2 packets (PUBREC/PUBREL/PUBCOMP): AWS IoT Core "
                                                        "supports only QoS 0 and 1")
        elif isinstance(p, c.Auth):
            raise c.MqttProtocolError(c.PROTOCOL_ERROR, "AUTH without enhanced authentication")
        else:
            raise c.MqttProtocolError(c.PROTOCOL_ERROR, f"a client may not send {type(p).__name__.upper()}")

    def _on_publish(self, s: _Session, p: c.Publish) -> None:
        lim = self.limits
        topic = p.topic
        if s.v5:
            alias = p.properties.get("topic_alias")
            if alias is not None:
                if alias == 0 or alias > lim.topic_alias_maximum:
                    raise c.MqttProtocolError(c.TOPIC_ALIAS_INVALID, f"topic alias {alias} is outside 1-"
                                                                     f"{lim.topic_alias_maximum}")
                if topic:
                    s.aliases[alias] = topic
                elif alias in s.aliases:
                    topic = s.aliases[alias]
                else:
                    raise c.MqttProtocolError(c.PROTOCOL_ERROR, f"topic alias {alias} has no topic yet")
        if p.qos == 2:
            raise c.MqttProtocolError(c.QOS_NOT_SUPPORTED, "PUBLISH with QoS 2: AWS IoT Core supports only QoS "
                                                           "0 and 1")
        problem = _topic_name_error(topic, lim)
        if problem:
            raise c.MqttProtocolError(c.TOPIC_NAME_INVALID, problem)
        if len(p.payload) > lim.max_payload_bytes:
            raise c.MqttProtocolError(c.PACKET_TOO_LARGE, f"the payload is {len(p.payload)} bytes; AWS IoT allows "
                                                          f"at most {lim.max_payload_bytes}")
        auth = s.auth
        decision = s.decide("iot:Publish", authz.topic_arn(auth.region, auth.account_id, topic))
        if decision.allowed and p.retain:
            decision = s.decide("iot:RetainPublish", authz.topic_arn(auth.region, auth.account_id, topic))
        if not decision.allowed:
            self._log("Publish-In", "Failure", s, topicName=topic, reason="AUTHORIZATION_FAILURE",
                      details=decision.reason)
            if s.v5:
                if p.qos:
                    s.send_ctrl(c.Puback(p.packet_id, c.NOT_AUTHORIZED, {"reason_string": decision.reason[:200]}))
                return
            self._kick(s, "AUTH_ERROR", None, f"PUBLISH to {topic!r} is not authorized: {decision.reason}")
            return
        msg = _Message(topic, p.payload, p.qos, p.retain, p.properties, self._now(), s.client_id)
        if p.retain and not self._store_retained(msg):
            details = "the sandbox's retained-message store is full"
            self._log("Publish-In", "Failure", s, topicName=topic, reason="THROTTLED", details=details)
            if s.v5:
                if p.qos:
                    s.send_ctrl(c.Puback(p.packet_id, c.QUOTA_EXCEEDED, {"reason_string": details}))
                return
            self._kick(s, "THROTTLED", None, details)
            return
        if p.retain:
            self._log("Publish-In", "Success", s, topicName=topic, retain="True")
        else:
            self._log("Publish-In", "Success", s, topicName=topic)
        self._route(msg)
        if p.qos:
            s.send_ctrl(c.Puback(p.packet_id))

    def _on_subscribe(self, s: _Session, p: c.Subscribe) -> None:
        lim = self.limits
        if "subscription_identifier" in p.properties:
            raise c.MqttProtocolError(c.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                                      "subscription identifiers are not supported by AWS IoT Core")
        auth = s.auth
        codes: list[int] = []
        retained_for: list[tuple[_Sub, int, bool]] = []
        for i, req in enumerate(p.subscriptions):
            failure = None
            try:
                group, match = split_shared(req.topic_filter)
            except ValueError as exc:
                group, match, failure = None, req.topic_filter, (str(exc), c.TOPIC_FILTER_INVALID, "CLIENT_ERROR")
            if failure is None:
                problem = topic_filter_error(match, max_bytes=lim.max_topic_bytes,
                                             max_slashes=lim.max_topic_slashes)
                if problem:
                    failure = (problem, c.TOPIC_FILTER_INVALID, "CLIENT_ERROR")
            if group is not None and req.no_local:
                raise c.MqttProtocolError(c.PROTOCOL_ERROR, "No Local on a shared subscription (MQTT-3.8.3-4)")
            if failure is None and i >= lim.max_subscriptions_per_subscribe:
                failure = (f"AWS IoT allows at most {lim.max_subscriptions_per_subscribe} topic filters per "
                           "SUBSCRIBE", c.QUOTA_EXCEEDED, "THROTTLED")
            if failure is None and req.topic_filter not in s.subs and \
                    len(s.subs) >= lim.max_subscriptions_per_connection:
                failure = (f"AWS IoT allows at most {lim.max_subscriptions_per_connection} subscriptions per "
                           "connection", c.QUOTA_EXCEEDED, "THROTTLED")
            if failure is None:
                decision = s.decide("iot:Subscribe", authz.topicfilter_arn(auth.region, auth.account_id,
                                                                           req.topic_filter))
                if not decision.allowed:
                    failure = (decision.reason, c.NOT_AUTHORIZED, "AUTHORIZATION_FAILURE")
            if failure is not None:
                details, code5, reason = failure
                codes.append(code5 if s.v5 else c.SUBACK_FAILURE_311)
                self._log("Subscribe", "Failure", s, topicName=req.topic_filter, reason=reason, details=details)
                continue
            granted = min(req.qos, 1)    # Choice: QoS 2 requests are granted QoS 1 (the MQTT downgrade rule)
            is_new = req.topic_filter not in s.subs
            sub = _Sub(req.topic_filter, match, group, granted, req.no_local, req.retain_as_published)
            self._add_sub(s, sub)
            codes.append(granted)
            self._log("Subscribe", "Success", s, topicName=req.topic_filter)
            if group is None and (req.retain_handling == 0 or (req.retain_handling == 1 and is_new)):
                retained_for.append((sub, granted, is_new))
        s.send_ctrl(c.Suback(p.packet_id, codes))
        # Retained messages after the SUBACK. AWS IoT: only for a filter that names the retained
        # message's topic exactly ("the topic filter ... must match the retained message topic exactly").
        for sub, granted, _ in retained_for:
            msg = self._retained.get(sub.match)
            if msg is not None:
                self._deliver(s, msg, min(msg.qos, granted), True)

    def _on_unsubscribe(self, s: _Session, p: c.Unsubscribe) -> None:
        codes = []
        for f in p.topic_filters:
            sub = s.subs.pop(f, None)
            if sub is not None:
                self._index_remove(s, sub)
            codes.append(c.SUCCESS if sub is not None else c.NO_SUBSCRIPTION_EXISTED)
            self._log("Unsubscribe", "Success", s, topicName=f)
        s.send_ctrl(c.Unsuback(p.packet_id, codes if s.v5 else []))

    # --- subscriptions index ---

    def _index_for(self, sub: _Sub) -> dict[_Session, _Sub]:
        if sub.group is not None:
            return self._shared.setdefault((sub.group, sub.match), {})
        table = self._wild if ("+" in sub.match or "#" in sub.match) else self._exact
        return table.setdefault(sub.match, {})

    def _add_sub(self, s: _Session, sub: _Sub) -> None:
        old = s.subs.get(sub.topic_filter)
        if old is not None:
            self._index_remove(s, old)
        s.subs[sub.topic_filter] = sub
        self._index_for(sub)[s] = sub

    def _index_remove(self, s: _Session, sub: _Sub) -> None:
        if sub.group is not None:
            key = (sub.group, sub.match)
            table = self._shared
        else:
            key = sub.match
            table = self._wild if ("+" in sub.match or "#" in sub.match) else self._exact
        members = table.get(key)
        if members is not None:
            members.pop(s, None)
            if not members:
                del table[key]

    # --- routing ---

    def _store_retained(self, msg: _Message) -> bool:
        old = self._retained.get(msg.topic)
        if not msg.payload:            # an empty retained message deletes the stored one (still delivered)
            if old is not None:
                del self._retained[msg.topic]
                self._retained_bytes -= old.size
            return True
        grow = msg.size - (old.size if old else 0)
        if (old is None and len(self._retained) >= self.limits.max_retained_messages) or \
                self._retained_bytes + grow > self.limits.max_retained_bytes:
            return False
        self._retained[msg.topic] = msg
        self._retained_bytes += grow
        return True

    def _route(self, msg: _Message) -> int:
        """Queue ``msg`` for every matching subscription; the number of deliveries."""
        self._published += 1
        topic = msg.topic
        best: dict[_Session, _Sub] = {}
        members = self._exact.get(topic)
        if members:
            best.update(members)
        for f, members in self._wild.items():
            if topic_matches(f, topic):
                for s, sub in members.items():
                    have = best.get(s)
                    if have is None or sub.qos > have.qos:
                        best[s] = sub
        count = 0
        for s, sub in best.items():
            if sub.no_local and msg.origin is not None and msg.origin == s.client_id:
                continue
            retain = msg.retain if (sub.retain_as_published and s.v5) else False
            if self._deliver(s, msg, min(msg.qos, sub.qos), retain):
                count += 1
        for (group, f), members in list(self._shared.items()):
            if not topic_matches(f, topic):
                continue
            sessions = list(members.items())
            start = self._shared_next.get((group, f), 0)
            for k in range(len(sessions)):     # one member per group, round robin, skipping refusals
                s, sub = sessions[(start + k) % len(sessions)]
                retain = msg.retain if (sub.retain_as_published and s.v5) else False
                if self._deliver(s, msg, min(msg.qos, sub.qos), retain):
                    count += 1
                    self._shared_next[(group, f)] = (start + k + 1) % len(sessions)
                    break
        return count

    def _deliver(self, s: _Session, msg: _Message, qos: int, retain: bool) -> bool:
        if s.closed or not s.connected:
            return False
        auth = s.auth
        decision = s.decide("iot:Receive", authz.topic_arn(auth.region, auth.account_id, msg.topic))
        if not decision.allowed:
            self._log("Publish-Out", "Failure", s, topicName=msg.topic, reason="AUTHORIZATION_FAILURE",
                      details=decision.reason)
            return False
        lim = self.limits
        if s.queued_bytes + msg.size > lim.max_queued_bytes or len(s.data) >= lim.max_queued_messages:
            self._dropped_slow += 1
            self._kick(s, "THROTTLED", c.QUOTA_EXCEEDED,
                       f"the client is not reading its messages: {len(s.data)} messages ({s.queued_bytes} bytes) "
                       f"were waiting, past the sandbox's bound of {lim.max_queued_messages} messages / "
                       f"{lim.max_queued_bytes} bytes")
            return False
        s.data.append((msg, qos, retain))
        s.queued_bytes += msg.size
        s.wake.set()
        self._log("Publish-Out", "Success", s, topicName=msg.topic)
        return True

    # --- writing ---

    async def _writer(self, s: _Session) -> None:
        try:
            while not s.closed:
                await s.wake.wait()
                s.wake.clear()
                while not s.closed and s.flush():
                    await s.stream.drain()
        except (ConnectionError, OSError):
            self._kick(s, "CONNECTION_LOST", None, "the connection was lost while writing")
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("MQTT writer failed")
            self._kick(s, "SERVER_ERROR", c.UNSPECIFIED_ERROR, "internal error in the sandbox broker")

    def _finish_writes_and_close(self, s: _Session) -> None:
        """Close after a client's DISCONNECT: queued control packets are written first."""
        if s.closed:
            return
        try:
            while s.ctrl:
                s.stream.write(s.ctrl.popleft())
        except Exception:
            pass
        s.closed = True
        s.stream.close()
        s.wake.set()

    # --- ending a connection ---

    def _protocol_error(self, s: _Session, exc: c.MqttProtocolError) -> None:
        reason = "CLIENT_ERROR"
        if not s.connected:
            log.debug("MQTT connection %s closed before CONNACK: %s", s.conn.connection_id, exc)
            if s.v5 and not s.closed:
                try:
                    s.stream.write(c.encode(c.Connack(False, exc.reason_code, {"reason_string": str(exc)[:200]}), 5))
                except Exception:
                    pass
            s.end_details = str(exc)
            s.closed = True
            s.stream.close()
            return
        self._kick(s, reason, exc.reason_code, str(exc))

    def _kick(self, s: _Session, reason: str, code5: int | None, details: str | None, *, will: bool = True) -> None:
        """Close ``s`` now (MQTT 5: DISCONNECT with ``code5`` first); ``reason`` = AWS disconnectReason."""
        if s.closed:
            return
        s.end_reason, s.end_details = reason, details
        s.publish_will = s.publish_will and will
        if s.v5 and s.connected and code5 is not None:
            props = {"reason_string": details[:200]} if details else {}
            try:
                s.stream.write(c.encode(c.Disconnect(code5, props), 5))
            except Exception:
                pass
        s.closed = True
        try:
            s.stream.close()
        except Exception:
            pass
        s.wake.set()

    async def _cleanup(self, s: _Session) -> None:
        self._conns.discard(s)
        if not s.closed:
            s.closed = True
            try:
                s.stream.close()
            except Exception:
                pass
        for t in s.timers:
            t.cancel()
        timer = getattr(s, "disconnect_timer", None)
        if timer is not None:
            timer.cancel()
        if s.writer is not None:
            s.writer.cancel()
            try:
                await s.writer
            except BaseException:
                pass
        for sub in list(s.subs.values()):
            self._index_remove(s, sub)
        if s.connected:
            if self._by_client_id.get(s.client_id) is s:
                del self._by_client_id[s.client_id]
            extra = {"disconnectReason": s.end_reason}
            if s.end_details:
                extra["details"] = s.end_details
            self._log("Disconnect", "Success", s, **extra)
            if s.will is not None and s.publish_will and not self._closing:
                self._publish_will(s, s.will)
        s.data.clear()
        s.ctrl.clear()
        s.inflight.clear()
        s.done.set()

    def _publish_will(self, s: _Session, will: c.Will) -> None:
        """The will message, as if the client had published it (its policy decides)."""
        auth = s.auth
        decision = s.decide("iot:Publish", authz.topic_arn(auth.region, auth.account_id, will.topic))
        if decision.allowed and will.retain:
            decision = s.decide("iot:RetainPublish", authz.topic_arn(auth.region, auth.account_id, will.topic))
        if not decision.allowed:
            self._log("Publish-In", "Failure", s, topicName=will.topic, reason="AUTHORIZATION_FAILURE",
                      details=f"will message: {decision.reason}")
            return
        # Choice: Will Delay Interval is not waited for: the sandbox keeps no session, and MQTT 5 sends
        # the will when the session ends, whichever comes first (§3.1.3.2.2).
        msg = _Message(will.topic, will.payload, will.qos, will.retain, will.properties, self._now(), s.client_id)
        if will.retain and not self._store_retained(msg):
            self._log("Publish-In", "Failure", s, topicName=will.topic, reason="THROTTLED",
                      details="will message: the sandbox's retained-message store is full")
            return
        self._log("Publish-In", "Success", s, topicName=will.topic, sandbox={"will": True})
        self._route(msg)

    # --- AWSIotLogsV2 ---

    def _log(self, event: str, status: str, s: _Session, *, sandbox: dict | None = None, **fields: Any) -> None:
        level = "INFO" if status == "Success" else "ERROR"
        if self._log_wanted is not None:
            try:
                if not self._log_wanted(level):
                    return
            except Exception:
                log.exception("Hooks.log_wanted failed")
        now = time.time()
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp_text = time.strftime("%Y-%m-%d %H:%M:%S.", time.gmtime(second))
        bits = random.getrandbits(128)
        trace = f"{bits:032x}"
        entry: dict[str, Any] = {
            "timestamp": f"{self._stamp_text}{int((now - second) * 1000):03d}",
            "logLevel": level,
            "traceId": f"{trace[:8]}-{trace[8:12]}-{trace[12:16]}-{trace[16:20]}-{trace[20:]}",
            "accountId": s.account_id or self.account_id,
            "status": status,
            "eventType": event,
            "protocol": "MQTT",
        }
        if s.client_id:
            entry["clientId"] = s.client_id
        if s.principal_id:
            entry["principalId"] = s.principal_id
        entry["sourceIp"] = s.conn.source_ip
        entry["sourcePort"] = s.conn.source_port
        entry.update(fields)
        extra = {"transport": s.conn.transport, "connectionId": s.conn.connection_id,
                 "mqttVersion": "5" if s.v5 else ("3.1" if s.level == 3 else "3.1.1")}
        if sandbox:
            extra.update(sandbox)
        entry["sandbox"] = extra
        try:
            self.hooks.log(entry)
        except Exception:   # a log write must never break the broker
            log.exception("could not write the AWSIotLogsV2 entry")


class _Deadline(Exception):
    def __init__(self, reason: str, code: int, why: str):
        super().__init__(why)
        self.reason, self.code = reason, code


__all__ = ["AllowAll", "Authorization", "Broker", "ConnInfo", "Hooks", "Limits", "PolicyAuthorization", "Refusal",
           "RetainedQuotaExceeded", "Stream", "split_shared", "topic_matches"]
