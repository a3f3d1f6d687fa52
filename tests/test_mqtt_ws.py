"""MQTT over WebSocket with SigV4: helpers/mqtt.py (client) against the sandbox's /mqtt (dataplane.py, gateway.py).

A real sandbox process per module (conftest's ``settings``); messages are published
with boto3's iot-data client (SigV4 HTTPS publish, as on AWS) and must arrive,
byte for byte, over the WebSocket.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import json
import os
import socket
import ssl
import struct
import time
import uuid
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from helpers import mqtt
from helpers.sandbox import sigv4

NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: AWSIotLogsV2 entries are asserted here, and AWS IoT logs nothing until logging is on.
pytestmark = pytest.mark.usefixtures("iot_logging")


# --- helpers ---------------------------------------------------------------------------------------------

def creds(settings, secret=None):
    return Credentials(settings.access_key_id, secret or settings.secret_access_key)


def publish_sigv4(settings, topic: str, payload: bytes, qos: int = 1) -> None:
    """Publish with boto3's iot-data client: SigV4-signed HTTPS publish on the data endpoint."""
    settings.client("iot-data").publish(topic=topic, qos=qos, payload=payload)


def frame(opcode: int, payload: bytes = b"", *, mask: bytes | None = None, fin: bool = True) -> bytes:
    """One WebSocket frame, built by hand so tests can also send the malformed ones (RFC 6455 section 5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def mqtt_connect_packet(client_id: str) -> bytes:
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(client_id)) + client_id.encode()
    return bytes([0x10, len(body)]) + body


def mqtt_publish_packet(topic: str, payload: bytes) -> bytes:
    body = struct.pack("!H", len(topic.encode())) + topic.encode() + payload
    n, length = len(body), b""
    while True:  # MQTT's variable-length "remaining length"
        n, digit = divmod(n, 128)
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            return b"\x30" + length + body


class RawWs:
    """A minimal WebSocket client over TLS, to send frames paho never would."""

    def __init__(self, settings, path: str | None = None, headers: dict | None = None):
        host, port = settings.data_endpoint.split(":")
        self.key = base64.b64encode(os.urandom(16)).decode()
        path = path or mqtt.presigned_url(settings.data_endpoint, settings.region, creds(settings)).split(
            settings.data_endpoint, 1)[1]
        hdrs = {"Host": settings.data_endpoint, "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": self.key, "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "mqtt"}
        hdrs.update(headers or {})
        ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
        self.sock = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=5), server_hostname=host)
        head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items() if v is not None)
        self.sock.sendall((head + "\r\n").encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = self.sock.recv(1)
            assert chunk, f"connection closed during the handshake: {raw!r}"
            raw += chunk
        lines = raw.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        self.sock.sendall(frame(opcode, payload, mask=os.urandom(4), fin=fin))

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError(f"connection closed after {len(out)} of {n} bytes")
            out += chunk
        return out

    def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = self._exact(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8))[0]
        return b0 & 0x0F, self._exact(n)

    def close(self) -> None:
        self.sock.close()


def https_get(settings, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    host, port = settings.data_endpoint.split(":")
    conn = http.client.HTTPSConnection(host, int(port), timeout=5,
                                       context=ssl.create_default_context(cafile=str(settings.ca_bundle)))
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read() if resp.status != 101 else b""
    finally:
        conn.close()


def upgrade_headers() -> dict:
    return {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Protocol": "mqtt"}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


# --- presigned URL (no sandbox needed) -------------------------------------------------------------------

def test_presigned_url_shape_and_session_token_appended_after_signing():
    url = mqtt.presigned_url("abc-ats.iot.us-west-2.amazonaws.com", "us-west-2",
                             Credentials("AKIDEXAMPLE", "secret", "tok/en+=="), now=NOW)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "abc-ats.iot.us-west-2.amazonaws.com", "/mqtt")
    params = parse_qsl(parts.query)
    assert [k for k, _ in params] == ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders",
                                      "X-Amz-Signature", "X-Amz-Security-Token"]
    assert "X-Amz-Credential=AKIDEXAMPLE%2F20240506%2Fus-west-2%2Fiotdevicegateway%2Faws4_request" in parts.query
    assert dict(params)["X-Amz-Date"] == "20240506T070809Z"
    assert parts.query.endswith("&X-Amz-Security-Token=tok%2Fen%2B%3D%3D")
    # The token is not signed, but it is checked: the URL verifies for temporary credentials with that token,
    # not with another token, not without one, and a long-term key never comes with one.
    temporary = sigv4.Credential("AKIDEXAMPLE", "secret", session_token="tok/en+==")
    verify = dict(method="GET", raw_path="/mqtt", headers={"host": "abc-ats.iot.us-west-2.amazonaws.com"},
                  credentials={"AKIDEXAMPLE": temporary}, service="iotdevicegateway", now=NOW)
    assert sigv4.verify_presigned(raw_query=parts.query, **verify).region == "us-west-2"
    no_token = parts.query.rsplit("&X-Amz-Security-Token=", 1)[0]
    for query in (no_token + "&X-Amz-Security-Token=other", no_token):
        with pytest.raises(sigv4.SignatureError, match="security token included in the request is invalid"):
            sigv4.verify_presigned(raw_query=query, **verify)
    with pytest.raises(sigv4.SignatureError, match="security token included in the request is invalid"):
        sigv4.verify_presigned(raw_query=parts.query, **{**verify, "credentials": {"AKIDEXAMPLE": "secret"}})
    # ... and the host is signed: another host does not verify.
    with pytest.raises(sigv4.SignatureError):
        sigv4.verify_presigned(raw_query=parts.query, **{**verify, "headers": {"host": "evil.example.com"}})


def test_presigned_url_equals_botocore_sigv4_query_auth_without_token():
    """Without a session token, the hand-built URL is exactly botocore's SigV4 presigned URL."""
    expires = 86400
    ours = mqtt.presigned_url("localhost:4321", "us-west-2", Credentials("AKID", "SECRET"), now=NOW,
                              expires=expires)
    request = AWSRequest("GET", "https://localhost:4321/mqtt")
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4QueryAuth(Credentials("AKID", "SECRET"), "iotdevicegateway", "us-west-2", expires=expires).add_auth(request)
    assert urlsplit(ours).query == urlsplit(request.url).query
    assert urlsplit(ours).netloc == "localhost:4321"


