"""helpers/sandbox/mqtt/broker.py: the broker through an in-memory stream, packet by packet.

Each test runs its own asyncio loop; the in-memory stream (tests/mqtt_harness.py) has
real back-pressure. Deadlines are shortened through Limits, and no test asserts timing.
"""
from __future__ import annotations

import asyncio
import functools

import pytest

from helpers.sandbox.mqtt import codec as c
from helpers.sandbox.mqtt.broker import Broker, Limits, RetainedQuotaExceeded, topic_matches
from tests.mqtt_harness import ACCOUNT, Hooks, RawClient, allow, deny, fast_limits, policy


def run(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 30))
    return wrapper


async def connected(broker, client_id="c1", level=4, **kw) -> RawClient:
    client = RawClient(broker, level, **{k: v for k, v in kw.items() if k in ("high_water", "preauth")})
    ack = await client.connect(client_id, **{k: v for k, v in kw.items() if k not in ("high_water", "preauth")})
    assert isinstance(ack, c.Connack) and ack.reason_code == 0, ack
    return client


async def subscribe(client, *filters, qos=1, packet_id=1):
    client.send(c.Subscribe(packet_id, [c.Subscription(f, qos) for f in filters]))
    ack = await client.recv()
    assert isinstance(ack, c.Suback), ack
    return ack.reason_codes


# --------------------------------------------------------------------------- CONNECT

@pytest.mark.parametrize("level", [4, 5])
@run
async def test_connect_publish_subscribe_roundtrip(level):
    hooks = Hooks()
    broker = Broker(hooks, fast_limits())
    sub = await connected(broker, "sub", level)
    assert await subscribe(sub, "a/+") == [1]
    pub = await connected(broker, "pub", level)
    pub.send(c.Publish("a/b", b"hello", 1, False, False, 7))
    ack = await pub.recv()
    assert isinstance(ack, c.Puback) and ack.packet_id == 7 and ack.reason_code == 0
    msg = await sub.recv()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("a/b", b"hello", 1, False)
    sub.send(c.Puback(msg.packet_id))
    assert broker.publish("a/c", b"from https", qos=0, retain=False) == 1
    msg2 = await sub.recv()
    assert (msg2.topic, msg2.payload, msg2.qos) == ("a/c", b"from https", 0)
    await broker.close()
    assert [e["eventType"] for e in hooks.events(status="Success")][:4] == ["Connect", "Subscribe", "Connect",
                                                                            "Publish-In"]
    out = hooks.events("Publish-Out", "Success")
    assert {e["topicName"] for e in out} == {"a/b", "a/c"} and all(e["clientId"] == "sub" for e in out)
    entry = hooks.events("Publish-In")[0]
    assert entry["accountId"] == ACCOUNT and entry["protocol"] == "MQTT" and entry["clientId"] == "pub"
    assert entry["principalId"] == "learner" and entry["sourceIp"] == "127.0.0.1" and "traceId" in entry


@run
async def test_mqtt5_connack_advertises_aws_limits():
    broker = Broker(Hooks(), fast_limits())
    client = RawClient(broker, 5)
    ack = await client.connect("dev", keep_alive=5, properties={"session_expiry_interval": 3600})
    p = ack.properties
    assert ack.reason_code == 0
    assert p["maximum_qos"] == 1 and p["retain_available"] == 1 and p["topic_alias_maximum"] == 8
    assert p["receive_maximum"] == 100 and p["subscription_identifier_available"] == 0
    assert p["server_keep_alive"] == 30          # below AWS's minimum: raised to 30 s
    assert p["session_expiry_interval"] == 0     # the sandbox keeps no session
    await broker.close()


@pytest.mark.parametrize("level,username,code", [(4, "deny", 4), (4, "unauth", 5), (5, "deny", 0x86),
                                                 (5, "unauth", 0x87)])
@run
async def test_refused_connect_return_codes(level, username, code):
    hooks = Hooks()
    broker = Broker(hooks, fast_limits())
    client = RawClient(broker, level)
    ack = await client.connect("c1", username=username, password=b"pw")
    assert isinstance(ack, c.Connack) and ack.reason_code == code
    assert await client.closed() == []
    entry = hooks.events("Connect", "Failure")[0]
    assert entry["reason"] in ("AUTHENTICATION_FAILURE", "AUTHORIZATION_FAILURE") and entry["details"]
    assert entry["logLevel"] == "ERROR" and entry["clientId"] == "c1"
    assert hooks.calls[0][1].password == b"pw" and hooks.calls[0][1].username == username


