"""Devices on the sandbox's data endpoint with custom authentication: the AWS IoT Device SDK v2 (awsiotsdk),
paho-mqtt with ALPN ``mqtt`` and the username query string, MQTT 3.1.1 and 5, over TLS and over WebSocket.

Real TLS, the real SDK and paho, a real authorizer function in its own Lambda worker; nothing of the
sandbox is mocked. The only overrides for the SDK are the endpoint's port and its CA.
"""
from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import uuid
from concurrent.futures import Future
from urllib.parse import quote

import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from paho.mqtt.enums import CallbackAPIVersion


awscrt = pytest.importorskip("awscrt", reason="awsiotsdk is pinned in requirements.txt; run make venv")
from awscrt import mqtt5  # noqa: E402
from awsiot import mqtt5_client_builder  # noqa: E402

#: A device authorizer in the shape the workbook teaches: the password decides, the policy is least privilege
#: (this client id only, its own topics).
DEVICE_HANDLER = '''
import base64

def lambda_handler(event, context):
    region, account = context.invoked_function_arn.split(":")[3:5]
    mqtt = event.get("protocolData", {}).get("mqtt", {})
    password = base64.b64decode(mqtt.get("password", "")).decode()
    client = mqtt.get("clientId", "none")
    arn = f"arn:aws:iot:{region}:{account}"
    allow = password == "open-sesame"
    return {
        "isAuthenticated": allow or password == "authenticated-but-denied",
        "principalId": "device" + client.replace("-", "")[:40],
        "disconnectAfterInSeconds": 3600, "refreshAfterInSeconds": 300,
        "policyDocuments": [{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow" if allow else "Deny", "Action": "iot:Connect", "Resource": f"{arn}:client/{client}"},
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": f"{arn}:topic/dev/{client}/*"},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/dev/{client}/*"},
        ]}],
    }
'''
TOKEN = "device-token-1"

#: AWSIotLogsV2 entries are asserted here, and AWS IoT logs nothing until logging is on.
pytestmark = pytest.mark.usefixtures("iot_logging")


@pytest.fixture(scope="module")
def device_auth(deployer, rsa_key):
    key, public_pem = rsa_key
    function_arn = deployer.function(DEVICE_HANDLER)
    name, _ = deployer.authorizer(function_arn, public_pem, token_key="token")
    signature = base64.b64encode(key.sign(TOKEN.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return {"name": name, "signature": signature, "function_arn": function_arn}


def host_port(settings) -> tuple[str, int]:
    host, port = settings.data_endpoint.rsplit(":", 1)
    return host, int(port)


def iot_log(settings, predicate, timeout: float = 10.0) -> dict:
    """The newest AWSIotLogsV2 entry that matches ``predicate`` (waits for the log writer)."""
    deadline = time.monotonic() + timeout
    while True:
        events = settings.client("logs").filter_log_events(logGroupName="AWSIotLogsV2")["events"]
        found = [json.loads(e["message"]) for e in events if predicate(json.loads(e["message"]))]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError("no matching AWSIotLogsV2 entry")
        time.sleep(0.1)


def function_invocations(settings, function_arn: str) -> int:
    name = function_arn.split(":")[6]
    events = settings.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{name}",
                                                       filterPattern='"START RequestId"')["events"]
    return len(events)


# --- the AWS IoT Device SDK v2 ---------------------------------------------------------------------------

class SdkDevice:
    """An awscrt MQTT 5 client from the SDK's builders, with futures for what the tests wait on."""

    def __init__(self, builder, settings, client_id: str, **auth):
        host, port = host_port(settings)
        self.connected, self.failed, self.received = Future(), Future(), []
        self._cond = threading.Condition()
        self.client = builder(
            endpoint=host, port=port, ca_filepath=str(settings.ca_bundle), client_id=client_id,
            on_lifecycle_connection_success=lambda data: self.connected.set_result(data),
            on_lifecycle_connection_failure=lambda data: self.failed.done() or self.failed.set_result(data),
            on_publish_received=self._on_publish, **auth)

    def _on_publish(self, data) -> None:
        with self._cond:
            self.received.append(data.publish_packet)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> list:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.received) >= n, timeout), f"{len(self.received)} of {n}"
            return list(self.received)

    def __enter__(self):
        self.client.start()
        return self

    def __exit__(self, *exc):
        self.client.stop()


