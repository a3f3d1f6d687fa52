"""MQTT 3.1 (level 3), 3.1.1 (level 4) and 5.0 (level 5) control packets: decode and encode.

Sans-IO: :class:`Decoder` takes bytes as they arrive (split anywhere) and returns
whole packets; :func:`encode` turns a packet back into bytes for a given protocol
level. Nothing here knows about sockets, clocks or policies.

>>> d = Decoder(max_packet_size=1024)
>>> d.feed(bytes.fromhex("100c00044d5154540402003c0000"))      # CONNECT, 3.1.1, empty client id
[Connect(protocol_level=4, client_id='', clean_start=True, keep_alive=60, username=None, password=None, will=None, properties={}, protocol_name='MQTT')]
>>> d.feed(bytes.fromhex("3007"))                 # half a PUBLISH: nothing yet
[]
>>> d.feed(b"\\x00\\x03a/bhi")
[Publish(topic='a/b', payload=b'hi', qos=0, retain=False, dup=False, packet_id=None, properties={})]
>>> encode(Connack(False, 0), 4).hex()
'20020000'

Every violation raises :class:`MqttProtocolError`, whose ``reason_code`` is the
MQTT 5 reason code a server sends in CONNACK or DISCONNECT (0x81 malformed packet,
0x82 protocol error, 0x95 packet too large, ...) before it closes the connection
(MQTT 5 §4.13; MQTT 3.1.1 §4.8 just closes). The decoder checks what the
specifications call malformed or a protocol error at the packet level: reserved
flag bits, remaining-length encoding, UTF-8 strings (no U+0000, no surrogates),
packet identifier 0 where one is required (MQTT-2.3.1-1), property identifiers
that do not belong to the packet, repeated single properties, QoS 3, and
Remaining Length above ``max_packet_size`` (refused from the fixed header, before
the body is buffered).

Properties (MQTT 5 §2.2.2) are a ``dict`` keyed by snake_case names
(``"session_expiry_interval"``, ``"user_property"``: a list of ``(name, value)``
pairs in order, ``"subscription_identifier"``: a list of ints). MQTT 3.1.1 packets
always have ``properties == {}``, and :func:`encode` drops properties for levels 3/4.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Union

# Control packet types (§2.1.2).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15

PROTOCOL_NAMES = {3: "MQIsdp", 4: "MQTT", 5: "MQTT"}
MQTT_MAX_REMAINING = 268_435_455

# MQTT 5 reason codes used by this package (§2.4).
SUCCESS = 0x00
NO_SUBSCRIPTION_EXISTED = 0x11
DISCONNECT_WITH_WILL = 0x04
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
IMPLEMENTATION_SPECIFIC_ERROR = 0x83
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_IDENTIFIER_NOT_VALID = 0x85
BAD_USERNAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_UNAVAILABLE = 0x88
SERVER_BUSY = 0x89
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
QUOTA_EXCEEDED = 0x97
ADMINISTRATIVE_ACTION = 0x98
PAYLOAD_FORMAT_INVALID = 0x99
QOS_NOT_SUPPORTED = 0x9B
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
MAXIMUM_CONNECT_TIME = 0xA0
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

#: MQTT 3.1.1 CONNACK return codes (§3.2.2.3).
RC_ACCEPTED, RC_BAD_PROTOCOL, RC_BAD_CLIENT_ID, RC_SERVER_UNAVAILABLE = 0, 1, 2, 3
RC_BAD_CREDENTIALS, RC_NOT_AUTHORIZED = 4, 5
SUBACK_FAILURE_311 = 0x80


class MqttProtocolError(Exception):
    """A packet that breaks MQTT. ``reason_code``: the MQTT 5 code to answer with; ``str()``: why."""

    def __init__(self, reason_code: int, message: str):
        super().__init__(message)
        self.reason_code = reason_code


# ----------------------------------------------------------------------------- packets

@dataclass
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict = field(default_factory=dict)


@dataclass
class Connect:
    protocol_level: int
    client_id: str
    clean_start: bool
    keep_alive: int
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: dict = field(default_factory=dict)
    protocol_name: str = "MQTT"


@dataclass
class Connack:
    session_present: bool
    reason_code: int            # 3.1.1 return code (0-5) for levels 3/4, MQTT 5 reason code for 5
    properties: dict = field(default_factory=dict)


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: dict = field(default_factory=dict)


@dataclass
class Puback:
    packet_id: int
    reason_code: int = SUCCESS
    properties: dict = field(default_factory=dict)


@dataclass
class Pubrec:
    packet_id: int
    reason_code: int = SUCCESS
    properties: dict = field(default_factory=dict)


@dataclass
class Pubrel:
    packet_id: int
    reason_code: int = SUCCESS
    properties: dict = field(default_factory=dict)


@dataclass
class Pubcomp:
    packet_id: int
    reason_code: int = SUCCESS
    properties: dict = field(default_factory=dict)


@dataclass
class Subscription:
    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass
class Subscribe:
    packet_id: int
    subscriptions: list[Subscription]
    properties: dict = field(default_factory=dict)


@dataclass
class Suback:
    packet_id: int
    reason_codes: list[int]     # granted QoS 0/1/2 or a failure code (0x80 in 3.1.1)
    properties: dict = field(default_factory=dict)


@dataclass
class Unsubscribe:
    packet_id: int
    topic_filters: list[str]
    properties: dict = field(default_factory=dict)


@dataclass
class Unsuback:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)   # MQTT 5 only; empty for 3.1.1
    properties: dict = field(default_factory=dict)


@dataclass
class Pingreq:
    pass


@dataclass
class Pingresp:
    pass


@dataclass
class Disconnect:
    reason_code: int = SUCCESS
    properties: dict = field(default_factory=dict)


@dataclass
class Auth:
    reason_code: int = SUCCESS
    properties: dict = field(default_factory=dict)


Packet = Union[Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe, Suback,
               Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect, Auth]

# ----------------------------------------------------------------------------- properties (§2.2.2.2)

_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = "byte", "u16", "u32", "varint", "utf8", "binary", "pair"
_WILL = "will"
#: id -> (name, type, packets it may appear in). ``_WILL`` stands for the CONNECT will properties.
PROPERTIES: dict[int, tuple[str, str, frozenset]] = {
    0x01: ("payload_format_indicator", _BYTE, frozenset({PUBLISH, _WILL})),
    0x02: ("message_expiry_interval", _U32, frozenset({PUBLISH, _WILL})),
    0x03: ("content_type", _UTF8, frozenset({PUBLISH, _WILL})),
    0x08: ("response_topic", _UTF8, frozenset({PUBLISH, _WILL})),
    0x09: ("correlation_data", _BINARY, frozenset({PUBLISH, _WILL})),
    0x0B: ("subscription_identifier", _VARINT, frozenset({PUBLISH, SUBSCRIBE})),
    0x11: ("session_expiry_interval", _U32, frozenset({CONNECT, CONNACK, DISCONNECT})),
    0x12: ("assigned_client_identifier", _UTF8, frozenset({CONNACK})),
    0x13: ("server_keep_alive", _U16, frozenset({CONNACK})),
    0x15: ("authentication_method", _UTF8, frozenset({CONNECT, CONNACK, AUTH})),
    0x16: ("authentication_data", _BINARY, frozenset({CONNECT, CONNACK, AUTH})),
    0x17: ("request_problem_information", _BYTE, frozenset({CONNECT})),
    0x18: ("will_delay_interval", _U32, frozenset({_WILL})),
    0x19: ("request_response_information", _BYTE, frozenset({CONNECT})),
    0x1A: ("response_information", _UTF8, frozenset({CONNACK})),
    0x1C: ("server_reference", _UTF8, frozenset({CONNACK, DISCONNECT})),
    0x1F: ("reason_string", _UTF8, frozenset({CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
                                              DISCONNECT, AUTH})),
    0x21: ("receive_maximum", _U16, frozenset({CONNECT, CONNACK})),
    0x22: ("topic_alias_maximum", _U16, frozenset({CONNECT, CONNACK})),
    0x23: ("topic_alias", _U16, frozenset({PUBLISH})),
    0x24: ("maximum_qos", _BYTE, frozenset({CONNACK})),
    0x25: ("retain_available", _BYTE, frozenset({CONNACK})),
    0x26: ("user_property", _PAIR, frozenset({CONNECT, CONNACK, PUBLISH, _WILL, PUBACK, PUBREC, PUBREL, PUBCOMP,
                                              SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH})),
    0x27: ("maximum_packet_size", _U32, frozenset({CONNECT, CONNACK})),
    0x28: ("wildcard_subscription_available", _BYTE, frozenset({CONNACK})),
    0x29: ("subscription_identifier_available", _BYTE, frozenset({CONNACK})),
    0x2A: ("shared_subscription_available", _BYTE, frozenset({CONNACK})),
}
PROPERTY_IDS = {name: (pid, kind) for pid, (name, kind, _) in PROPERTIES.items()}
#: Properties that may appear more than once; they decode to lists.
REPEATABLE = {"user_property", "subscription_identifier"}
#: Properties whose value must be 0 or 1 (§3.1.2.11, §3.2.2.3).
_BOOLEAN_BYTES = {"payload_format_indicator", "request_problem_information", "request_response_information",
                  "retain_available", "wildcard_subscription_available", "subscription_identifier_available",
                  "shared_subscription_available"}


# ----------------------------------------------------------------------------- primitive reads

class _Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | memoryview, pos: int = 0, end: int | None = None):
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise MqttProtocolError(MALFORMED_PACKET, "the packet ends in the middle of a field")
        chunk = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return chunk

    def u8(self) -> int:
        if self.pos >= self.end:
            raise MqttProtocolError(MALFORMED_PACKET, "the packet ends in the middle of a field")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("!I", self.take(4))[0]

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            b = self.u8()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if shift and b == 0:
                    raise MqttProtocolError(MALFORMED_PACKET, "a variable byte integer is not minimally encoded")
                return value
        raise MqttProtocolError(MALFORMED_PACKET, "a variable byte integer is longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def utf8(self, what: str = "string") -> str:
        return decode_utf8(self.binary(), what)


def decode_utf8(raw: bytes, what: str = "string") -> str:
    """MQTT UTF-8 string rules (§1.5.4): valid UTF-8, no U+0000 (surrogates are invalid UTF-8)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MqttProtocolError(MALFORMED_PACKET, f"the {what} is not valid UTF-8") from None
    if "\x00" in text:
        raise MqttProtocolError(MALFORMED_PACKET, f"the {what} contains the null character U+0000")
    return text