def test_presigned_expiry_window():
    url = mqtt.presigned_url("h:1", "us-west-2", ("AK", "SK"), now=NOW, expires=60)
    kw = dict(method="GET", raw_path="/mqtt", raw_query=urlsplit(url).query, headers={"host": "h:1"},
              credentials={"AK": "SK"}, service="iotdevicegateway")
    assert sigv4.verify_presigned(now=NOW + dt.timedelta(seconds=59), **kw)
    with pytest.raises(sigv4.SignatureError, match="expired"):
        sigv4.verify_presigned(now=NOW + dt.timedelta(seconds=61), **kw)
    with pytest.raises(sigv4.SignatureError, match="Signature not yet current"):
        sigv4.verify_presigned(now=NOW - dt.timedelta(minutes=16), **kw)


def test_invalid_topic_filter_is_a_clear_error():
    with pytest.raises(mqtt.MqttError, match="'#' must be a whole level and the last one"):
        mqtt.MqttWatch("localhost:1", "us-west-2", ("AK", "SK"), "a/#/b")


def test_session_without_credentials_is_a_clear_error():
    session = mock.Mock(region_name="us-west-2")
    session.get_credentials.return_value = None
    with pytest.raises(mqtt.MqttConnectionError, match="no credentials"):
        mqtt.watch_from_session(session, "localhost:1", "a/#")


# --- against the sandbox ---------------------------------------------------------------------------------

def test_watch_receives_messages_byte_exact(settings):
    topic = f"ws/{uuid.uuid4().hex[:8]}"
    seen = []
    payloads = [b'{"temperature": 21.5}', bytes(range(256)), os.urandom(100 * 1024)]
    with mqtt.watch_from_session(settings.session(), settings.data_endpoint, f"{topic}/#",
                                 ca_bundle=settings.ca_bundle, on_message=seen.append) as watch:
        for i, payload in enumerate(payloads):
            publish_sigv4(settings, f"{topic}/{i}", payload)
        got = watch.wait_for(3, timeout=10)
    assert [(m.topic, m.payload) for m in got] == [(f"{topic}/{i}", p) for i, p in enumerate(payloads)]
    assert all(m.qos == 1 and not m.retain for m in got)
    assert seen == got
    assert json.loads(got[1].to_json_line())["payloadEncoding"] == "base64"


def test_wait_for_times_out_with_a_clear_error(settings):
    with mqtt.MqttWatch(settings.data_endpoint, settings.region, creds(settings), "nothing/here",
                        ca_bundle=settings.ca_bundle, qos=0) as watch:
        with pytest.raises(mqtt.MqttTimeoutError, match="Only 0 of 1 expected messages"):
            watch.wait_for(1, timeout=0.5)


