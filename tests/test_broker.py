"""The sandbox MQTT broker (helpers/sandbox/broker.py) and the test client (subscriber.py).

Real sockets on 127.0.0.1 port 0, real paho-mqtt 2.x clients; every test uses its
own uuid topic prefix, so tests sharing the module's broker cannot see each other.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import struct
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from helpers.sandbox.broker import Broker, BrokerError, Message
from helpers.sandbox.subscriber import SubscribeError, Subscription, subscribe, validate_topic_filter

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def broker():
    with Broker() as b:
        yield b


@pytest.fixture
def base():
    return f"test/{uuid.uuid4().hex}"


def free_port() -> int:
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PahoClient:
    """A connected paho client that records messages and disconnects."""

    def __init__(self, port: int, client_id: str | None = None, ssl_context=None):
        self.messages: list[Message] = []
        self.connected, self.disconnected, self.subscribed = threading.Event(), threading.Event(), threading.Event()
        self.granted: list = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or uuid.uuid4().hex,
                        protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if ssl_context is not None:
            c.tls_set_context(ssl_context)
        c.on_connect = lambda *a: self.connected.set()
        c.on_disconnect = lambda *a: self.disconnected.set()
        c.on_message = lambda cl, u, m: self.messages.append(Message(m.topic, m.payload, m.qos, m.retain))

        def on_subscribe(cl, u, mid, codes, props):
            self.granted = list(codes)
            self.subscribed.set()
        c.on_subscribe = on_subscribe
        c.connect(HOST, port)
        c.loop_start()
        assert self.connected.wait(5)
        self.client = c

    def subscribe(self, topic_filter: str, qos: int = 1) -> list:
        self.subscribed.clear()
        self.client.subscribe(topic_filter, qos)
        assert self.subscribed.wait(5)
        return self.granted

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def in_thread(fn, *args):
    t = threading.Thread(target=fn, args=args)
    t.start()
    t.join(10)
    assert not t.is_alive()


# --- delivery -----------------------------------------------------------------

def test_publish_from_another_thread_is_delivered_byte_exact(broker, base):
    payloads = [b"hello", "température 21°C".encode(), b"\x00\xff", bytes(range(256)), b""]
    with Subscription(HOST, broker.port, f"{base}/#") as sub:
        in_thread(lambda: [broker.publish(f"{base}/p{i}", p) for i, p in enumerate(payloads)])
        got = sub.wait_for(len(payloads), timeout=5)
    assert [m.payload for m in got] == payloads
    assert [m.topic for m in got] == [f"{base}/p{i}" for i in range(len(payloads))]
    assert all(m.qos == 0 and m.retain is False for m in got)


def test_publish_without_waiting_keeps_order_and_loses_nothing(broker, base):
    with Subscription(HOST, broker.port, f"{base}/#", qos=1) as sub:
        in_thread(lambda: [broker.publish(f"{base}/n", b"%d" % i, qos=1, wait=False) for i in range(300)])
        got = sub.wait_for(300, timeout=10)
    assert [m.payload for m in got] == [b"%d" % i for i in range(300)]


def test_qos1_delivery_and_qos_is_the_minimum_of_published_and_granted(broker, base):
    q1 = Subscription(HOST, broker.port, f"{base}/t", qos=1).start()
    q0 = Subscription(HOST, broker.port, f"{base}/t", qos=0).start()
    publisher = PahoClient(broker.port)
    try:
        info = publisher.client.publish(f"{base}/t", b"one", qos=1)
        info.wait_for_publish(5)
        assert info.is_published()   # the broker sent PUBACK
        publisher.client.publish(f"{base}/t", b"zero", qos=0).wait_for_publish(5)
        assert [(m.payload, m.qos) for m in q1.wait_for(2)] == [(b"one", 1), (b"zero", 0)]
        assert [(m.payload, m.qos) for m in q0.wait_for(2)] == [(b"one", 0), (b"zero", 0)]
    finally:
        for c in (q1, q0, publisher):
            c.close() if isinstance(c, PahoClient) else c.stop()


def test_wildcards_match_and_non_matching_topics_are_not_delivered(broker, base):
    plus = Subscription(HOST, broker.port, f"{base}/+/temp").start()
    hash_ = Subscription(HOST, broker.port, f"{base}/dev/#").start()
    try:
        for topic in (f"{base}/a/temp", f"{base}/a/b/temp", f"{base}/a/hum", f"{base}/dev",
                      f"{base}/dev/1/x", f"{base}/other", f"{base}x/a/temp"):
            broker.publish(topic, topic.encode())
        broker.publish(f"{base}/dev/end", b"end")     # sentinels: delivery is in order per client
        broker.publish(f"{base}/end/temp", b"end")
        assert [m.topic for m in plus.wait_for(2)] == [f"{base}/a/temp", f"{base}/end/temp"]
        assert [m.topic for m in hash_.wait_for(3)] == [f"{base}/dev", f"{base}/dev/1/x", f"{base}/dev/end"]
        time.sleep(0.1)
        assert len(plus.messages) == 2 and len(hash_.messages) == 3
    finally:
        plus.stop()
        hash_.stop()


def test_overlapping_filters_deliver_one_copy(broker, base):
    c = PahoClient(broker.port)
    try:
        c.subscribe(f"{base}/#", 0)
        c.subscribe(f"{base}/+", 1)
        broker.publish(f"{base}/x", b"once", qos=1)
        broker.publish(f"{base}/y/z", b"end", qos=1)
        deadline = time.monotonic() + 5
        while len(c.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [(m.payload, m.qos) for m in c.messages] == [(b"once", 1), (b"end", 0)]
    finally:
        c.close()


def test_invalid_filter_gets_suback_failure_from_the_broker(broker, base):
    # paho refuses such filters client-side, so speak MQTT by hand
    raw = socket.create_connection((HOST, broker.port), timeout=5)
    try:
        raw.sendall(_connect_packet(uuid.uuid4().hex))
        assert raw.recv(4) == b"\x20\x02\x00\x00"                      # CONNACK accepted
        filters = [(f"{base}/#/x", 1), (f"{base}/ok", 1), (f"{base}/a+", 0)]
        body = struct.pack("!H", 7) + b"".join(_s(f.encode()) + bytes([q]) for f, q in filters)
        raw.sendall(_fixed(0x82, body))
        assert raw.recv(7) == b"\x90\x05\x00\x07\x80\x01\x80"          # SUBACK: fail, QoS 1, fail
    finally:
        raw.close()


# --- retained messages ----------------------------------------------------------

def test_retained_message_reaches_late_subscriber_and_empty_payload_clears_it(broker, base):
    topic = f"{base}/state"
    with Subscription(HOST, broker.port, topic) as early:
        broker.publish(topic, b"\x01retained", qos=1, retain=True)
        [live] = early.wait_for(1)
        assert (live.payload, live.retain) == (b"\x01retained", False)   # live copies: RETAIN 0 (§3.3.1.3)

        with Subscription(HOST, broker.port, f"{base}/+") as late:
            [old] = late.wait_for(1)
            assert (old.topic, old.payload, old.qos, old.retain) == (topic, b"\x01retained", 1, True)

        broker.publish(topic, b"", retain=True)              # clears it, and is delivered as usual
        assert [m.payload for m in early.wait_for(2)] == [b"\x01retained", b""]

    with Subscription(HOST, broker.port, topic) as after:
        broker.publish(topic, b"sentinel")
        assert [m.payload for m in after.wait_for(1)] == [b"sentinel"]
    assert topic not in broker.retained()


def test_retained_from_an_mqtt_client_and_cleared_by_one(broker, base):
    topic = f"{base}/r"
    publisher = PahoClient(broker.port)
    try:
        publisher.client.publish(topic, b"kept", qos=1, retain=True).wait_for_publish(5)
        assert subscribe(HOST, broker.port, topic, count=1, timeout=5)[0].retain is True
        publisher.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        assert subscribe(HOST, broker.port, topic, timeout=0.3) == []
    finally:
        publisher.close()


# --- subscribe() and Subscription ---------------------------------------------

def test_subscribe_returns_after_count_messages(broker, base):
    ready, result, seen = threading.Event(), [], []
    t = threading.Thread(target=lambda: result.extend(
        subscribe(HOST, broker.port, f"{base}/+", count=3, timeout=10, on_message=seen.append, ready=ready)))
    t.start()
    assert ready.wait(5)
    for i in range(5):
        broker.publish(f"{base}/{i}", str(i).encode(), qos=1)
    t.join(10)
    assert not t.is_alive()
    assert [m.payload for m in result] == [b"0", b"1", b"2"]
    assert [m.payload for m in seen[:3]] == [b"0", b"1", b"2"]


def test_subscribe_returns_after_timeout(broker, base):
    start = time.monotonic()
    assert subscribe(HOST, broker.port, f"{base}/#", count=5, timeout=0.3) == []
    assert 0.3 <= time.monotonic() - start < 3


def test_wait_for_times_out_with_a_clear_error(broker, base):
    with Subscription(HOST, broker.port, f"{base}/x") as sub:
        broker.publish(f"{base}/x", b"only one")
        with pytest.raises(TimeoutError, match=r"received 1 of 2 message\(s\)"):
            sub.wait_for(2, timeout=0.3)
        assert [m.payload for m in sub.messages] == [b"only one"]


def test_on_message_error_is_raised_to_the_waiting_thread(broker, base):
    def boom(msg):
        raise RuntimeError(f"handler failed on {msg.topic}")
    with Subscription(HOST, broker.port, f"{base}/x", on_message=boom) as sub:
        broker.publish(f"{base}/x", b"1")
        with pytest.raises(RuntimeError, match="handler failed"):
            sub.wait_for(2, timeout=5)


def test_subscribe_error_when_nothing_listens():
    port = free_port()
    with pytest.raises(SubscribeError, match=rf"no MQTT broker at 127\.0\.0\.1:{port}: is the sandbox "
                                             r"running\? python -m helpers\.sandbox start"):
        subscribe(HOST, port, "a/b", timeout=1)


@pytest.mark.parametrize("bad, why", [
    ("", "must not be empty"),
    ("a/#/b", "'#' must be a whole level and the last one"),
    ("a/b#", "'#' must be a whole level"),
    ("a/b+/c", r"'\+' must be a whole level"),
    ("x" * 257, "longer than 256 bytes"),
    ("é" * 129, "longer than 256 bytes"),
])
def test_validate_topic_filter_rejects(bad, why):
    with pytest.raises(ValueError, match=why):
        validate_topic_filter(bad)
    with pytest.raises(ValueError, match=why):   # before any connection is attempted
        Subscription(HOST, free_port(), bad)


@pytest.mark.parametrize("good", ["#", "+", "a/+/c", "a/#", "+/+", "a//b", "x" * 256, "$aws/things/t/shadow/#"])
def test_validate_topic_filter_accepts(good):
    validate_topic_filter(good)


def test_subscription_rejects_qos_2():
    with pytest.raises(ValueError, match="qos must be 0 or 1"):
        Subscription(HOST, free_port(), "a", qos=2)


# --- JSON lines -------------------------------------------------------------------

def test_json_line_utf8_and_base64():
    text = json.loads(Message("a/b", "héllo".encode(), 1, True).to_json_line())
    assert text == {"topic": "a/b", "qos": 1, "retain": True, "payload": "héllo", "payloadEncoding": "utf-8"}
    binary_line = Message("a/b", b"\x00\xff", 0, False).to_json_line()
    assert "\n" not in binary_line
    assert json.loads(binary_line) == {"topic": "a/b", "qos": 0, "retain": False, "payload": "AP8=",
                                       "payloadEncoding": "base64"}
    for m in (Message("a", b"\x00\xff", 0, False), Message("a", "é\n".encode(), 1, True)):
        assert Message.from_json_line(m.to_json_line()) == m


# --- lifecycle, errors, load ------------------------------------------------------

def test_port_in_use_is_a_clear_error():
    holder = socket.socket()
    holder.bind((HOST, 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(BrokerError, match=rf"port {port} on 127\.0\.0\.1 is already in use"):
            Broker(port=port).start()
    finally:
        holder.close()


def test_start_and_stop_are_fast_and_stop_closes_clients():
    b = Broker()
    t0 = time.monotonic()
    port = b.start()
    assert port == b.port and port > 0
    assert time.monotonic() - t0 < 1
    client = PahoClient(port)
    sub = Subscription(HOST, port, "a/#").start()
    try:
        t0 = time.monotonic()
        b.stop()
        assert time.monotonic() - t0 < 1
        assert client.disconnected.wait(2)
        with pytest.raises(SubscribeError, match="lost the connection"):
            sub.wait_for(1, timeout=2)
        b.stop()                                             # harmless
        with pytest.raises(BrokerError, match="not running"):
            b.publish("a/b", b"x")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, port), timeout=1).close()
    finally:
        client.close()
        sub.stop()


def test_restart_on_the_same_port():
    b = Broker()
    port = b.start()
    b.stop()
    with Broker(port=port) as again:
        assert again.port == port
        assert subscribe(HOST, port, "a", timeout=0.1) == []


def test_200_messages_from_4_threads_all_arrive_and_stats_agree(base):
    with Broker() as b, Subscription(HOST, b.port, f"{base}/load/+") as sub:
        before = b.stats()

        def worker(i: int):
            for j in range(50):
                b.publish(f"{base}/load/{i}", f"{i}-{j}".encode(), qos=1)
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        got = sub.wait_for(200, timeout=10)
        assert sorted(m.payload for m in got) == sorted(f"{i}-{j}".encode() for i in range(4) for j in range(50))
        for i in range(4):   # per-publisher order is kept
            assert [m.payload for m in got if m.topic.endswith(f"/{i}")] == [f"{i}-{j}".encode() for j in range(50)]
        deadline = time.monotonic() + 5
        while b.stats()["acked"] - before["acked"] < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        after = b.stats()
        assert after["published"] - before["published"] == 200
        assert after["delivered"] - before["delivered"] == 200
        assert after["acked"] - before["acked"] == 200


# --- protocol details (AWS-like choices) -------------------------------------------

def test_duplicate_client_id_disconnects_the_older_connection(broker):
    cid = f"dup-{uuid.uuid4().hex[:8]}"
    first = PahoClient(broker.port, client_id=cid)
    second = PahoClient(broker.port, client_id=cid)
    try:
        assert first.disconnected.wait(3)
        assert not second.disconnected.is_set()
    finally:
        first.close()
        second.close()


def test_qos2_publish_is_refused_by_disconnecting(broker, base):
    c = PahoClient(broker.port)
    try:
        c.client.publish(f"{base}/q2", b"x", qos=2)
        assert c.disconnected.wait(3)
    finally:
        c.close()


def _s(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def _fixed(first_byte: int, body: bytes) -> bytes:
    assert len(body) < 16384
    length = bytes([len(body)]) if len(body) < 128 else bytes([0x80 | len(body) % 128, len(body) // 128])
    return bytes([first_byte]) + length + body


def _connect_packet(client_id: str, will_topic: str | None = None, will_payload: bytes = b"",
                    keepalive: int = 60) -> bytes:
    flags = 0x02 | (0x04 if will_topic is not None else 0)
    body = _s(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _s(client_id.encode())
    if will_topic is not None:
        body += _s(will_topic.encode()) + _s(will_payload)
    return _fixed(0x10, body)


def test_will_message_is_published_when_a_client_vanishes(broker, base):
    with Subscription(HOST, broker.port, f"{base}/will") as sub:
        raw = socket.create_connection((HOST, broker.port), timeout=5)
        raw.sendall(_connect_packet("will-client", f"{base}/will", b"gone"))
        assert raw.recv(4) == b"\x20\x02\x00\x00"        # CONNACK accepted
        raw.close()                                      # no DISCONNECT: the will is sent
        [m] = sub.wait_for(1)
        assert (m.topic, m.payload) == (f"{base}/will", b"gone")


def test_authenticate_hook_refuses_connection(base):
    seen = []

    def auth(client_id, username, password):
        seen.append((username, password))
        return password == b"right"
    with Broker(authenticate=auth) as b:
        with pytest.raises(SubscribeError, match="refused the connection: Not authorized"):
            subscribe(HOST, b.port, f"{base}/x", timeout=1)
        assert seen == [(None, None)]


def test_tls_when_given_an_ssl_context(tmp_path, base):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandbox test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))

    with Broker(ssl_context=server_ctx) as b:
        with Subscription(HOST, b.port, f"{base}/tls", ssl_context=client_ctx) as sub:
            b.publish(f"{base}/tls", b"\x00secret\xff")
            assert sub.wait_for(1)[0].payload == b"\x00secret\xff"
        with pytest.raises(SubscribeError, match="does it expect TLS"):   # plain TCP to a TLS listener
            subscribe(HOST, b.port, f"{base}/tls", timeout=0.5)


def test_subscription_refused_by_the_broker_is_a_clear_error(broker, base, monkeypatch):
    import helpers.sandbox.broker as broker_module
    monkeypatch.setattr(broker_module, "topic_filter_error",
                        lambda f: "denied" if f.endswith("/denied") else None)
    start = time.monotonic()
    with pytest.raises(SubscribeError, match=rf"refused the subscription to '{base}/denied'"):
        subscribe(HOST, broker.port, f"{base}/denied", timeout=1)
    assert time.monotonic() - start < 2


def test_no_threads_left_behind():
    before = set(threading.enumerate())
    with Broker() as b, Subscription(HOST, b.port, "a/b") as sub:
        b.publish("a/b", b"x")
        sub.wait_for(1)
    deadline = time.monotonic() + 2
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()


def test_payload_limit_is_128_kb_like_aws(broker, base):
    with Subscription(HOST, broker.port, f"{base}/big") as sub:
        c = PahoClient(broker.port)
        try:
            c.client.publish(f"{base}/big", b"\xab" * 128 * 1024, qos=1).wait_for_publish(5)
            assert sub.wait_for(1)[0].payload == b"\xab" * 128 * 1024
            c.client.publish(f"{base}/big", b"x" * (128 * 1024 + 1), qos=1)
            assert c.disconnected.wait(3)                  # AWS: "rejects publish ... larger than this size"
            assert len(sub.messages) == 1
        finally:
            c.close()


def test_silent_client_is_dropped_after_one_and_a_half_keepalives(broker):
    raw = socket.create_connection((HOST, broker.port), timeout=5)
    try:
        raw.sendall(_connect_packet(uuid.uuid4().hex, keepalive=1))
        assert raw.recv(4) == b"\x20\x02\x00\x00"
        start = time.monotonic()
        assert raw.recv(1) == b""                          # the broker closed the connection
        assert 1.3 < time.monotonic() - start < 3
    finally:
        raw.close()