@pytest.mark.parametrize("level,code", [(4, 5), (5, 0x87)])
@run
async def test_iot_connect_denied_by_policy(level, code):
    hooks = Hooks([policy(allow("iot:Connect", "client/good-*"))])
    broker = Broker(hooks, fast_limits())
    ok = await connected(broker, "good-1", level)
    bad = RawClient(broker, level)
    ack = await bad.connect("evil")
    assert ack.reason_code == code
    failure = hooks.events("Connect", "Failure")[0]
    assert failure["reason"] == "AUTHORIZATION_FAILURE" and "iot:Connect" in failure["details"]
    ok.send(c.Pingreq())
    assert isinstance(await ok.recv(), c.Pingresp)
    await broker.close()


@run
async def test_preauth_skips_authenticate():
    hooks = Hooks()
    broker = Broker(hooks, fast_limits())
    from helpers.sandbox.mqtt.broker import AllowAll
    client = await connected(broker, "ws1", 4, preauth=AllowAll("sigv4user", "us-east-1", ACCOUNT))
    assert hooks.calls == []
    assert hooks.events("Connect")[0]["principalId"] == "sigv4user"
    await broker.close()
    assert await client.closed() == []


@run
async def test_slow_authenticate_does_not_block_other_clients():
    hooks = Hooks()
    broker = Broker(hooks, fast_limits(authenticate_timeout=10))
    slow = RawClient(broker, 4)
    slow.send(c.Connect(4, "slow", True, 60, "slow", None, None, {}))
    await asyncio.sleep(0)
    fast = await connected(broker, "fast")      # served while "slow" waits for its authorizer
    fast.send(c.Pingreq())
    assert isinstance(await fast.recv(), c.Pingresp)
    hooks.release.set()
    ack = await slow.recv()
    assert ack.reason_code == 0
    await broker.close()


@run
async def test_duplicate_client_id_takes_over_and_publishes_will():
    hooks = Hooks()
    broker = Broker(hooks, fast_limits())
    watcher = await connected(broker, "watch")
    await subscribe(watcher, "wills/dev")
    first = await connected(broker, "dev", 5, will=c.Will("wills/dev", b"gone", 0, False))
    second = await connected(broker, "dev", 5)
    got = await first.closed()
    assert isinstance(got[-1], c.Disconnect) and got[-1].reason_code == c.SESSION_TAKEN_OVER
    will = await watcher.recv()
    assert will.topic == "wills/dev" and will.payload == b"gone"
    reasons = [e.get("disconnectReason") for e in hooks.events("Disconnect")]
    assert reasons == ["DUPLICATE_CLIENTID"]
    second.send(c.Pingreq())
    assert isinstance(await second.recv(), c.Pingresp)
    await broker.close()


@run
async def test_clean_disconnect_sends_no_will_and_close_sends_none():
    hooks = Hooks()
    broker = Broker(hooks, fast_limits())
    watcher = await connected(broker, "watch")
    await subscribe(watcher, "w")
    a = await connected(broker, "a", will=c.Will("w", b"a-will"))
    a.send(c.Disconnect())
    assert await a.closed() == []
    b = await connected(broker, "b", will=c.Will("w", b"b-will"))
    b.stream.client_eof()                      # connection lost: the will goes out
    assert (await watcher.recv()).payload == b"b-will"
    await connected(broker, "c", will=c.Will("w", b"c-will"))
    await broker.close()                       # shutdown: no wills
    assert await watcher.closed() == []
    reasons = sorted(e["disconnectReason"] for e in hooks.events("Disconnect"))
    assert reasons == ["CLIENT_INITIATED_DISCONNECT", "CONNECTION_LOST", "SERVER_INITIATED_DISCONNECT",
                       "SERVER_INITIATED_DISCONNECT"]


@run
async def test_unsupported_protocol_level_gets_return_code_1():
    broker = Broker(Hooks(), fast_limits())
    client = RawClient(broker, 4)
    client.send_raw(bytes.fromhex("100c00044d5154540602003c0000"))   # level 6
    ack = await client.recv()
    assert ack.reason_code == 1
    assert await client.closed() == []


# --------------------------------------------------------------------------- authorization

