"""helpers.publish: URL, header and curl building, and send() against a real sandbox with the tutorial handler."""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from helpers import publish
from helpers.errors import WorkbookError
from helpers.keys import sign_token
from tests.conftest import Deployer

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL_HANDLER = (ROOT / "functions" / "custom_auth" / "lambda_function.py").read_text()
SIGNATURE = "ab+cd/ef=="  # the three characters base64 has and URLs mangle


def argv(command: str) -> list[str]:
    """What a shell would pass to curl for this multi-line command."""
    return shlex.split(command.replace(" \\\n", " "))


# --- building the request ----------------------------------------------------------------------------------

def test_publish_url_encodes_the_topic_but_keeps_slashes():
    url = publish.publish_url("abc-ats.iot.us-west-2.amazonaws.com", "a b/c+d/é", qos=1, action_token="allow",
                              extra_query={"retain": "true"})
    assert url == "https://abc-ats.iot.us-west-2.amazonaws.com/topics/a%20b/c%2Bd/%C3%A9?qos=1&actionToken=allow&retain=true"
    assert publish.publish_url("https://localhost:8443/", "t") == "https://localhost:8443/topics/t?qos=0"


def test_custom_auth_headers():
    assert publish.custom_auth_headers("auth-1", "tokenKeyName", "tokenKeyValue", SIGNATURE) == {
        "x-amz-customauthorizer-name": "auth-1", "tokenKeyName": "tokenKeyValue",
        "x-amz-customauthorizer-signature": SIGNATURE}
    assert publish.SIGNATURE_HEADER not in publish.custom_auth_headers("a", "k", "v", None)


def test_curl_command_quotes_every_argument():
    headers = publish.custom_auth_headers("auth-1", "tokenKeyName", "it's a token", SIGNATURE)
    body = '{"note": "it\'s $HOME; `rm -rf`"}'
    command = publish.curl_command("https://h:1/topics/t?qos=0&actionToken=allow", headers, body.encode(),
                                   cacert="/tmp/my ca.pem")
    assert command.count("\n") == 7  # one argument group per line
    assert argv(command) == [
        "curl", "--cacert", "/tmp/my ca.pem", "--request", "POST", "https://h:1/topics/t?qos=0&actionToken=allow",
        "--header", "x-amz-customauthorizer-name: auth-1", "--header", "tokenKeyName: it's a token",
        "--header", "x-amz-customauthorizer-signature: $SIGNATURE", "--data-binary", body]
    assert SIGNATURE not in command  # never printed: the shell expands "$SIGNATURE" (see signature_setup)
    assert '--header "x-amz-customauthorizer-signature: $SIGNATURE"' in command
    without_ca = publish.curl_command("https://h/topics/t", {}, "x")
    assert argv(without_ca) == ["curl", "--request", "POST", "https://h/topics/t", "--data-binary", "x"]
    with pytest.raises(ValueError, match="binary data"):
        publish.curl_command("https://h/topics/t", {}, b"\x00\xff")


def test_query_auth_url_url_encodes_the_signature():
    url = publish.query_auth_url("h:8443", "a/b", authorizer="auth-1", token_key_name="tokenKeyName",
                                 token="tok en", signature=SIGNATURE, action_token="allow")
    assert "x-amz-customauthorizer-signature=ab%2Bcd%2Fef%3D%3D" in url
    parts = urlsplit(url)
    assert parts.path == "/topics/a/b"
    assert parse_qs(parts.query) == {"qos": ["0"], "actionToken": ["allow"], "x-amz-customauthorizer-name": ["auth-1"],
                                     "tokenKeyName": ["tok en"], "x-amz-customauthorizer-signature": [SIGNATURE]}


# --- send() against the sandbox ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tutorial(settings, rsa_key, tmp_path_factory):
    """The workbook's handler behind a signing authorizer, and the matching private key on disk."""
    deployer = Deployer(settings)
    name, _ = deployer.authorizer(deployer.function(TUTORIAL_HANDLER), rsa_key[1])
    key_file = tmp_path_factory.mktemp("keys") / "private-key.pem"
    key_file.write_bytes(rsa_key[0].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    key_file.chmod(0o600)
    return SimpleNamespace(name=name, signature=sign_token(key_file, "tokenKeyValue"))



def send(wb, tutorial, topic, **kw):
    return publish.send(wb, topic, {"temperature": 40}, authorizer=tutorial.name, token_key_name="tokenKeyName",
                        token="tokenKeyValue", signature=tutorial.signature, **kw)


def test_send_allow_publishes(wb, tutorial, settings):
    topic = f"test/publish/{uuid.uuid4().hex[:8]}"
    with settings.watch(topic) as sub:
        result = send(wb, tutorial, topic, qos=1)
        assert result.ok and result.status == 200, result.body
        assert result.body["message"] == "OK" and uuid.UUID(result.trace_id) and result.trace_id == result.body["traceId"]
        got = sub.wait_for(1, timeout=10)
    assert [(m.topic, json.loads(m.payload), m.qos) for m in got] == [(topic, {"temperature": 40}, 1)]
    assert "HTTP 200 (published)" in result.summary()


def test_send_deny_is_forbidden(wb, tutorial):
    result = send(wb, tutorial, "test/publish/deny", action_token="deny")
    assert (result.status, result.ok, result.body["message"]) == (403, False, "Forbidden")
    assert uuid.UUID(result.trace_id)
    assert "actionToken=deny" in result.curl


def test_the_curl_line_is_copy_pasteable(wb, tutorial):
    result = send(wb, tutorial, "test/publish/curl")
    assert f"--cacert {wb.tls_verify}" in result.curl and tutorial.signature not in result.curl
    # as the notebook says: the signature in a shell variable, then the curl line as printed
    out = subprocess.run(["bash", "-c", result.curl + " --silent --show-error"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "SIGNATURE": tutorial.signature})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["message"] == "OK"


def test_query_auth_url_is_accepted(wb, tutorial):
    url = publish.query_auth_url(wb.data_endpoint, "test/publish/query", authorizer=tutorial.name,
                                 token_key_name="tokenKeyName", token="tokenKeyValue",
                                 signature=tutorial.signature, action_token="allow")
    resp = requests.post(url, data=b"x", verify=wb.tls_verify, timeout=30)
    assert resp.status_code == 200, resp.text


def test_binary_payload_is_sent_and_has_no_curl_line(wb, tutorial):
    result = publish.send(wb, "test/publish/bin", b"\x00\xff", authorizer=tutorial.name,
                          token_key_name="tokenKeyName", token="tokenKeyValue", signature=tutorial.signature)
    assert result.ok and result.curl.startswith("# no curl line")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_is_a_clear_error():
    wb = SimpleNamespace(data_endpoint=f"127.0.0.1:{closed_port()}", tls_verify=True)
    with pytest.raises(publish.PublishConnectionError, match="Is the sandbox running") as info:
        publish.send(wb, "t", "x", authorizer="a", token_key_name="k", token="v", signature="s")
    assert isinstance(info.value, WorkbookError) and "127.0.0.1" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback


def test_untrusted_certificate_is_a_clear_error(settings):
    wb = SimpleNamespace(data_endpoint=settings.data_endpoint, tls_verify=True)  # the system's CAs only
    with pytest.raises(publish.PublishConnectionError, match="not trusted"):
        publish.send(wb, "t", "x", authorizer="a", token_key_name="k", token="v", signature="s")