def sdk_auth(device_auth, password: str = "open-sesame", signature: str | None = None) -> dict:
    return dict(auth_username="device", auth_authorizer_name=device_auth["name"],
                auth_authorizer_signature=signature or device_auth["signature"], auth_password=password,
                auth_token_key_name="token", auth_token_value=TOKEN)


@pytest.mark.parametrize("builder", [mqtt5_client_builder.direct_with_custom_authorizer,
                                     mqtt5_client_builder.websockets_with_custom_authorizer],
                         ids=["direct", "websockets"])
def test_sdk_connects_subscribes_publishes_and_receives(settings, device_auth, builder):
    client_id = f"sdk-{uuid.uuid4().hex[:8]}"
    topic = f"dev/{client_id}/data"
    with SdkDevice(builder, settings, client_id, **sdk_auth(device_auth)) as device:
        connack = device.connected.result(10).connack_packet
        assert connack.reason_code == mqtt5.ConnectReasonCode.SUCCESS
        suback = device.client.subscribe(mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=f"dev/{client_id}/#", qos=mqtt5.QoS.AT_LEAST_ONCE)])
        ).result(10)
        assert suback.reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]
        puback = device.client.publish(mqtt5.PublishPacket(topic=topic, payload=b"from the device",
                                                           qos=mqtt5.QoS.AT_LEAST_ONCE)).result(10)
        assert puback.puback.reason_code == mqtt5.PubackReasonCode.SUCCESS
        # and an HTTPS publish from outside reaches the device on the same topic
        settings.client("iot-data").publish(topic=topic, qos=1, payload=b"from HTTPS")
        got = device.wait_for(2)
    assert sorted(p.payload for p in got) == [b"from HTTPS", b"from the device"]
    entry = iot_log(settings, lambda e: e.get("eventType") == "Connect" and e.get("clientId") == client_id)
    assert entry["status"] == "Success" and entry["protocol"] == "MQTT"


@pytest.mark.parametrize("case, reason_code", [
    ("tampered-signature", mqtt5.ConnectReasonCode.BAD_USERNAME_OR_PASSWORD),
    ("wrong-password", mqtt5.ConnectReasonCode.BAD_USERNAME_OR_PASSWORD),
    ("connect-denied", mqtt5.ConnectReasonCode.NOT_AUTHORIZED),
])
def test_sdk_refusals_come_as_a_connack_not_a_timeout(settings, device_auth, case, reason_code):
    signature = device_auth["signature"]
    if case == "tampered-signature":
        signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    password = {"wrong-password": "nope", "connect-denied": "authenticated-but-denied"}.get(case, "open-sesame")
    before = function_invocations(settings, device_auth["function_arn"])
    client_id = f"sdk-{uuid.uuid4().hex[:8]}"
    with SdkDevice(mqtt5_client_builder.direct_with_custom_authorizer, settings, client_id,
                   **sdk_auth(device_auth, password=password, signature=signature)) as device:
        failure = device.failed.result(10)   # the SDK's own CONNACK timeout would be 20 s
    assert failure.connack_packet is not None and failure.connack_packet.reason_code == reason_code
    entry = iot_log(settings, lambda e: e.get("eventType") == "Connect" and e.get("status") == "Failure"
                    and e.get("clientId") == client_id)
    if case == "tampered-signature":
        assert "signature is invalid" in entry["details"]
        assert function_invocations(settings, device_auth["function_arn"]) == before  # never invoked
    elif case == "connect-denied":
        assert entry["reason"] == "AUTHORIZATION_FAILURE"


# --- paho-mqtt by hand: ALPN mqtt, SNI, the username query string ---------------------------------------