def _read_properties(r: _Reader, packet: Any) -> dict:
    length = r.varint()
    if length > r.remaining:
        raise MqttProtocolError(MALFORMED_PACKET, "the property length runs past the end of the packet")
    end = r.pos + length
    sub = _Reader(r.data, r.pos, end)
    r.pos = end
    props: dict[str, Any] = {}
    while sub.remaining:
        pid = sub.varint()
        spec = PROPERTIES.get(pid)
        if spec is None:
            raise MqttProtocolError(MALFORMED_PACKET, f"unknown property identifier 0x{pid:02X}")
        name, kind, allowed = spec
        if packet not in allowed:
            raise MqttProtocolError(MALFORMED_PACKET, f"property {name} (0x{pid:02X}) is not allowed in this packet")
        if kind == _BYTE:
            value: Any = sub.u8()
            if name in _BOOLEAN_BYTES and value > 1:
                raise MqttProtocolError(PROTOCOL_ERROR, f"property {name} must be 0 or 1, got {value}")
            if name == "maximum_qos" and value > 1:
                raise MqttProtocolError(PROTOCOL_ERROR, f"property maximum_qos must be 0 or 1, got {value}")
        elif kind == _U16:
            value = sub.u16()
        elif kind == _U32:
            value = sub.u32()
        elif kind == _VARINT:
            value = sub.varint()
            if name == "subscription_identifier" and value == 0:
                raise MqttProtocolError(PROTOCOL_ERROR, "a subscription identifier of 0 is a protocol error")
        elif kind == _UTF8:
            value = sub.utf8(f"{name} property")
        elif kind == _BINARY:
            value = sub.binary()
        else:
            value = (sub.utf8("user property name"), sub.utf8("user property value"))
        if name in REPEATABLE:
            props.setdefault(name, []).append(value)
        elif name in props:
            raise MqttProtocolError(PROTOCOL_ERROR, f"property {name} appears more than once")
        else:
            props[name] = value
    if props.get("receive_maximum") == 0:
        raise MqttProtocolError(PROTOCOL_ERROR, "receive_maximum 0 is a protocol error")
    if props.get("maximum_packet_size") == 0:
        raise MqttProtocolError(PROTOCOL_ERROR, "maximum_packet_size 0 is a protocol error")
    return props


