"""helpers/sandbox/mqtt/codec.py from byte strings: the specifications' examples, round trips, refusals."""
from __future__ import annotations

import pytest

from helpers.sandbox.mqtt import codec as c
from helpers.sandbox.mqtt.codec import Decoder, MqttProtocolError, encode


def decode_all(data: bytes, level: int | None = None, max_packet_size: int = 1 << 20) -> list:
    return Decoder(max_packet_size, protocol_level=level).feed(data)


# MQTT 3.1.1 §2.2.3 table 2.4 / MQTT 5 §1.5.5 table 1-1: Remaining Length / Variable Byte Integer.
VARINT_EXAMPLES = [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"),
                   (2097151, "ffff7f"), (2097152, "80808001"), (268435455, "ffffff7f")]


@pytest.mark.parametrize("value,hexed", VARINT_EXAMPLES)
def test_variable_byte_integer_spec_examples(value, hexed):
    assert c._varint(value).hex() == hexed
    assert c._Reader(bytes.fromhex(hexed)).varint() == value


def test_utf8_spec_example():
    # MQTT 3.1.1 §1.5.3.1 figure 1.3: "A\U0002A6D4" is 00 05 41 F0 AA 9B 94
    assert c._utf8("A\U0002A6D4").hex() == "000541f0aa9b94"
    assert c._Reader(bytes.fromhex("000541f0aa9b94")).utf8() == "A\U0002A6D4"


@pytest.mark.parametrize("raw", [b"\x00\x01\x00", b"\x00\x03\xed\xa0\x80", b"\x00\x01\xff"])
def test_utf8_null_surrogate_invalid_refused(raw):
    with pytest.raises(MqttProtocolError) as err:
        c._Reader(raw).utf8()
    assert err.value.reason_code == c.MALFORMED_PACKET


def test_connect_311_spec_variable_header():
    # §3.1.2.10 figure 3.6 variable header: 00 04 'MQTT' 04 CE 00 0A (user, password, will retain 0, QoS 1, will, clean)
    body = bytes.fromhex("00044d51545404ce000a") + c._utf8("cid") + c._utf8("w/t") + c._bin(b"bye") \
        + c._utf8("user") + c._bin(b"pw")
    packet = bytes([0x10, len(body)]) + body
    [connect] = decode_all(packet)
    assert connect == c.Connect(4, "cid", True, 10, "user", b"pw", c.Will("w/t", b"bye", 1, False), {}, "MQTT")
    assert encode(connect, 4) == packet


def test_connect_31_mqisdp():
    connect = c.Connect(3, "old", True, 30, None, None, None, {}, "MQIsdp")
    raw = encode(connect, 3)
    assert raw[2:10] == b"\x00\x06MQIsdp"
    assert decode_all(raw) == [connect]


def test_connect_5_with_properties_and_will_properties():
    will = c.Will("w", b"x", 0, True, {"will_delay_interval": 5, "user_property": [("a", "b")]})
    connect = c.Connect(5, "dev", False, 60, "u?x=1", b"\x00\xff", will,
                        {"session_expiry_interval": 3600, "receive_maximum": 20, "maximum_packet_size": 4096,
                         "topic_alias_maximum": 2, "user_property": [("k", "v")]})
    raw = encode(connect, 5)
    d = Decoder(1024)
    assert d.feed(raw) == [connect] and d.protocol_level == 5


def test_incremental_feed_any_split():
    packets = [c.Connect(5, "c", True, 60), c.Publish("a/b", b"p" * 300, 1, True, False, 9, {"content_type": "x"}),
               c.Subscribe(2, [c.Subscription("a/#", 1, True, True, 2)]), c.Pingreq(), c.Disconnect(0x04)]
    raw = b"".join(encode(p, 5) for p in packets)
    for step in (1, 2, 3, 7, 64):
        d = Decoder(4096)
        out = []
        for i in range(0, len(raw), step):
            out += d.feed(raw[i:i + step])
        assert out == packets
        assert d.pending == 0


def test_pending_counts_half_sent_packet():
    d = Decoder(1024, protocol_level=4)
    assert d.feed(b"\x30") == [] and d.pending == 1


@pytest.mark.parametrize("packet,level,hexed", [
    (c.Connack(False, 0), 4, "20020000"),
    (c.Connack(True, 0), 4, "20020100"),
    (c.Connack(False, 5), 4, "20020005"),
    (c.Connack(False, 0x87), 5, "2003008700"),
    (c.Puback(1), 4, "40020001"),
    (c.Puback(1), 5, "40020001"),                  # MQTT 5 §3.4.2.1: reason 0, no properties may be omitted
    (c.Puback(1, 0x87), 5, "4003000187"),
    (c.Suback(10, [0, 1, 0x80]), 4, "9005000a000180"),
    (c.Suback(10, [1, 0x87]), 5, "9005000a000187"),
    (c.Unsuback(3), 4, "b0020003"),
    (c.Unsuback(3, [0, 0x11]), 5, "b00500030000" + "11"),
    (c.Pingresp(), 4, "d000"),
    (c.Disconnect(), 5, "e000"),
    (c.Disconnect(0x8E), 5, "e0018e"),
    (c.Publish("a/b", b"hi", 0), 4, "3007" + "0003612f62" + "6869"),
    (c.Publish("a/b", b"hi", 1, True, True, 10), 4, "3b09" + "0003612f62" + "000a" + "6869"),
    (c.Publish("a/b", b"hi", 0), 5, "3008" + "0003612f62" + "00" + "6869"),
])
def test_encode_bytes(packet, level, hexed):
    assert encode(packet, level).hex() == hexed
    if not isinstance(packet, (c.Connack, c.Suback, c.Unsuback, c.Pingresp)):
        assert decode_all(bytes.fromhex(hexed), level) == [packet]