def paho_device(settings, device_auth, client_id: str, *, protocol=paho.MQTTv311, password: str = "open-sesame",
                transport: str = "tcp"):
    host, port = host_port(settings)
    ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
    if transport == "tcp":
        ctx.set_alpn_protocols(["mqtt"])
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, transport=transport)
    client.tls_set_context(ctx)
    if transport == "websockets":
        client.ws_set_options(path="/mqtt")
    username = (f"device?x-amz-customauthorizer-name={quote(device_auth['name'], safe='')}"
                f"&x-amz-customauthorizer-signature={quote(device_auth['signature'], safe='')}&token={TOKEN}")
    client.username_pw_set(username, password)
    events = {"connack": Future(), "suback": Future(), "messages": []}
    client.on_connect = lambda c, u, flags, rc, props: events["connack"].set_result(rc)
    client.on_subscribe = lambda c, u, mid, rcs, props: events["suback"].set_result(list(rcs))
    client.on_message = lambda c, u, msg: events["messages"].append(msg)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    return client, events


@pytest.mark.parametrize("protocol", [paho.MQTTv311, paho.MQTTv5], ids=["3.1.1", "5"])
@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_paho_with_the_username_query_string(settings, device_auth, protocol, transport):
    client_id = f"paho-{uuid.uuid4().hex[:8]}"
    client, events = paho_device(settings, device_auth, client_id, protocol=protocol, transport=transport)
    try:
        assert not events["connack"].result(10).is_failure
        client.subscribe(f"dev/{client_id}/#", qos=1)
        assert [rc.value for rc in events["suback"].result(10)] == [1]
        with settings.watch(f"dev/{client_id}/#") as watcher:
            client.publish(f"dev/{client_id}/t", b"\x00binary\xff", qos=1).wait_for_publish(10)
            assert [m.payload for m in watcher.wait_for(1)] == [b"\x00binary\xff"]
        deadline = time.monotonic() + 10
        while not events["messages"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m.payload for m in events["messages"]] == [b"\x00binary\xff"]
    finally:
        client.disconnect()
        client.loop_stop()


def test_subscribe_outside_the_policy_gets_the_suback_failure_code(settings, device_auth):
    client_id = f"paho-{uuid.uuid4().hex[:8]}"
    client, events = paho_device(settings, device_auth, client_id, protocol=paho.MQTTv5)
    try:
        assert not events["connack"].result(10).is_failure
        client.subscribe("somebody/else/#", qos=1)
        [code] = events["suback"].result(10)
        assert code.value == 0x87  # MQTT 5 "Not authorized"
    finally:
        client.disconnect()
        client.loop_stop()
    entry = iot_log(settings, lambda e: e.get("eventType") == "Subscribe" and e.get("clientId") == client_id)
    assert entry["status"] == "Failure" and entry["reason"] == "AUTHORIZATION_FAILURE"


def test_sni_reaches_the_event(settings, deployer, rsa_key):
    """protocolData.tls.serverName is the host name the client sent in SNI."""
    echo = deployer.function('''
import json
def lambda_handler(event, context):
    print("EVENT " + json.dumps(event))
    return {"isAuthenticated": False, "principalId": "x", "policyDocuments": [],
            "disconnectAfterInSeconds": 300, "refreshAfterInSeconds": 300}
''')
    name, _ = deployer.authorizer(echo, None)
    host, port = host_port(settings)
    ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
    ctx.set_alpn_protocols(["mqtt"])
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="sni-check", protocol=paho.MQTTv311)
    client.tls_set_context(ctx)
    client.username_pw_set(f"u?x-amz-customauthorizer-name={name}", "pw")
    connack = Future()
    client.on_connect = lambda c, u, flags, rc, props: connack.done() or connack.set_result(rc)
    client.connect(host, port)
    client.loop_start()
    try:
        assert connack.result(10).is_failure
    finally:
        client.loop_stop()
    fn = echo.split(":")[6]
    deadline = time.monotonic() + 10
    while True:
        events = settings.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{fn}",
                                                           filterPattern='"EVENT"')["events"]
        if events or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    event = json.loads(events[-1]["message"].split("EVENT ", 1)[1])
    assert event["protocols"] == ["tls", "mqtt"]
    assert event["protocolData"]["tls"] == {"serverName": host}
    assert event["protocolData"]["mqtt"]["clientId"] == "sni-check"
    assert base64.b64decode(event["protocolData"]["mqtt"]["password"]) == b"pw"
    assert event["protocolData"]["mqtt"]["username"] == f"u?x-amz-customauthorizer-name={name}"