POLICY = [policy(allow("iot:Connect", "client/*"),
                 allow("iot:Publish", "topic/dev/${iot:ClientId}/*"),
                 allow("iot:Subscribe", "topicfilter/dev/*"),
                 allow("iot:Receive", "topic/dev/*"),
                 deny("iot:Receive", "topic/dev/secret/*"))]


@run
async def test_unauthorized_publish_311_disconnects():
    hooks = Hooks(POLICY)
    broker = Broker(hooks, fast_limits())
    client = await connected(broker, "c1")
    client.send(c.Publish("dev/c1/ok", b"x", 1, False, False, 1))
    assert isinstance(await client.recv(), c.Puback)
    client.send(c.Publish("dev/c2/not-mine", b"x", 1, False, False, 2))
    assert await client.closed() == []          # MQTT 3.1.1: no PUBACK, the connection is closed
    fail = hooks.events("Publish-In", "Failure")[0]
    assert fail["reason"] == "AUTHORIZATION_FAILURE" and fail["topicName"] == "dev/c2/not-mine"
    assert hooks.events("Disconnect")[0]["disconnectReason"] == "AUTH_ERROR"


@run
async def test_unauthorized_publish_5_gets_puback_0x87_and_stays():
    hooks = Hooks(POLICY)
    broker = Broker(hooks, fast_limits())
    client = await connected(broker, "c1", 5)
    client.send(c.Publish("dev/c2/not-mine", b"x", 1, False, False, 2))
    ack = await client.recv()
    assert isinstance(ack, c.Puback) and ack.reason_code == c.NOT_AUTHORIZED and ack.properties["reason_string"]
    client.send(c.Publish("dev/c2/not-mine", b"x", 0, False, False, None))   # QoS 0: dropped
    client.send(c.Pingreq())
    assert isinstance(await client.recv(), c.Pingresp)
    assert len(hooks.events("Publish-In", "Failure")) == 2
    await broker.close()


@pytest.mark.parametrize("level,failure", [(4, 0x80), (5, 0x87)])
@run
async def test_subscribe_authorization_per_filter(level, failure):
    hooks = Hooks(POLICY)
    broker = Broker(hooks, fast_limits())
    client = await connected(broker, "c1", level)
    assert await subscribe(client, "dev/x", "other/x", "dev/#", qos=1) == [1, failure, 1]
    assert [e["status"] for e in hooks.events("Subscribe")] == ["Success", "Failure", "Success"]
    await broker.close()


@run
async def test_receive_checked_per_delivery():
    hooks = Hooks(POLICY)
    broker = Broker(hooks, fast_limits())
    sub = await connected(broker, "sub")
    assert await subscribe(sub, "dev/#", qos=0) == [0]
    assert broker.publish("dev/secret/pin", b"1234", qos=0, retain=False) == 0
    assert broker.publish("dev/open", b"hi", qos=0, retain=False) == 1
    msg = await sub.recv()
    assert msg.topic == "dev/open"
    assert hooks.events("Publish-Out", "Failure")[0]["topicName"] == "dev/secret/pin"
    await broker.close()


@run
async def test_retain_needs_retain_publish():
    hooks = Hooks([policy(allow("iot:Connect", "client/*"), allow("iot:Publish", "topic/*"))])
    broker = Broker(hooks, fast_limits())
    client = await connected(broker, "c1", 5)
    client.send(c.Publish("t", b"x", 1, True, False, 3))
    ack = await client.recv()
    assert ack.reason_code == c.NOT_AUTHORIZED and "iot:RetainPublish" in ack.properties["reason_string"]
    assert broker.stats()["retained"] == 0
    await broker.close()


@run
async def test_policy_refresh_and_disconnect_after():
    hooks = Hooks(POLICY)
    hooks.refresh_after = 0.05
    refreshed = asyncio.Event()

    async def refresher():
        refreshed.set()
        from helpers.sandbox.mqtt.broker import Refusal
        return Refusal(True, "AUTHORIZATION_FAILURE", "the authorizer now says no")
    hooks.refresher = refresher
    broker = Broker(hooks, fast_limits())
    client = await connected(broker, "c1", 5)
    got = await client.closed()
    assert refreshed.is_set()
    assert isinstance(got[-1], c.Disconnect) and got[-1].reason_code == c.NOT_AUTHORIZED
    assert hooks.events("Disconnect")[0]["disconnectReason"] == "AUTH_ERROR"

    hooks2 = Hooks(POLICY)
    hooks2.disconnect_after = 0.05
    broker2 = Broker(hooks2, fast_limits())
    client2 = await connected(broker2, "c2", 5)
    got2 = await client2.closed()
    assert got2[-1].reason_code == c.MAXIMUM_CONNECT_TIME
    assert hooks2.events("Disconnect")[0]["disconnectReason"] == "CUSTOMAUTH_TTL_EXPIRATION"


