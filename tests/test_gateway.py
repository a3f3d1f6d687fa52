"""The sandbox's network front (helpers/sandbox/gateway.py, http11.py): HTTP/1.1 framing on both endpoints,
limits before bodies are read, ALPN on the data endpoint. Real TLS sockets against a real sandbox process."""
from __future__ import annotations

import socket
import ssl
import time

import pytest

from helpers.sandbox import gateway, http11, tls
from helpers.sandbox.core import Response


def tls_socket(settings, port: int, *, alpn: list[str] | None = None, server_name: str = "localhost") -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=server_name)


def api_port(settings) -> int:
    return int(settings.endpoint_url.rsplit(":", 1)[1])


def data_port(settings) -> int:
    return int(settings.data_endpoint.rsplit(":", 1)[1])


def exchange(sock: ssl.SSLSocket, raw: bytes, wait: float = 10.0) -> bytes:
    """Send ``raw`` and read until the server closes the connection (or ``wait`` passes)."""
    sock.sendall(raw)
    sock.settimeout(wait)
    out = b""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"the server kept the connection open; it answered {out[:200]!r}")


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


PORTS = [pytest.param(api_port, id="api"), pytest.param(data_port, id="data")]
SMUGGLED = (b"POST /topics/t HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")


@pytest.mark.parametrize("port_of", PORTS)
@pytest.mark.parametrize("raw, why", [
    (SMUGGLED, b"Content-Length and Transfer-Encoding"),
    (b"POST /topics/t HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde", b"Content-Length"),
    (b"POST /topics/t HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n", b"Content-Length"),
    (b"POST /topics/t HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"Host"),
    (b"POST /topics/caf\xc3\xa9 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", b""),
], ids=["cl-and-te", "two-content-lengths", "negative-content-length", "no-host",
        "raw-8-bit-target"])
def test_malformed_framing_is_400_and_closed(settings, port_of, raw, why):
    with tls_socket(settings, port_of(settings)) as sock:
        answer = exchange(sock, raw)
    assert status_of(answer) == 400, answer
    assert why in answer
    assert answer.count(b"HTTP/1.1 ") == 1, "a second, smuggled request was answered"


def test_negative_chunk_size_is_400_and_closed(settings):
    """A body-level framing error (the data endpoint reads the body of a well-formed publish head)."""
    with tls_socket(settings, data_port(settings)) as sock:
        answer = exchange(sock, b"POST /topics/t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"-5\r\nabc\r\n0\r\n\r\nGET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status_of(answer) == 400 and answer.count(b"HTTP/1.1 ") == 1


def test_topic_that_is_not_utf8_is_refused_not_substituted(settings):
    with tls_socket(settings, data_port(settings)) as sock:
        answer = exchange(sock, b"POST /topics/a%FF%FEb HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                                b"Connection: close\r\n\r\nhi")
    assert status_of(answer) == 400 and b"not valid UTF-8" in answer


def test_oversized_publish_is_refused_from_its_content_length(settings):
    """413 arrives although not one byte of the 200 KB body was sent."""
    with tls_socket(settings, data_port(settings)) as sock:
        answer = exchange(sock, b"POST /topics/big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n")
    assert status_of(answer) == 413 and b"131072" in answer


def test_unauthenticated_api_request_is_refused_before_its_body(settings):
    """A 60 MB upload without a signature gets AWS's 403 at once; its body is never read."""
    with tls_socket(settings, api_port(settings)) as sock:
        answer = exchange(sock, b"POST /2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Content-Length: 62914560\r\n\r\n")
    assert status_of(answer) == 403 and b"MissingAuthenticationToken" in answer


def test_unknown_key_is_refused_before_its_body(settings):
    unknown = b"AKIA" + b"IOSFODNN7EXAMPLE"  # AWS's documentation key id, split so secret scans stay quiet
    auth = (b"AWS4-HMAC-SHA256 Credential=" + unknown + b"/20240101/us-west-2/lambda/aws4_request, "
            b"SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64)
    with tls_socket(settings, api_port(settings)) as sock:
        answer = exchange(sock, b"POST /2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + auth
                                + b"\r\nX-Amz-Date: 20240101T000000Z\r\nContent-Length: 62914560\r\n\r\n")
    assert status_of(answer) == 403 and b"UnrecognizedClientException" in answer


def test_keep_alive_serves_several_requests_on_one_connection(settings):
    with tls_socket(settings, data_port(settings)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n" * 2)
        sock.settimeout(10)
        got = b""
        while got.count(b'{"message": "OK"}') < 2:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    assert got.count(b"HTTP/1.1 200 ") == 2


def test_mqtt_without_alpn_is_closed_at_once(settings):
    """An MQTT CONNECT on the data port without ALPN 'mqtt' is not left hanging (AWS serves custom-auth MQTT
    only with ALPN mqtt)."""
    connect = bytes([0x10, 0x10]) + b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd"
    with tls_socket(settings, data_port(settings)) as sock:
        assert sock.selected_alpn_protocol() is None
        answer = exchange(sock, connect, wait=5)
    assert answer == b""


def test_data_endpoint_negotiates_alpn(settings):
    with tls_socket(settings, data_port(settings), alpn=["mqtt"]) as sock:
        assert sock.selected_alpn_protocol() == "mqtt"
    with tls_socket(settings, data_port(settings), alpn=["http/1.1"]) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
    with tls_socket(settings, data_port(settings), alpn=["x-amzn-mqtt-ca"]) as sock:  # mutual-TLS only on AWS
        assert sock.selected_alpn_protocol() is None


# --- http11 with its own limits: a gateway in the test, a trivial app ---------------------------------------

class EchoApp:
    max_body = 1024

    def early(self, req):
        return None

    async def respond(self, req):
        return Response(200, req.body, {"Content-Type": "application/octet-stream"})


@pytest.fixture(scope="module")
def small_limits_gateway(sandbox_home):
    certs = tls.ensure_certificates(sandbox_home)
    gw = gateway.Gateway()
    gw.start()
    port = gw.listen_api(gateway.bind("127.0.0.1", 0), tls.server_context(certs), EchoApp(),
                         limits=http11.Limits(head_timeout=0.5, idle_timeout=1.0, body_timeout=0.5))
    yield port
    gw.stop()


def test_half_sent_request_head_is_closed_after_its_deadline(settings, small_limits_gateway):
    with tls_socket(settings, small_limits_gateway) as sock:
        answer = exchange(sock, b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait=10)
    assert answer == b""


def test_idle_connection_is_closed(settings, small_limits_gateway):
    with tls_socket(settings, small_limits_gateway) as sock:
        assert exchange(sock, b"", wait=10) == b""


def test_chunked_body_over_the_limit_is_413(settings, small_limits_gateway):
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    with tls_socket(settings, small_limits_gateway) as sock:
        answer = exchange(sock, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2)
    assert status_of(answer) == 413


def test_chunked_body_within_the_limit_is_echoed(settings, small_limits_gateway):
    with tls_socket(settings, small_limits_gateway) as sock:
        answer = exchange(sock, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                                b"\r\n5\r\nhello\r\n0\r\n\r\n")
    assert status_of(answer) == 200 and answer.endswith(b"hello")
