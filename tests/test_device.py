"""helpers/device.py: the workbook's own authorizer function, deployed in a real sandbox, and devices that
connect to it with the AWS IoT Device SDK v2, directly (ALPN mqtt) and over WebSocket; the device console
widget and its plain twin (``Device``) doing the same things. Nothing is mocked.
"""
from __future__ import annotations

import base64
import json
import re
import uuid

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from helpers import device as dev
from helpers.device import FUNCTION_FILE, Device, DeviceError, device_console, load_function

pytest.importorskip("awscrt", reason="awsiotsdk is pinned in requirements.txt; run make venv")

TOKEN = "tokenKeyValue"
PASSWORD = load_function().DEVICE_PASSWORD

pytestmark = pytest.mark.usefixtures("iot_logging")


@pytest.fixture(scope="module")
def auth(deployer, rsa_key):
    """The tutorial's function (functions/custom_auth/lambda_function.py) behind a signing authorizer."""
    key, public_pem = rsa_key
    function_arn = deployer.function(FUNCTION_FILE.read_text())
    name, _ = deployer.authorizer(function_arn, public_pem, token_key="tokenKeyName")
    signature = base64.b64encode(key.sign(TOKEN.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return {"authorizer": name, "signature": signature, "token_key_name": "tokenKeyName", "token": TOKEN,
            "function": function_arn.split(":")[6]}


def make(settings, auth, client_id, password=PASSWORD, **kw) -> Device:
    params = {k: auth[k] for k in ("authorizer", "signature", "token_key_name", "token")}
    params.update(kw)
    return Device(settings.data_endpoint, ca_file=str(settings.ca_bundle), client_id=client_id,
                  password=password, **params)


def new_id() -> str:
    return f"sensor-{uuid.uuid4().hex[:6]}"


def log_entry(settings, predicate, timeout=10.0) -> dict:
    def find():
        events = settings.client("logs").filter_log_events(logGroupName="AWSIotLogsV2")["events"]
        return [json.loads(e["message"]) for e in events if predicate(json.loads(e["message"]))]
    found = dev.wait_until(find, timeout)
    assert found, "no matching AWSIotLogsV2 entry"
    return found[-1]


@pytest.mark.parametrize("transport", ["direct", "websockets"])
def test_device_connects_and_does_exactly_what_its_policy_allows(settings, auth, transport):
    device_id = new_id()
    own = f"devices/{device_id}/telemetry"
    with make(settings, auth, device_id, transport=transport) as device:
        outcome = device.connect()
        assert outcome.ok and outcome.reason == "SUCCESS" and outcome.reason_code == 0
        assert device.subscribe(f"devices/{device_id}/#") == ["GRANTED_QOS_1"]
        assert device.publish(own, b"own topic") == "SUCCESS"
        # an HTTPS publish (SigV4 here) on the same topic reaches the device too
        settings.client("iot-data").publish(topic=own, qos=1, payload=b"from HTTPS")
        assert sorted(m.payload for m in device.wait_for(2)) == [b"from HTTPS", b"own topic"]
        # outside the policy: another device's topics
        assert device.subscribe("devices/somebody-else/#") == ["NOT_AUTHORIZED"]
        assert device.publish("devices/somebody-else/telemetry", b"x") == "NOT_AUTHORIZED"
        assert device.connected
    assert not device.connected
    assert device.events.stopped.is_set()   # no CRT client left running
    entry = log_entry(settings, lambda e: e.get("eventType") == "Publish-In" and e.get("clientId") == device_id
                      and e.get("status") == "Failure")
    assert entry["reason"] == "AUTHORIZATION_FAILURE" and entry["topicName"] == "devices/somebody-else/telemetry"


def invocations(settings, function_name) -> int:
    logs = settings.client("logs")
    try:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{function_name}",
                                        filterPattern='"START RequestId"')["events"]
    except logs.exceptions.ResourceNotFoundException:
        return 0  # the function has not run yet: its log group does not exist
    return len(events)


@pytest.mark.parametrize("case, reason, log_reason", [
    ("wrong-password", "NOT_AUTHORIZED", "AUTHORIZATION_FAILURE"),
    ("other-client-id", "NOT_AUTHORIZED", "AUTHORIZATION_FAILURE"),
    ("tampered-signature", "BAD_USERNAME_OR_PASSWORD", "AUTHENTICATION_FAILURE"),
])
def test_refusals_are_a_connack_and_a_log_entry(settings, auth, case, reason, log_reason):
    device_id = new_id()
    client_id = device_id + "-2" if case == "other-client-id" else device_id
    password = "not-the-password" if case == "wrong-password" else PASSWORD
    signature = auth["signature"]
    if case == "tampered-signature":
        signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    before = invocations(settings, auth["function"]) if case == "tampered-signature" else None
    with make(settings, auth, client_id, password=password, device_id=device_id, signature=signature) as device:
        outcome = device.connect()
        assert not outcome.ok and outcome.reason == reason
        assert not device.connected and device.events.stopped.is_set()  # stopped: it does not retry
        with pytest.raises(DeviceError, match="not connected"):
            device.publish(f"devices/{device_id}/t", b"x")
    entry = log_entry(settings, lambda e: e.get("eventType") == "Connect" and e.get("clientId") == client_id)
    assert entry["status"] == "Failure" and entry["reason"] == log_reason
    if before is not None:  # refused before the function ran: a sentinel connect after it is the one new invocation
        with make(settings, auth, device_id, password=PASSWORD, device_id=device_id) as sentinel:
            assert sentinel.connect().ok
        assert invocations(settings, auth["function"]) == before + 1


def test_console_connects_publishes_shows_messages_and_disconnects(settings, auth):
    device_id = new_id()
    made = []

    def make_device(client_id, password):
        made.append(make(settings, auth, client_id, password=password))
        return made[-1]

    console = device_console(make_device, device_id, f"devices/{device_id}/telemetry")
    try:
        assert console.publish() is None and "Not connected" in console.status
        console.password.value = "wrong"
        outcome = console.connect()
        assert not outcome.ok and "NOT_AUTHORIZED" in console.status
        assert console.publish_button.disabled and not console.connect_button.disabled
        console.password.value = PASSWORD
        assert console.connect().ok
        assert "GRANTED_QOS_1" in console.status and not console.publish_button.disabled
        console.payload.value = '{"temperature": 22}'
        assert console.publish() == "SUCCESS"
        made[-1].wait_for(1)
        dev.wait_until(lambda: "temperature" in console.list.value, 5)
        assert '{\n  &quot;temperature&quot;: 22\n}' in console.list.value   # the live table: pretty JSON, HTML-escaped
        assert "temperature" in console.text and f"devices/{device_id}/telemetry" in console.text
        assert re.search(r"\b\d\d:\d\d:\d\d\.\d{3}\b", console.text), console.text  # the time it arrived
        console.topic.value = "devices/somebody-else/telemetry"
        assert console.publish() == "NOT_AUTHORIZED"
    finally:
        console.disconnect()
    assert "Disconnected" in console.status and console.publish_button.disabled and not console.connect_button.disabled
    assert all(d.events.stopped.is_set() for d in made if d.outcome)   # every client it made has stopped


def test_console_shows_errors_instead_of_raising():
    def broken(client_id, password):
        raise DeviceError("the endpoint is unreachable")

    console = device_console(broken, "sensor-x", "devices/sensor-x/telemetry")
    assert console.connect() is None
    assert console.status == "✗ DeviceError: the endpoint is unreachable"
    assert console.device is None and console.publish_button.disabled


def test_mosquitto_lines_never_contain_the_signature_or_the_password(auth):
    text = dev.mosquitto_commands("localhost:8443", ca_file="build/sandbox/ca.pem", device_id="sensor-1",
                                  authorizer=auth["authorizer"], token_key_name="tokenKeyName", token=TOKEN,
                                  topic="devices/sensor-1/telemetry")
    assert auth["signature"] not in text and PASSWORD not in text
    assert '"$SIGNATURE"' in text and '"$DEVICE_PASSWORD"' in text
    assert "--tls-alpn mqtt" in text and "--cafile build/sandbox/ca.pem" in text and "-p 8443" in text
    aws = dev.mosquitto_commands("abc-ats.iot.us-west-2.amazonaws.com", ca_file=None, device_id="sensor-1",
                                 authorizer="a", token_key_name="k", token="t", topic="devices/sensor-1/t")
    assert "-p 443" in aws and "--cafile" not in aws


def test_masked_hides_only_the_signature():
    user = dev.username("d", authorizer="a", signature="s+/=", token_key_name="k", token="t")
    assert dev.masked(user) == "d?x-amz-customauthorizer-name=a&x-amz-customauthorizer-signature=<signature>&k=t"
    assert dev.masked(f"user name: '{user}'").endswith("<signature>&k=t'")



def test_the_printed_mosquitto_pub_line_publishes_as_the_device(settings, auth):
    """The notebook's terminal lines, run by bash as printed, the signature and password from the environment."""
    import os
    import shutil
    import subprocess

    if not shutil.which("mosquitto_pub"):
        pytest.skip("mosquitto_pub is not installed (apt-get install mosquitto-clients)")
    device_id = new_id()
    topic = f"devices/{device_id}/telemetry"
    lines = dev.mosquitto_commands(settings.data_endpoint, ca_file=str(settings.ca_bundle), device_id=device_id,
                                   authorizer=auth["authorizer"], token_key_name="tokenKeyName", token=TOKEN,
                                   topic=topic).splitlines()
    script = "\n".join(line for line in lines if not line.startswith("mosquitto_sub"))  # no background watcher
    env = {**os.environ, "SIGNATURE": auth["signature"], "DEVICE_PASSWORD": PASSWORD}
    with settings.watch(f"devices/{device_id}/#") as watcher:   # SigV4, as notebook 07 watches
        done = subprocess.run(["bash", "-c", "set -eu\n" + script], env=env, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        assert [m.payload for m in watcher.wait_for(1)] == [b"hello from mosquitto"]
    wrong = subprocess.run(["bash", "-c", "set -eu\n" + script], capture_output=True, text=True, timeout=30,
                           env={**env, "DEVICE_PASSWORD": "not-the-password"})
    assert wrong.returncode != 0 and "not authori" in (wrong.stderr + wrong.stdout).lower()