# --------------------------------------------------------------------------- retained, MQTT 5 features

@run
async def test_retained_delivered_only_to_exact_filters():
    broker = Broker(Hooks(), fast_limits())
    broker.publish("conf/dev1", b"v1", qos=1, retain=True)
    exact = await connected(broker, "exact")
    await subscribe(exact, "conf/dev1")
    msg = await exact.recv()
    assert (msg.topic, msg.payload, msg.retain) == ("conf/dev1", b"v1", True)
    wild = await connected(broker, "wild")
    await subscribe(wild, "conf/+")
    broker.publish("conf/dev1", b"", qos=0, retain=True)   # deletes it; still delivered, without RETAIN
    deleted = await wild.recv()
    assert deleted.payload == b"" and deleted.retain is False   # the wildcard got no retained copy first
    assert broker.stats()["retained"] == 0
    await broker.close()


@run
async def test_mqtt5_properties_pass_through_to_5_and_drop_for_311():
    broker = Broker(Hooks(), fast_limits())
    v5 = await connected(broker, "v5", 5)
    v3 = await connected(broker, "v3", 4)
    await subscribe(v5, "req")
    await subscribe(v3, "req")
    props = {"user_property": [("k", "v"), ("k", "w")], "content_type": "text/plain", "response_topic": "resp",
             "correlation_data": b"\x01", "payload_format_indicator": 1}
    pub = await connected(broker, "pub", 5)
    pub.send(c.Publish("req", b"q", 0, False, False, None, dict(props, topic_alias=1)))
    pub.send(c.Publish("", b"q2", 0, False, False, None, {"topic_alias": 1}))
    m1, m2 = await v5.recv(), await v5.recv()
    assert m1.properties == props and m2.topic == "req" and m2.payload == b"q2"
    assert (await v3.recv()).properties == {}
    await broker.close()


@run
async def test_topic_alias_out_of_range_is_0x94():
    broker = Broker(Hooks(), fast_limits())
    pub = await connected(broker, "pub", 5)
    pub.send(c.Publish("t", b"q", 0, False, False, None, {"topic_alias": 9}))
    got = await pub.closed()
    assert got[-1].reason_code == c.TOPIC_ALIAS_INVALID


@run
async def test_message_expiry_drops_stale_queued_messages():
    later = [0.0]  # seconds the broker's clock runs ahead of the loop's
    broker = Broker(Hooks(), fast_limits(), clock=lambda: asyncio.get_running_loop().time() + later[0])
    sub = await connected(broker, "sub", 5, properties={"receive_maximum": 1})
    await subscribe(sub, "t")
    broker.publish("t", b"first", qos=1, retain=False)
    broker.publish("t", b"stale", qos=1, retain=False, properties={"message_expiry_interval": 1})
    first = await sub.recv()
    assert first.payload == b"first"
    later[0] += 1.1                         # "stale" waits behind the window of 1 until it expires
    sub.send(c.Puback(first.packet_id))
    broker.publish("t", b"fresh", qos=1, retain=False)
    assert (await sub.recv()).payload == b"fresh"
    await broker.close()


@run
async def test_shared_subscription_delivers_to_one_member():
    broker = Broker(Hooks(), fast_limits())
    a = await connected(broker, "a")
    b = await connected(broker, "b")
    await subscribe(a, "$share/g/jobs/+", qos=0)
    await subscribe(b, "$share/g/jobs/+", qos=0)
    counts = [broker.publish(f"jobs/{i}", b"x", qos=0, retain=False) for i in range(4)]
    assert counts == [1, 1, 1, 1]
    got_a = [(await a.recv()).topic for _ in range(2)]
    got_b = [(await b.recv()).topic for _ in range(2)]
    assert sorted(got_a + got_b) == ["jobs/0", "jobs/1", "jobs/2", "jobs/3"]
    await broker.close()


@run
async def test_subscribe_limits_and_qos2_downgrade():
    broker = Broker(Hooks(), fast_limits())
    client = await connected(broker, "c", 5)
    codes = await subscribe(client, *[f"t/{i}" for i in range(9)], qos=2)
    assert codes == [1] * 8 + [c.QUOTA_EXCEEDED]
    client.send(c.Publish("t/1", b"x", 2, False, False, 5))
    got = await client.closed()
    assert got[-1].reason_code == c.QOS_NOT_SUPPORTED