def test_wrong_secret_is_refused_with_a_clear_error(settings, iot_logging):
    watch = mqtt.MqttWatch(settings.data_endpoint, settings.region, creds(settings, secret="wrong-secret"),
                           "a/#", ca_bundle=settings.ca_bundle)
    with pytest.raises(mqtt.MqttConnectionError, match="403 Forbidden.*SigV4 signature was not accepted"):
        watch.start(timeout=5)
    # The sandbox says why in AWS IoT's log group, as a failed Connect.
    events = settings.client("logs").filter_log_events(logGroupName="AWSIotLogsV2")["events"]
    entry = json.loads(events[-1]["message"])
    assert (entry["eventType"], entry["status"], entry["reason"]) == ("Connect", "Failure", "AUTHENTICATION_FAILURE")
    assert "signature we calculated does not match" in entry["details"]


def test_untrusted_certificate_is_a_clear_error(settings):
    watch = mqtt.MqttWatch(settings.data_endpoint, settings.region, creds(settings), "a/#", ca_bundle=None)
    with pytest.raises(mqtt.MqttConnectionError, match="not trusted.*ca_bundle"):
        watch.start(timeout=5)


@pytest.mark.parametrize("case", ["expired", "garbled", "wrong-region", "wrong-service"])
def test_bad_signatures_get_403_forbidden(settings, case):
    now = NOW.replace(year=2020) if case == "expired" else None
    url = mqtt.presigned_url(settings.data_endpoint, "eu-west-1" if case == "wrong-region" else settings.region,
                             creds(settings), now=now)
    path = path_of(url)
    if case == "garbled":
        sig = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
        path = path.replace(sig, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    elif case == "wrong-service":
        path = path.replace("iotdevicegateway", "iotdata")
    status, body = https_get(settings, path, upgrade_headers())
    assert (status, json.loads(body)) == (403, {"message": "Forbidden"})


def test_unsigned_upgrade_is_authenticated_at_connect(settings):
    """Without SigV4 or custom-auth credentials in the upgrade, the credentials come in the MQTT CONNECT (as
    AWS documents for custom authentication over WebSocket): the upgrade succeeds, a CONNECT without any and
    no default authorizer is refused with CONNACK 5 (not authorized), and the log says why."""
    ws = RawWs(settings, path="/mqtt")
    try:
        assert ws.status == 101
        ws.send_frame(OP_BINARY, mqtt_connect_packet(f"anon-{uuid.uuid4().hex[:8]}"))
        assert ws.read_frame() == (OP_BINARY, b"\x20\x02\x00\x05")
    finally:
        ws.close()


def test_plain_get_without_upgrade_is_400(settings):
    path = path_of(mqtt.presigned_url(settings.data_endpoint, settings.region, creds(settings)))
    status, body = https_get(settings, path)
    assert status == 400 and "Upgrade: websocket" in json.loads(body)["message"]
    status, body = https_get(settings, path, {**upgrade_headers(), "Sec-WebSocket-Version": "8"})
    assert status == 400 and "version 13" in json.loads(body)["message"]
    status, body = https_get(settings, path, {**upgrade_headers(), "Sec-WebSocket-Key": "short"})
    assert status == 400 and "Sec-WebSocket-Key" in json.loads(body)["message"]


def test_raw_websocket_handshake_fragmentation_ping_and_close(settings):
    ws = RawWs(settings)
    try:
        assert ws.status == 101
        assert ws.headers["sec-websocket-accept"] == base64.b64encode(
            hashlib.sha1((ws.key + GUID).encode()).digest()).decode()
        assert ws.headers["sec-websocket-protocol"] == "mqtt"
        connect = mqtt_connect_packet(f"raw-{uuid.uuid4().hex[:8]}")
        ws.send_frame(OP_BINARY, connect[:5], fin=False)      # CONNECT split in three fragments,
        ws.send_frame(OP_PING, b"are you there")              # a ping in between (allowed, 5.4)
        ws.send_frame(OP_CONTINUATION, connect[5:9], fin=False)
        ws.send_frame(OP_CONTINUATION, connect[9:], fin=True)
        assert ws.read_frame() == (OP_PONG, b"are you there")
        assert ws.read_frame() == (OP_BINARY, b"\x20\x02\x00\x00")  # CONNACK, accepted
        ws.send_frame(OP_CLOSE, struct.pack("!H", 1000))
        assert ws.read_frame() == (OP_CLOSE, struct.pack("!H", 1000))
    finally:
        ws.close()


def test_large_client_frames_reach_the_broker(settings):
    """A 70 KB PUBLISH in one frame (64-bit length form) and one split in two fragments arrive intact."""
    topic = f"big/{uuid.uuid4().hex[:8]}"
    first, second = os.urandom(70 * 1024), os.urandom(40 * 1024)
    with mqtt.MqttWatch(settings.data_endpoint, settings.region, creds(settings), topic,
                        ca_bundle=settings.ca_bundle, qos=0) as watch:
        ws = RawWs(settings)
        try:
            ws.send_frame(OP_BINARY, mqtt_connect_packet(f"big-{uuid.uuid4().hex[:8]}"))
            assert ws.read_frame() == (OP_BINARY, b"\x20\x02\x00\x00")
            ws.send_frame(OP_BINARY, mqtt_publish_packet(topic, first))
            packet = mqtt_publish_packet(topic, second)
            ws.send_frame(OP_BINARY, packet[:1000], fin=False)
            ws.send_frame(OP_CONTINUATION, packet[1000:], fin=True)
            assert [m.payload for m in watch.wait_for(2)] == [first, second]
        finally:
            ws.close()


@pytest.mark.parametrize("bad, code", [
    ("oversized", 1000), ("unmasked", 1002), ("text", 1003), ("orphan-continuation", 1002)])
def test_protocol_violations_get_the_right_close_code(settings, bad, code):
    ws = RawWs(settings)
    try:
        assert ws.status == 101
        if bad == "oversized":  # a PUBLISH announcing 300 KB: refused from its fixed header, its body never sent
            ws.send_frame(OP_BINARY, mqtt_connect_packet(f"big-{uuid.uuid4().hex[:8]}"))
            assert ws.read_frame() == (OP_BINARY, b"\x20\x02\x00\x00")
            ws.send_frame(OP_BINARY, mqtt_publish_packet("t", os.urandom(300 * 1024))[:16])
        elif bad == "unmasked":
            ws.send(frame(OP_BINARY, b"\xc0\x00"))
        elif bad == "text":
            ws.send_frame(OP_TEXT, b"hello")
        else:
            ws.send_frame(OP_CONTINUATION, b"\xc0\x00")
        opcode, payload = ws.read_frame()
        assert opcode == OP_CLOSE and struct.unpack("!H", payload[:2])[0] == code
    finally:
        ws.close()


def test_broker_closing_the_connection_is_reported_by_wait_for(settings):
    """The broker drops the older of two connections with one client id (MQTT 3.1.1 3.1.4): the relay passes
    that on as a WebSocket close, and the watch says the connection closed instead of waiting in vain."""
    client_id = f"dup-{uuid.uuid4().hex[:8]}"
    with mqtt.MqttWatch(settings.data_endpoint, settings.region, creds(settings), "dup/#",
                        ca_bundle=settings.ca_bundle, client_id=client_id) as watch:
        ws = RawWs(settings)
        try:
            ws.send_frame(OP_BINARY, mqtt_connect_packet(client_id))
            assert ws.read_frame() == (OP_BINARY, b"\x20\x02\x00\x00")
            with pytest.raises(mqtt.MqttConnectionError, match="connection closed"):
                watch.wait_for(1, timeout=5)
        finally:
            ws.close()


def _thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_abrupt_disconnects_leave_the_endpoint_serving(settings):
    linux = os.path.isdir(f"/proc/{settings.pid}/task")
    baseline = _thread_count(settings.pid) if linux else 0
    for i in range(20):
        ws = RawWs(settings)
        assert ws.status == 101
        ws.send_frame(OP_BINARY, mqtt_connect_packet(f"abrupt-{i}-{uuid.uuid4().hex[:6]}"))
        if i % 2:
            assert ws.read_frame()[0] == OP_BINARY
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, no close frame
        ws.close()
    status, body = https_get(settings, "/ping")
    assert status == 200
    if linux:  # no thread was left behind by the connections (the gateway serves them all on one loop)
        deadline = time.monotonic() + 5
        while _thread_count(settings.pid) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _thread_count(settings.pid) <= baseline
    topic = f"after/{uuid.uuid4().hex[:8]}"
    with mqtt.MqttWatch(settings.data_endpoint, settings.region, creds(settings), topic,
                        ca_bundle=settings.ca_bundle) as watch:
        publish_sigv4(settings, topic, b"still here")
        assert [m.payload for m in watch.wait_for(1)] == [b"still here"]