# ----------------------------------------------------------------------------- decoder

class Decoder:
    """Incremental decoder for one connection, server side or client side.

    ``protocol_level`` is learnt from the first CONNECT (or given, for a client's
    decoder of server packets). After an error the decoder stays broken: the
    connection must be closed.
    """

    def __init__(self, max_packet_size: int, protocol_level: int | None = None):
        self.max_packet_size = max_packet_size
        self.protocol_level = protocol_level
        self._buf = bytearray()
        self._need: tuple[int, int] | None = None   # (header length, remaining length) of the packet in progress

    @property
    def pending(self) -> int:
        """Bytes received that are not yet a whole packet (a half-sent packet when > 0)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        if data:
            self._buf += data
        out: list[Packet] = []
        buf = self._buf
        while buf:
            if self._need is None:
                header = self._fixed_header(buf)
                if header is None:
                    break
                self._need = header
            header_len, remaining = self._need
            total = header_len + remaining
            if len(buf) < total:
                break
            first = buf[0]
            body = memoryview(buf)[header_len:total]
            try:
                packet = self._decode(first >> 4, first & 0x0F, body)
            finally:
                body.release()
            del buf[:total]
            self._need = None
            out.append(packet)
            if isinstance(packet, Connect) and self.protocol_level is None:
                self.protocol_level = packet.protocol_level
        return out

    def _fixed_header(self, buf: bytearray) -> tuple[int, int] | None:
        remaining, shift = 0, 0
        for i in range(1, 5):
            if i >= len(buf):
                return None
            b = buf[i]
            remaining |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if remaining > self.max_packet_size:
                    raise MqttProtocolError(
                        PACKET_TOO_LARGE, f"packet of {remaining} bytes is larger than the maximum packet size "
                        f"({self.max_packet_size} bytes)")
                return i + 1, remaining
        raise MqttProtocolError(MALFORMED_PACKET, "the fixed header's remaining length is longer than 4 bytes")

    # --- one packet ---

    def _decode(self, ptype: int, flags: int, body: memoryview) -> Packet:
        level = self.protocol_level
        if level is None and ptype != CONNECT:
            raise MqttProtocolError(PROTOCOL_ERROR, "the first packet on a connection must be CONNECT")
        v5 = level == 5
        r = _Reader(body)
        if ptype == PUBLISH:
            return self._publish(flags, r, v5)
        expected_flags = 0b0010 if ptype in (PUBREL, SUBSCRIBE, UNSUBSCRIBE) else 0
        if ptype == 0:
            raise MqttProtocolError(MALFORMED_PACKET, "packet type 0 is reserved")
        if flags != expected_flags:
            raise MqttProtocolError(MALFORMED_PACKET, f"packet type {ptype} has fixed-header flags {flags:04b}, "
                                                      f"not {expected_flags:04b}")
        if ptype == CONNECT:
            return self._connect(r)
        if ptype == CONNACK:
            ack_flags = r.u8()
            if ack_flags & 0xFE:
                raise MqttProtocolError(MALFORMED_PACKET, "CONNACK reserved flags are set")
            code = r.u8()
            props = _read_properties(r, CONNACK) if v5 and r.remaining else {}
            self._done(r, "CONNACK")
            return Connack(bool(ack_flags & 1), code, props)
        if ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            cls = {PUBACK: Puback, PUBREC: Pubrec, PUBREL: Pubrel, PUBCOMP: Pubcomp}[ptype]
            packet_id = self._packet_id(r, cls.__name__.upper())
            code, props = SUCCESS, {}
            if v5 and r.remaining:
                code = r.u8()
                if r.remaining:
                    props = _read_properties(r, ptype)
            self._done(r, cls.__name__.upper())
            return cls(packet_id, code, props)
        if ptype == SUBSCRIBE:
            return self._subscribe(r, v5)
        if ptype == SUBACK:
            packet_id = self._packet_id(r, "SUBACK")
            props = _read_properties(r, SUBACK) if v5 else {}
            codes = list(r.take(r.remaining))
            if not codes:
                raise MqttProtocolError(PROTOCOL_ERROR, "SUBACK without reason codes")
            return Suback(packet_id, codes, props)
        if ptype == UNSUBSCRIBE:
            packet_id = self._packet_id(r, "UNSUBSCRIBE")
            props = _read_properties(r, UNSUBSCRIBE) if v5 else {}
            filters = []
            while r.remaining:
                filters.append(r.utf8("topic filter"))
            if not filters:
                raise MqttProtocolError(PROTOCOL_ERROR, "UNSUBSCRIBE without topic filters (MQTT-3.10.3-2)")
            return Unsubscribe(packet_id, filters, props)
        if ptype == UNSUBACK:
            packet_id = self._packet_id(r, "UNSUBACK")
            props = _read_properties(r, UNSUBACK) if v5 else {}
            codes = list(r.take(r.remaining)) if v5 else []
            self._done(r, "UNSUBACK")
            return Unsuback(packet_id, codes, props)
        if ptype in (PINGREQ, PINGRESP):
            self._done(r, "PINGREQ" if ptype == PINGREQ else "PINGRESP")
            return Pingreq() if ptype == PINGREQ else Pingresp()
        if ptype == DISCONNECT:
            code, props = SUCCESS, {}
            if v5 and r.remaining:
                code = r.u8()
                if r.remaining:
                    props = _read_properties(r, DISCONNECT)
            self._done(r, "DISCONNECT")
            return Disconnect(code, props)
        # AUTH
        if not v5:
            raise MqttProtocolError(MALFORMED_PACKET, "packet type 15 (AUTH) does not exist before MQTT 5")
        code, props = SUCCESS, {}
        if r.remaining:
            code = r.u8()
            if r.remaining:
                props = _read_properties(r, AUTH)
        self._done(r, "AUTH")
        return Auth(code, props)

    @staticmethod
    def _done(r: _Reader, what: str) -> None:
        if r.remaining:
            raise MqttProtocolError(MALFORMED_PACKET, f"{what} has {r.remaining} unexpected trailing bytes")

    @staticmethod
    def _packet_id(r: _Reader, what: str) -> int:
        packet_id = r.u16()
        if packet_id == 0:
            raise MqttProtocolError(PROTOCOL_ERROR, f"{what} with packet identifier 0 (MQTT-2.3.1-1: "
                                                    "packet identifiers are 1-65535)")
        return packet_id

    def _connect(self, r: _Reader) -> Connect:
        if self.protocol_level is not None:
            raise MqttProtocolError(PROTOCOL_ERROR, "a second CONNECT on the same connection (MQTT-3.1.0-2)")
        name = r.utf8("protocol name")
        level = r.u8()
        if (name, level) not in (("MQIsdp", 3), ("MQTT", 4), ("MQTT", 5)):
            if name not in ("MQTT", "MQIsdp"):
                raise MqttProtocolError(MALFORMED_PACKET, f"CONNECT protocol name {name!r} is not MQTT")
            err = MqttProtocolError(UNSUPPORTED_PROTOCOL_VERSION,
                                    f"CONNECT protocol level {level} ({name}) is not supported: use MQTT 3.1.1 "
                                    "(level 4) or MQTT 5 (level 5)")
            err.protocol_level = level   # type: ignore[attr-defined]
            raise err
        flags = r.u8()
        if flags & 0x01:
            raise MqttProtocolError(MALFORMED_PACKET, "CONNECT reserved flag is set (MQTT-3.1.2-3)")
        keep_alive = r.u16()
        v5 = level == 5
        props = _read_properties(r, CONNECT) if v5 else {}
        client_id = r.utf8("client identifier")
        will = None
        will_flag, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 0x03, bool(flags & 0x20)
        if will_flag:
            if will_qos == 3:
                raise MqttProtocolError(MALFORMED_PACKET, "CONNECT will QoS is 3 (MQTT-3.1.2-14)")
            will_props = _read_properties(r, _WILL) if v5 else {}
            will_topic = r.utf8("will topic")
            will = Will(will_topic, r.binary(), will_qos, will_retain, will_props)
        elif will_qos or will_retain:
            raise MqttProtocolError(MALFORMED_PACKET, "CONNECT will QoS/retain set without the will flag "
                                                      "(MQTT-3.1.2-11, -13, -15)")
        username = r.utf8("user name") if flags & 0x80 else None
        if flags & 0x40:
            if not v5 and not flags & 0x80:
                raise MqttProtocolError(MALFORMED_PACKET, "CONNECT password flag set without the user name flag "
                                                          "(MQTT-3.1.2-22)")
            password: bytes | None = r.binary()
        else:
            password = None
        self._done(r, "CONNECT")
        return Connect(level, client_id, bool(flags & 0x02), keep_alive, username, password, will, props, name)

    def _publish(self, flags: int, r: _Reader, v5: bool) -> Publish:
        qos, retain, dup = (flags >> 1) & 0x03, bool(flags & 0x01), bool(flags & 0x08)
        if qos == 3:
            raise MqttProtocolError(MALFORMED_PACKET, "PUBLISH with QoS 3 (MQTT-3.3.1-4)")
        if dup and qos == 0:
            raise MqttProtocolError(MALFORMED_PACKET, "PUBLISH QoS 0 with the DUP flag set (MQTT-3.3.1-2)")
        topic = r.utf8("topic name")
        packet_id = self._packet_id(r, f"PUBLISH QoS {qos}") if qos else None
        props = _read_properties(r, PUBLISH) if v5 else {}
        return Publish(topic, r.take(r.remaining), qos, retain, dup, packet_id, props)

    def _subscribe(self, r: _Reader, v5: bool) -> Subscribe:
        packet_id = self._packet_id(r, "SUBSCRIBE")
        props = _read_properties(r, SUBSCRIBE) if v5 else {}
        if len(props.get("subscription_identifier", [])) > 1:
            raise MqttProtocolError(PROTOCOL_ERROR, "SUBSCRIBE has more than one subscription identifier")
        subs = []
        while r.remaining:
            topic_filter = r.utf8("topic filter")
            options = r.u8()
            qos = options & 0x03
            if qos == 3:
                raise MqttProtocolError(MALFORMED_PACKET, f"SUBSCRIBE requests QoS 3 for {topic_filter!r}")
            if v5:
                if options & 0xC0:
                    raise MqttProtocolError(MALFORMED_PACKET, "SUBSCRIBE options reserved bits are set")
                handling = (options >> 4) & 0x03
                if handling == 3:
                    raise MqttProtocolError(PROTOCOL_ERROR, "SUBSCRIBE retain handling 3 is a protocol error")
                subs.append(Subscription(topic_filter, qos, bool(options & 0x04), bool(options & 0x08), handling))
            else:
                if options & 0xFC:
                    raise MqttProtocolError(MALFORMED_PACKET, "SUBSCRIBE requested-QoS reserved bits are set "
                                                              "(MQTT-3-8.3-4)")
                subs.append(Subscription(topic_filter, qos))
        if not subs:
            raise MqttProtocolError(PROTOCOL_ERROR, "SUBSCRIBE without topic filters (MQTT-3.8.3-3)")
        return Subscribe(packet_id, subs, props)


# ----------------------------------------------------------------------------- encoder

def _varint(n: int) -> bytes:
    if n < 0 or n > MQTT_MAX_REMAINING:
        raise ValueError(f"{n} does not fit a variable byte integer")
    out = bytearray()
    while True:
        digit, n = n & 0x7F, n >> 7
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return struct.pack("!H", len(b)) + b


def _bin(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError("binary data longer than 65535 bytes")
    return struct.pack("!H", len(b)) + bytes(b)


def encode_properties(props: dict | None) -> bytes:
    """MQTT 5 property block (length prefix included). Unknown names raise ValueError."""
    if not props:
        return b"\x00"
    out = bytearray()
    for name, value in props.items():
        if name not in PROPERTY_IDS:
            raise ValueError(f"unknown MQTT 5 property {name!r}")
        pid, kind = PROPERTY_IDS[name]
        values = value if name in REPEATABLE else [value]
        for v in values:
            out += _varint(pid)
            if kind == _BYTE:
                out.append(int(v))
            elif kind == _U16:
                out += struct.pack("!H", v)
            elif kind == _U32:
                out += struct.pack("!I", v)
            elif kind == _VARINT:
                out += _varint(v)
            elif kind == _UTF8:
                out += _utf8(v)
            elif kind == _BINARY:
                out += _bin(v)
            else:
                out += _utf8(v[0]) + _utf8(v[1])
    return _varint(len(out)) + bytes(out)


def _frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def encode(packet: Packet, protocol_level: int) -> bytes:
    """The bytes of ``packet`` for a connection at ``protocol_level`` (3, 4 or 5)."""
    v5 = protocol_level == 5
    props = (lambda p: encode_properties(p)) if v5 else (lambda p: b"")
    if isinstance(packet, Publish):
        flags = (packet.qos << 1) | int(packet.retain) | (0x08 if packet.dup else 0)
        body = _utf8(packet.topic)
        if packet.qos:
            body += struct.pack("!H", packet.packet_id)
        return _frame((PUBLISH << 4) | flags, body + props(packet.properties) + bytes(packet.payload))
    if isinstance(packet, (Puback, Pubrec, Pubrel, Pubcomp)):
        ptype = {Puback: PUBACK, Pubrec: PUBREC, Pubrel: PUBREL, Pubcomp: PUBCOMP}[type(packet)]
        body = struct.pack("!H", packet.packet_id)
        if v5 and (packet.reason_code or packet.properties):
            body += bytes([packet.reason_code])
            if packet.properties:
                body += encode_properties(packet.properties)
        return _frame((ptype << 4) | (0b0010 if ptype == PUBREL else 0), body)
    if isinstance(packet, Connack):
        body = bytes([int(packet.session_present), packet.reason_code]) + props(packet.properties)
        return _frame(CONNACK << 4, body)
    if isinstance(packet, Suback):
        body = struct.pack("!H", packet.packet_id) + props(packet.properties) + bytes(packet.reason_codes)
        return _frame(SUBACK << 4, body)
    if isinstance(packet, Unsuback):
        body = struct.pack("!H", packet.packet_id)
        if v5:
            body += encode_properties(packet.properties) + bytes(packet.reason_codes)
        return _frame(UNSUBACK << 4, body)
    if isinstance(packet, Pingreq):
        return b"\xc0\x00"
    if isinstance(packet, Pingresp):
        return b"\xd0\x00"
    if isinstance(packet, Disconnect):
        body = b""
        if v5 and (packet.reason_code or packet.properties):
            body = bytes([packet.reason_code]) + (encode_properties(packet.properties) if packet.properties else b"")
        return _frame(DISCONNECT << 4, body)
    if isinstance(packet, Auth):
        if not v5:
            raise ValueError("AUTH exists only in MQTT 5")
        body = b""
        if packet.reason_code or packet.properties:
            body = bytes([packet.reason_code]) + encode_properties(packet.properties)
        return _frame(AUTH << 4, body)
    if isinstance(packet, Connect):
        level = packet.protocol_level
        flags = (0x02 if packet.clean_start else 0)
        payload = _utf8(packet.client_id)
        if packet.will is not None:
            flags |= 0x04 | (packet.will.qos << 3) | (0x20 if packet.will.retain else 0)
            payload += (encode_properties(packet.will.properties) if level == 5 else b"")
            payload += _utf8(packet.will.topic) + _bin(packet.will.payload)
        if packet.username is not None:
            flags |= 0x80
            payload += _utf8(packet.username)
        if packet.password is not None:
            flags |= 0x40
            payload += _bin(packet.password)
        body = _utf8(PROTOCOL_NAMES.get(level, packet.protocol_name)) + bytes([level, flags])
        body += struct.pack("!H", packet.keep_alive)
        body += encode_properties(packet.properties) if level == 5 else b""
        return _frame(CONNECT << 4, body + payload)
    if isinstance(packet, Subscribe):
        body = struct.pack("!H", packet.packet_id) + props(packet.properties)
        for s in packet.subscriptions:
            options = s.qos
            if v5:
                options |= (0x04 if s.no_local else 0) | (0x08 if s.retain_as_published else 0)
                options |= s.retain_handling << 4
            body += _utf8(s.topic_filter) + bytes([options])
        return _frame((SUBSCRIBE << 4) | 0b0010, body)
    if isinstance(packet, Unsubscribe):
        body = struct.pack("!H", packet.packet_id) + props(packet.properties)
        for f in packet.topic_filters:
            body += _utf8(f)
        return _frame((UNSUBSCRIBE << 4) | 0b0010, body)
    raise TypeError(f"cannot encode {type(packet).__name__}")


def publish_size(topic_bytes: int, payload_len: int, props_len: int, qos: int) -> int:
    """Total bytes of a PUBLISH with these parts (``props_len`` including its length prefix)."""
    remaining = 2 + topic_bytes + (2 if qos else 0) + props_len + payload_len
    return 1 + len(_varint(remaining)) + remaining


__all__ = [
    "Auth", "Connack", "Connect", "Decoder", "Disconnect", "MqttProtocolError", "Packet", "Pingreq", "Pingresp",
    "Puback", "Pubcomp", "Publish", "Pubrec", "Pubrel", "Suback", "Subscribe", "Subscription", "Unsuback",
    "Unsubscribe", "Will", "decode_utf8", "encode", "encode_properties",
]