def test_aws_hash_does_not_match_parent():
    assert topic_matches("sensor/#", "sensor/temp") and topic_matches("sensor/#", "sensor/")
    assert not topic_matches("sensor/#", "sensor")


# --------------------------------------------------------------------------- bounds

@run
async def test_slow_subscriber_is_dropped_and_publish_never_blocks():
    hooks = Hooks()
    broker = Broker(hooks, fast_limits(max_queued_bytes=64 * 1024, max_queued_messages=10_000))
    stuck = await connected(broker, "stuck", high_water=16 * 1024)    # never reads after SUBACK
    await subscribe(stuck, "load")
    healthy = await connected(broker, "healthy")
    await subscribe(healthy, "load", qos=0)
    payload = b"x" * 4096
    received = 0
    for i in range(200):                      # ~800 KB to a subscriber that reads nothing
        broker.publish("load", payload, qos=0, retain=False)
        msg = await healthy.recv()
        assert msg.payload == payload
        received += 1
    assert received == 200
    assert broker.stats()["dropped_slow_consumers"] == 1
    assert stuck.stream.closed
    assert broker.stats()["queued_bytes"] < 64 * 1024
    drop = [e for e in hooks.events("Disconnect") if e["clientId"] == "stuck"][0]
    assert drop["disconnectReason"] == "THROTTLED" and "not reading" in drop["details"]
    await broker.close()


@run
async def test_qos1_subscriber_without_pubacks_is_bounded():
    hooks = Hooks()
    broker = Broker(hooks, fast_limits(max_inflight=10, max_queued_messages=50))
    lazy = await connected(broker, "lazy")
    await subscribe(lazy, "q")
    other = await connected(broker, "other")
    await subscribe(other, "q")
    publisher = await connected(broker, "pub")
    for i in range(1, 200):
        publisher.send(c.Publish("q", b"%d" % i, 1, False, False, i))
        ack = await publisher.recv()
        assert isinstance(ack, c.Puback) and ack.packet_id == i          # the publisher is never starved
        msg = await other.recv()
        assert msg.payload == b"%d" % i
        other.send(c.Puback(msg.packet_id))
    stats = broker.stats()
    assert stats["dropped_slow_consumers"] == 1      # lazy: 10 in flight + 50 queued, then dropped
    ids = []
    while True:
        p = await lazy.recv()
        if p is None:
            break
        if isinstance(p, c.Publish):
            ids.append(p.packet_id)
    assert len(ids) == 10 and len(set(ids)) == 10    # never more than the window of packet ids
    assert stats["inflight"] <= 10 + 0
    await broker.close()


@pytest.mark.parametrize("data", [b"\x10", b"\x10\x0c\x00\x04MQ", b"\x30"])
@run
async def test_half_sent_connect_closed_after_deadline(data):
    broker = Broker(Hooks(), fast_limits())
    client = RawClient(broker, 4)
    client.send_raw(data)
    assert await client.closed() == []
    assert broker.stats()["connections"] == 0


@run
async def test_half_sent_packet_after_connect_closed_after_deadline():
    hooks = Hooks()
    broker = Broker(hooks, fast_limits())
    client = await connected(broker, "c")
    client.send_raw(b"\x30\x80")              # fixed header cut in the middle of the remaining length
    assert await client.closed() == []
    assert hooks.events("Disconnect")[0]["disconnectReason"] == "CLIENT_ERROR"