# --- the mosquitto clients, as the sandbox README shows them -------------------------------------------

def test_mosquitto_clients_with_custom_auth(settings, device_auth):
    import shutil
    import subprocess
    if not (shutil.which("mosquitto_sub") and shutil.which("mosquitto_pub")):
        pytest.skip("mosquitto_sub/mosquitto_pub are not installed (apt-get install mosquitto-clients)")
    host, port = host_port(settings)
    user = (f"device?x-amz-customauthorizer-name={device_auth['name']}"
            f"&x-amz-customauthorizer-signature={quote(device_auth['signature'], safe='')}&token={TOKEN}")
    common = ["-h", host, "-p", str(port), "--cafile", str(settings.ca_bundle), "--tls-alpn", "mqtt",
              "-u", user, "-P", "open-sesame"]
    sub = subprocess.Popen(["mosquitto_sub", *common, "-i", "mosq1", "-t", "dev/mosq1/#", "-C", "1", "-W", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until its subscription is in place
            entries = settings.client("logs").filter_log_events(logGroupName="AWSIotLogsV2")["events"]
            if any('"Subscribe"' in e["message"] and "mosq1" in e["message"] for e in entries):
                break
            time.sleep(0.1)
        settings.client("iot-data").publish(topic="dev/mosq1/hello", qos=1, payload=b"hi mosquitto")
        out, err = sub.communicate(timeout=20)
    finally:
        sub.kill()
    assert out.strip() == "hi mosquitto", err
    refused = subprocess.run(["mosquitto_pub", *common[:-1], "wrong", "-i", "mosq2", "-t", "dev/mosq2/x",
                              "-m", "no"], capture_output=True, text=True, timeout=20)
    assert refused.returncode != 0 and "rror" in refused.stderr


# --- custom auth in the WebSocket upgrade itself, the default authorizer, SigV4 iot-data ---------------

def ws_connect_raw(settings, path: str, headers: dict, client_id: str) -> tuple[int, bytes]:
    """Upgrade with wsproto as the client, send one MQTT 3.1.1 CONNECT (no credentials), return
    (HTTP status, first MQTT bytes back)."""
    import socket as socket_mod

    from wsproto import WSConnection
    from wsproto.connection import ConnectionType
    from wsproto.events import AcceptConnection, BytesMessage, RejectConnection, Request

    host, port = host_port(settings)
    ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
    sock = ctx.wrap_socket(socket_mod.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host)
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"{host}:{port}", target=path, subprotocols=["mqtt"],
                                 extra_headers=[(k.encode(), v.encode()) for k, v in headers.items()])))
    status, got = None, b""
    connect = bytes([0x10, 12 + len(client_id)]) + b"\x00\x04MQTT\x04\x02\x00\x3c" + \
        len(client_id).to_bytes(2, "big") + client_id.encode()
    try:
        while status is None or (status == 101 and not got):
            data = sock.recv(65536)
            if not data:
                break
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    status = 101
                    sock.sendall(ws.send(BytesMessage(data=connect)))
                elif isinstance(event, RejectConnection):
                    status = event.status_code
                elif isinstance(event, BytesMessage):
                    got += bytes(event.data)
            if status not in (None, 101):
                break
    finally:
        sock.close()
    return status, got