def test_server_packets_decode_client_side():
    for packet, level in [(c.Connack(False, 0x86, {"reason_string": "bad"}), 5), (c.Suback(1, [0x80]), 4),
                          (c.Unsuback(2, [0x11]), 5), (c.Pingresp(), 4)]:
        assert decode_all(encode(packet, level), level) == [packet]


def test_properties_dropped_for_311():
    p = c.Publish("t", b"x", 0, properties={"user_property": [("a", "b")]})
    assert encode(p, 4) == encode(c.Publish("t", b"x"), 4)


def test_unknown_level_is_0x84_with_level():
    with pytest.raises(MqttProtocolError) as err:
        decode_all(bytes.fromhex("100c00044d5154540602003c0000"))
    assert err.value.reason_code == c.UNSUPPORTED_PROTOCOL_VERSION and err.value.protocol_level == 6


@pytest.mark.parametrize("hexed,code,why", [
    ("100c00044d5154540403003c0000", c.MALFORMED_PACKET, "reserved flag"),
    ("100c00045851545404020003c000", c.MALFORMED_PACKET, "protocol name"),
    ("100c00044d5154540422003c0000", c.MALFORMED_PACKET, "will retain without will"),
    ("100c00044d5154540442003c0000", c.MALFORMED_PACKET, "password without user name"),
    ("20020000", c.PROTOCOL_ERROR, "CONNACK first"),
    ("11", None, "incomplete: no error"),
])
def test_connect_refusals(hexed, code, why):
    if code is None:
        assert decode_all(bytes.fromhex(hexed)) == []
        return
    with pytest.raises(MqttProtocolError) as err:
        decode_all(bytes.fromhex(hexed))
    assert err.value.reason_code == code, why


@pytest.mark.parametrize("hexed,code", [
    ("3603000161", c.MALFORMED_PACKET),                 # QoS 3
    ("3803000161", c.MALFORMED_PACKET),                 # DUP on QoS 0
    ("3205000161" + "0000", c.PROTOCOL_ERROR),          # QoS 1 packet id 0 (MQTT-2.3.1-1)
    ("8006000100017400", c.MALFORMED_PACKET),           # SUBSCRIBE flags 0000
    ("8206000000017400", c.PROTOCOL_ERROR),             # SUBSCRIBE packet id 0
    ("82020001", c.PROTOCOL_ERROR),                     # SUBSCRIBE without filters
    ("8206000100017404", c.MALFORMED_PACKET),           # 3.1.1 SUBSCRIBE reserved option bits
    ("a2020001", c.PROTOCOL_ERROR),                     # UNSUBSCRIBE without filters
    ("c001", c.MALFORMED_PACKET),                       # PINGREQ with a body (truncated check)
    ("e100", c.MALFORMED_PACKET),                       # DISCONNECT flags
    ("f000", c.MALFORMED_PACKET),                       # AUTH in 3.1.1
    ("30ffffffff01", c.MALFORMED_PACKET),               # 5-byte remaining length
    ("0000", c.MALFORMED_PACKET),                       # type 0
])
def test_packet_refusals_311(hexed, code):
    d = Decoder(1 << 20, protocol_level=4)
    with pytest.raises(MqttProtocolError) as err:
        d.feed(bytes.fromhex(hexed) + b"\x00" * 4)
    assert err.value.reason_code == code


@pytest.mark.parametrize("props,code", [
    (bytes([0x05, 0x7F, 0, 0, 0, 0]), c.MALFORMED_PACKET),        # unknown property id
    (bytes([0x03, 0x21, 0, 1]), c.MALFORMED_PACKET),              # receive_maximum is not a PUBLISH property
    (bytes([0x04, 0x23, 0, 1, 0x23]), c.MALFORMED_PACKET),        # truncated repeat
    (bytes([0x06, 0x23, 0, 1, 0x23, 0, 2]), c.PROTOCOL_ERROR),    # topic_alias twice
    (bytes([0x02, 0x01, 0x02]), c.PROTOCOL_ERROR),                # payload_format_indicator 2
    (bytes([0x09, 0x01]), c.MALFORMED_PACKET),                    # property length past the end
])
def test_mqtt5_property_refusals(props, code):
    body = c._utf8("t") + props
    with pytest.raises(MqttProtocolError) as err:
        decode_all(bytes([0x30, len(body)]) + body, 5)
    assert err.value.reason_code == code


def test_max_packet_size_refused_from_fixed_header():
    d = Decoder(100, protocol_level=4)
    with pytest.raises(MqttProtocolError) as err:
        d.feed(b"\x30\x65")                  # 101 bytes announced; nothing of the body sent yet
    assert err.value.reason_code == c.PACKET_TOO_LARGE


def test_second_connect_is_protocol_error():
    d = Decoder(1024)
    raw = encode(c.Connect(4, "a", True, 60), 4)
    d.feed(raw)
    with pytest.raises(MqttProtocolError) as err:
        d.feed(raw)
    assert err.value.reason_code == c.PROTOCOL_ERROR


def test_mqtt5_subscribe_options_roundtrip_and_retain_handling_3():
    s = c.Subscribe(4, [c.Subscription("a", 1, True, False, 1), c.Subscription("b", 0)],
                    {"user_property": [("x", "y")]})
    assert decode_all(encode(s, 5), 5) == [s]
    with pytest.raises(MqttProtocolError):
        decode_all(bytes.fromhex("8207" + "0004" + "00" + "000161" + "30"), 5)