@run
async def test_keep_alive_timeout():
    hooks = Hooks()
    broker = Broker(hooks, fast_limits(keep_alive_min=0, keep_alive_max=1))
    client = await connected(broker, "c", 5, keep_alive=1)
    got = await client.closed()
    assert got[-1].reason_code == c.KEEP_ALIVE_TIMEOUT
    assert hooks.events("Disconnect")[0]["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"


@pytest.mark.parametrize("raw", [bytes.fromhex("3207000174") + b"\x00\x00" + b"hi",   # PUBLISH QoS 1, id 0
                                 bytes.fromhex("8206000000017400")])                   # SUBSCRIBE id 0
@run
async def test_packet_id_zero_closes(raw):
    broker = Broker(Hooks(), fast_limits())
    client = await connected(broker, "c")
    client.send_raw(raw)
    assert await client.closed() == []


@run
async def test_oversized_packet_refused_from_header():
    broker = Broker(Hooks(), fast_limits(max_packet_size=1024))
    client = await connected(broker, "c", 5)
    client.send_raw(b"\x30\xff\xff\x03")      # announces 65535 bytes: refused before they arrive
    got = await client.closed()
    assert got[-1].reason_code == c.PACKET_TOO_LARGE


@run
async def test_payload_over_128kb_disconnects():
    broker = Broker(Hooks(), fast_limits())
    client = await connected(broker, "c", 5)
    client.send(c.Publish("t", b"x" * (128 * 1024 + 1), 0, False, False, None))
    got = await client.closed()
    assert got[-1].reason_code == c.PACKET_TOO_LARGE


@run
async def test_retained_store_is_bounded():
    broker = Broker(Hooks(), fast_limits(max_retained_messages=2))
    broker.publish("r/1", b"a", qos=0, retain=True)
    broker.publish("r/2", b"a", qos=0, retain=True)
    with pytest.raises(RetainedQuotaExceeded):
        broker.publish("r/3", b"a", qos=0, retain=True)
    broker.publish("r/1", b"b", qos=0, retain=True)    # replacing one is fine
    assert broker.retained() == {"r/1": (b"b", 0), "r/2": (b"a", 0)}


@run
async def test_publish_rejects_bad_topics():
    broker = Broker(Hooks(), Limits())
    for topic in ("", "a/+", "x" * 257, "/".join("abcdefghi")):
        with pytest.raises(ValueError):
            broker.publish(topic, b"", qos=0, retain=False)
    with pytest.raises(ValueError):
        broker.publish("t", b"", qos=2, retain=False)


# --------------------------------------------------------------------------- log entries

@run
async def test_log_entry_fields_and_log_wanted_gate():
    hooks = Hooks()
    broker = Broker(hooks, fast_limits())
    client = await connected(broker, "c1", 5)
    client.send(c.Publish("r/t", b"x", 1, True, False, 1))
    await client.recv()
    client.send(c.Unsubscribe(2, ["never/subscribed"]))
    unsuback = await client.recv()
    assert unsuback.reason_codes == [c.NO_SUBSCRIPTION_EXISTED]
    entry = hooks.events("Publish-In")[0]
    assert entry["retain"] == "True" and entry["topicName"] == "r/t"
    import re
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", entry["timestamp"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", entry["traceId"])
    assert entry["sandbox"]["mqttVersion"] == "5" and entry["sandbox"]["transport"] == "mqtt"
    assert hooks.events("Unsubscribe")[0]["topicName"] == "never/subscribed"
    await broker.close()

    quiet = Hooks()
    quiet.log_wanted = lambda level: level == "ERROR"      # log level ERROR: only failures are written
    broker2 = Broker(quiet, fast_limits())
    ok = await connected(broker2, "ok")
    bad = RawClient(broker2, 4)
    assert (await bad.connect("bad", username="deny")).reason_code == 4
    await broker2.close()
    assert [(e["eventType"], e["status"]) for e in quiet.entries] == [("Connect", "Failure")]
    assert await ok.closed() == []


@run
async def test_policy_refresh_replaces_the_cached_policy():
    from helpers.sandbox.mqtt.broker import PolicyAuthorization
    from tests.mqtt_harness import REGION
    hooks = Hooks([policy(allow("iot:Connect", "client/*"), allow("iot:Publish", "topic/old"))])
    hooks.refresh_after = 0.05
    refreshed = asyncio.Event()

    async def refresher():
        refreshed.set()
        return PolicyAuthorization([policy(allow("iot:Connect", "client/*"), allow("iot:Publish", "topic/new"))],
                                   principal_id="dev1", region=REGION, account_id=ACCOUNT)
    hooks.refresher = refresher
    broker = Broker(hooks, fast_limits())
    client = await connected(broker, "c1", 5)
    client.send(c.Publish("old", b"x", 1, False, False, 1))
    assert (await client.recv()).reason_code == 0
    await refreshed.wait()
    await asyncio.sleep(0)
    client.send(c.Publish("old", b"x", 1, False, False, 2))
    client.send(c.Publish("new", b"x", 1, False, False, 3))
    assert [(await client.recv()).reason_code for _ in range(2)] == [c.NOT_AUTHORIZED, 0]
    await broker.close()
