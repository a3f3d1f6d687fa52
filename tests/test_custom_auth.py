"""One custom-auth pipeline (helpers/sandbox/custom_auth.py), every door: each stage's failure is exactly one
outcome per protocol — a TestInvokeAuthorizer error, HTTP 403, an MQTT CONNACK refusal — plus one AWSIotLogsV2
entry; never a 5xx. Real sandbox, real Lambda workers, real TLS clients."""
from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from concurrent.futures import Future

import paho.mqtt.client as paho
import pytest
import requests
from botocore.exceptions import ClientError
from paho.mqtt.enums import CallbackAPIVersion

GOOD = '''
def lambda_handler(event, context):
    return {"isAuthenticated": True, "principalId": "ok", "disconnectAfterInSeconds": 300,
            "refreshAfterInSeconds": 300, "policyDocuments": [{"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}]}
'''
HANDLERS = {
    "crash": "def lambda_handler(event, context):\n    raise RuntimeError('boom')\n",
    "malformed": "def lambda_handler(event, context):\n    return {'isAuthenticated': 'yes'}\n",
    "timeout": "import time\ndef lambda_handler(event, context):\n    time.sleep(30)\n",
}
#: stage -> (TestInvokeAuthorizer error code, MQTT 5 CONNACK reason code, words in the log entry's details)
EXPECTED = {
    "no-function": ("ResourceNotFoundException", 0x87, "does not exist"),
    "no-permission": ("InvalidRequestException", 0x87, "not allowed to invoke"),
    "crash": ("InvalidResponseException", 0x87, "boom"),
    "malformed": ("InvalidResponseException", 0x87, "invalid response"),
    "timeout": ("InvalidResponseException", 0x87, "timed out"),
}

#: AWSIotLogsV2 entries are asserted here, and AWS IoT logs nothing until logging is on.
pytestmark = pytest.mark.usefixtures("iot_logging")


@pytest.fixture(scope="module")
def broken(deployer, settings):
    """One authorizer (signing off) per failing stage."""
    out = {}
    for stage in EXPECTED:
        source = HANDLERS.get(stage, GOOD)
        fn = deployer.function(source, timeout=30 if stage == "timeout" else 3)
        name, _ = deployer.authorizer(fn, None, permit=stage != "no-permission")
        if stage == "no-function":
            settings.client("lambda").delete_function(FunctionName=fn)
        out[stage] = name
    return out


def newest_entry(settings, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        events = settings.client("logs").filter_log_events(logGroupName="AWSIotLogsV2")["events"]
        hits = [json.loads(e["message"]) for e in events if predicate(json.loads(e["message"]))]
        if hits or time.monotonic() > deadline:
            assert hits, "no matching AWSIotLogsV2 entry"
            return hits[-1]
        time.sleep(0.1)


@pytest.mark.parametrize("stage", list(EXPECTED))
def test_test_invoke_answers_the_stage_error(settings, broken, stage):
    code = EXPECTED[stage][0]
    with pytest.raises(ClientError) as err:
        settings.client("iot").test_invoke_authorizer(authorizerName=broken[stage], token="t")
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] < 500


@pytest.mark.parametrize("stage", list(EXPECTED))
def test_https_publish_is_403_and_logged(settings, broken, stage):
    topic = f"stage/{stage}/{uuid.uuid4().hex[:6]}"
    resp = requests.post(f"https://{settings.data_endpoint}/topics/{topic}",
                         headers={"x-amz-customauthorizer-name": broken[stage]}, data=b"x",
                         verify=str(settings.ca_bundle), timeout=30)
    assert resp.status_code == 403 and resp.json()["message"] == "Forbidden"
    entry = newest_entry(settings, lambda e: e.get("topicName") == topic)
    assert entry["status"] == "Failure" and entry["eventType"] == "Publish-In"
    assert EXPECTED[stage][2] in entry["details"]


@pytest.mark.parametrize("stage", list(EXPECTED))
def test_mqtt_connect_is_refused_and_logged(settings, broken, stage):
    host, port = settings.data_endpoint.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
    ctx.set_alpn_protocols(["mqtt"])
    client_id = f"stage-{stage}-{uuid.uuid4().hex[:6]}"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.tls_set_context(ctx)
    client.username_pw_set(f"u?x-amz-customauthorizer-name={broken[stage]}", "pw")
    connack = Future()
    client.on_connect = lambda c, u, flags, rc, props: connack.done() or connack.set_result(rc)
    client.connect(host, int(port))
    client.loop_start()
    try:
        assert connack.result(15).value == EXPECTED[stage][1]
    finally:
        client.loop_stop()
    entry = newest_entry(settings, lambda e: e.get("eventType") == "Connect" and e.get("clientId") == client_id)
    assert entry["status"] == "Failure" and EXPECTED[stage][2] in entry["details"]


def connect_311(client_id: str, username: str, password: bytes) -> bytes:
    """An MQTT 3.1.1 CONNECT with user name and password (MQTT 3.1.1 section 3.1)."""
    def field(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b
    body = b"\x00\x04MQTT\x04\xc2\x00\x3c" + field(client_id.encode()) + field(username.encode()) + field(password)
    return bytes([0x10, len(body)]) + body


def test_mqtt_3_1_1_gets_return_code_5_and_4(settings, broken, deployer, rsa_key):
    """The raw 3.1.1 CONNACK return codes: 5 (not authorized) for a failing function, 4 (bad user name or
    password) when signing is on and the signature is missing."""
    key, pem = rsa_key
    signed, _ = deployer.authorizer(deployer.function(GOOD), pem, token_key="token")
    host, port = settings.data_endpoint.rsplit(":", 1)
    codes = []
    for name in (broken["crash"], signed):
        ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
        ctx.set_alpn_protocols(["mqtt"])
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=15),
                             server_hostname=host) as sock:
            sock.sendall(connect_311(f"c{uuid.uuid4().hex[:6]}", f"u?x-amz-customauthorizer-name={name}&token=t",
                                     b"pw"))
            connack = sock.recv(4)
            assert sock.recv(1) == b""  # and the connection is closed
        assert connack[:3] == b"\x20\x02\x00"
        codes.append(connack[3])
    assert codes == [5, 4]