@pytest.mark.parametrize("where", ["headers", "query"])
def test_custom_auth_in_the_websocket_upgrade(settings, deployer, rsa_key, where):
    """Credentials in the upgrade request's headers or query string (AWS's documented WebSocket forms): the
    function decides at the upgrade; a tampered signature gets 403 before anything MQTT happens."""
    key, pem = rsa_key
    fn = deployer.function('''
def lambda_handler(event, context):
    region, account = context.invoked_function_arn.split(":")[3:5]
    return {"isAuthenticated": True, "principalId": "wsdevice", "disconnectAfterInSeconds": 300,
            "refreshAfterInSeconds": 300, "policyDocuments": [{"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"arn:aws:iot:{region}:{account}:client/ws-*"}]}]}
''')
    name, _ = deployer.authorizer(fn, pem, token_key="token")
    signature = base64.b64encode(key.sign(TOKEN.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    for sig, expected in ((signature, 101), ("A" + signature[1:] if signature[0] != "A" else "B" + signature[1:], 403)):
        creds = {"x-amz-customauthorizer-name": name, "x-amz-customauthorizer-signature": sig, "token": TOKEN}
        if where == "headers":
            status, got = ws_connect_raw(settings, "/mqtt", creds, "ws-one")
        else:
            query = "&".join(f"{k}={quote(v, safe='')}" for k, v in creds.items())
            status, got = ws_connect_raw(settings, f"/mqtt?{query}", {}, "ws-one")
        assert status == expected
        if expected == 101:
            assert got == b"\x20\x02\x00\x00"   # CONNACK accepted: the upgrade's authorization holds
    status, got = ws_connect_raw(settings, "/mqtt", {"x-amz-customauthorizer-name": name,
                                                     "x-amz-customauthorizer-signature": signature,
                                                     "token": TOKEN}, "other-client")
    assert (status, got) == (101, b"\x20\x02\x00\x05")  # the policy allows iot:Connect for ws-* only


def test_default_authorizer_serves_an_unnamed_mqtt_connect(settings, deployer):
    """No x-amz-customauthorizer-name in the user name: the account's default authorizer is used."""
    fn = deployer.function(DEVICE_HANDLER)
    name, _ = deployer.authorizer(fn, None)
    iot = settings.client("iot")
    previous = iot.describe_default_authorizer()["authorizerDescription"]["authorizerName"] \
        if _has_default(iot) else None
    iot.set_default_authorizer(authorizerName=name)
    try:
        host, port = host_port(settings)
        ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
        ctx.set_alpn_protocols(["mqtt"])
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="defaultdev", protocol=paho.MQTTv5)
        client.tls_set_context(ctx)
        client.username_pw_set("plain-user", "open-sesame")
        connack = Future()
        client.on_connect = lambda c, u, flags, rc, props: connack.done() or connack.set_result(rc)
        client.connect(host, port)
        client.loop_start()
        try:
            assert not connack.result(10).is_failure
        finally:
            client.disconnect()
            client.loop_stop()
    finally:
        if previous:
            iot.set_default_authorizer(authorizerName=previous)
        else:
            iot.clear_default_authorizer()


def _has_default(iot) -> bool:
    try:
        iot.describe_default_authorizer()
        return True
    except iot.exceptions.ResourceNotFoundException:
        return False


def test_sigv4_iot_data_publish_checks_the_signature(settings):
    from botocore.exceptions import ClientError
    topic = f"sigv4/{uuid.uuid4().hex[:8]}"
    with settings.watch(f"{topic}/#") as watcher:
        settings.client("iot-data").publish(topic=f"{topic}/ok", qos=1, payload=b"signed")
        assert [m.payload for m in watcher.wait_for(1)] == [b"signed"]
        import boto3
        forged = boto3.Session(aws_access_key_id=settings.access_key_id, aws_secret_access_key="not-the-secret",
                               region_name=settings.region).client(
            "iot-data", endpoint_url=f"https://{settings.data_endpoint}", verify=str(settings.ca_bundle))
        with pytest.raises(ClientError) as err:
            forged.publish(topic=f"{topic}/forged", qos=1, payload=b"forged")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        settings.client("iot-data").publish(topic=f"{topic}/after", qos=1, payload=b"sentinel")
        assert [m.payload for m in watcher.wait_for(2)] == [b"signed", b"sentinel"]  # the forged one never arrived
    entry = iot_log(settings, lambda e: e.get("topicName") == f"{topic}/forged")
    assert entry["status"] == "Failure" and "signature" in entry["details"]
