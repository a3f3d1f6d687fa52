"""helpers/sandbox/mqtt/broker.py with real paho-mqtt clients, MQTT 3.1.1 and 5.

The broker has no listener of its own (the sandbox's gateway feeds it TLS and WebSocket
streams). Here a TEST-ONLY plain-TCP asyncio listener on loopback feeds Broker.serve,
so paho can talk to the broker without the gateway. It never exists in the sandbox.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from helpers.sandbox.mqtt.broker import Broker, ConnInfo
from tests.mqtt_harness import Hooks, allow, fast_limits, policy

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5


class TcpStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def read(self, max_bytes: int) -> bytes:
        return await self.reader.read(max_bytes)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


class TestListener:
    """Loopback TCP -> Broker.serve, on its own loop thread (paho is threaded)."""

    __test__ = False

    def __init__(self, hooks, limits=None):
        self.loop = asyncio.new_event_loop()
        self.hooks = hooks
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.broker = Broker(hooks, limits or fast_limits(connect_timeout=5, packet_timeout=5))
            self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(5)

    async def _client(self, reader, writer):
        host, port = writer.get_extra_info("peername")[:2]
        await self.broker.serve(TcpStream(reader, writer), ConnInfo("mqtt", host, port, None, str(uuid.uuid4())))

    def call(self, fn, *args, **kwargs):
        async def go():
            return fn(*args, **kwargs)
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(5)

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.broker.close(), self.loop).result(10)
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Paho:
    def __init__(self, port, client_id, protocol, *, username=None, password=None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.pubacks: queue.Queue = queue.Queue()
        self.disconnects: queue.Queue = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(codes)
        self.client.on_publish = lambda c, u, mid, rc, props: self.pubacks.put((mid, rc))
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc)
        self.port = port

    def connect(self, properties=None):
        self.client.connect("127.0.0.1", self.port, keepalive=60, properties=properties)
        self.client.loop_start()
        return self.connack.get(timeout=5)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listener():
    made = []

    def make(hooks=None, limits=None):
        made.append(TestListener(hooks or Hooks(), limits))
        return made[-1]
    yield make
    for lst in made:
        lst.stop()


@pytest.mark.parametrize("protocol", [V311, V5])
def test_paho_pub_sub_and_https_publish(listener, protocol):
    lst = listener()
    sub = Paho(lst.port, "sub", protocol)
    assert sub.connect() == 0
    sub.client.subscribe("dev/+/temp", qos=1)
    assert [int(x.value) if hasattr(x, "value") else x for x in sub.subacks.get(timeout=5)] == [1]
    pub = Paho(lst.port, "pub", protocol)
    assert pub.connect() == 0
    info = pub.client.publish("dev/1/temp", b"21.5", qos=1)
    info.wait_for_publish(5)
    msg = sub.messages.get(timeout=5)
    assert (msg.topic, msg.payload, msg.qos) == ("dev/1/temp", b"21.5", 1)
    assert lst.call(lst.broker.publish, "dev/2/temp", b"https", qos=0, retain=False) == 1
    assert sub.messages.get(timeout=5).payload == b"https"
    pub.stop()
    sub.stop()


def test_paho_mqtt5_user_properties_and_unauthorized_puback(listener):
    hooks = Hooks([policy(allow("iot:Connect", "client/*"), allow("iot:Publish", "topic/ok"),
                          allow("iot:Subscribe", "topicfilter/ok"), allow("iot:Receive", "topic/ok"))])
    lst = listener(hooks)
    sub = Paho(lst.port, "sub", V5, username="u", password="p")
    assert sub.connect() == 0
    sub.client.subscribe("ok", qos=1)
    sub.subacks.get(timeout=5)
    pub = Paho(lst.port, "pub", V5, username="u", password="p")
    assert pub.connect() == 0
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("trace", "42")]
    props.ContentType = "text/plain"
    pub.client.publish("ok", b"hi", qos=1, properties=props).wait_for_publish(5)
    msg = sub.messages.get(timeout=5)
    assert msg.properties.UserProperty == [("trace", "42")] and msg.properties.ContentType == "text/plain"
    pub.client.publish("forbidden", b"x", qos=1)
    reason_codes = [pub.pubacks.get(timeout=5)[1] for _ in range(2)]
    assert [int(getattr(rc, "value", rc)) for rc in reason_codes] == [0, 0x87]
    assert pub.client.is_connected()                 # MQTT 5: refused with PUBACK, still connected
    pub.stop()
    sub.stop()
    assert hooks.calls[0][1].username == "u" and hooks.calls[0][1].password == b"p"


@pytest.mark.parametrize("protocol,username,expected", [(V311, "deny", "Bad user name or password"),
                                                       (V5, "deny", "Bad user name or password"),
                                                       (V311, "unauth", "Not authorized"),
                                                       (V5, "unauth", "Not authorized")])
def test_paho_refused_connect(listener, protocol, username, expected):
    # paho reports 3.1.1 return codes 4/5 under the MQTT 5 names (the raw codes: test_mqtt_broker.py)
    lst = listener()
    client = Paho(lst.port, "c", protocol, username=username, password="x")
    rc = client.connect()
    assert str(rc) == expected
    client.client.loop_stop()


def test_paho_311_subscribe_refused_filter_gets_0x80(listener):
    hooks = Hooks([policy(allow("iot:Connect", "client/*"), allow("iot:Subscribe", "topicfilter/yes"))])
    lst = listener(hooks)
    client = Paho(lst.port, "c", V311, username="u", password="p")
    assert client.connect() == 0
    client.client.subscribe([("yes", 0), ("no", 1)])
    codes = client.subacks.get(timeout=5)
    assert [int(getattr(x, "value", x)) for x in codes] == [0, 0x80]
    client.stop()
