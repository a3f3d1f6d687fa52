# %% [markdown]
# # 07 · Watch the messages arrive
#
# A `200 OK` from notebook 06 says AWS IoT Core *accepted* your message. This notebook shows where
# the message went: to every MQTT client subscribed to its topic. You start a subscriber, the
# notebook's version of the MQTT test client in the AWS IoT console, publish again over HTTPS, and
# watch the message arrive byte for byte. Then you check that a denied request delivers nothing.
#
# ## What you will learn
# 1. How MQTT's publish/subscribe model works: topics, topic filters with `+` and `#`, and QoS.
# 2. How a subscriber with IAM credentials connects: MQTT over WebSocket with a SigV4-signed URL.
# 3. How to see an allowed publish arrive, unchanged, at a subscriber.
# 4. How to confirm that a denied publish delivers nothing.
# 5. How a wildcard filter (`test/#`) catches messages on many topics.
#
# **Time to learn:** 20 minutes to read everything; not on the README's 60-minute workshop path (a take-home notebook)
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | Publishing over HTTPS with a custom authorizer | Necessary | [06 · Publish over HTTPS](06-publish-https.ipynb) |
# | The token and its signature | Necessary | [05 · Test the authorizer](05-test-invoke.ipynb) |
# | What SigV4 signing is | Helpful | [00 · Set up](00-set-up.ipynb) |

# %% [markdown]
# ## Where this stage fits
#
# The custom-auth flow, with this notebook's part highlighted (the MQTT client that watches):
#
# ```mermaid
# sequenceDiagram
#     participant Device
#     participant Gateway as AWS IoT device gateway
#     participant Authorizer as Custom authorizer
#     participant Function as Lambda function
#     participant Broker as Message broker
#     participant Subscriber as MQTT subscriber
#     Device->>Gateway: 1. POST /topics/TOPIC with authorizer name, token, signature
#     Gateway->>Authorizer: 2. look up the custom authorizer by name
#     Authorizer->>Authorizer: 3. verify the token's signature with the public key
#     Authorizer->>Function: 4. invoke (allowed by the function's resource policy)
#     Function-->>Authorizer: 5. isAuthenticated, principalId, policyDocuments
#     Authorizer->>Authorizer: 6. does the policy allow iot:Publish on the topic?
#     rect rgb(255, 230, 140)
#     Gateway->>Broker: 7. publish the message
#     Broker-->>Subscriber: 8. deliver to matching subscriptions
#     end
#     Gateway-->>Device: 9. 200 OK, or 403 Forbidden
# ```
#
# (JupyterLab 4.1 and later draw this diagram; elsewhere it shows as text. The README has the whole flow.)

# %%
import json

from helpers.errors import show_briefly
from helpers.keys import sign_token
from helpers.mqtt import watch_from_session
from helpers.publish import custom_auth_inputs, send
from helpers.widgets import format_messages, message_view
from helpers.workbook import open_workbook

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback

# %% [markdown]
# Open the workbook and prepare what a publish needs, as in notebook 06: the authorizer's name, the
# token key name, the token and its signature.

# %%
wb = open_workbook()
token_key_name, token, private_key_path = custom_auth_inputs(wb.state)  # as notebooks 02-05 recorded them
signature = sign_token(private_key_path, token)
topic = "test/cust-auth/topic"


def publish(payload, action_token="allow", to_topic=topic):
    """One HTTPS publish through the custom authorizer (the request of notebook 06, in helpers/publish.py)."""
    return send(wb, to_topic, payload, authorizer=wb.names.authorizer, token_key_name=token_key_name,
                token=token, signature=signature, action_token=action_token)


print("Data endpoint:", wb.data_endpoint)

# %% [markdown]
# ## 1. MQTT in five ideas
#
# - **Publish/subscribe.** Clients never talk to each other. A publisher sends a message to a
#   **topic** on the **message broker**; the broker delivers a copy to every client whose
#   subscription matches. The publisher does not know who (if anyone) is listening.
# - **Topics** are UTF-8 strings with levels separated by `/`, such as `test/cust-auth/topic`. They
#   need not be created first, and they are case-sensitive.
# - **Topic filters** are what a subscriber asks for. `+` matches exactly one level
#   (`test/+/topic` matches `test/cust-auth/topic`); `#` matches any number of levels and must come
#   last (`test/#` matches everything under `test/`). A filter without wildcards matches one topic.
# - **QoS** (quality of service) is per message and per subscription. QoS 0 is "at most once": sent
#   once, never acknowledged. QoS 1 is "at least once": acknowledged, and resent until it is, so it
#   can arrive twice. AWS IoT Core supports these two. A subscriber receives a message at the lower
#   of the two levels, so your `qos=0` publish arrives as QoS 0 even on a QoS 1 subscription.
# - **The broker keeps nothing** for a topic with no subscribers (unless the message is *retained*):
#   subscribe first, then publish.

# %% [markdown]
# ## 2. Subscribe
#
# The MQTT test client in the AWS console is itself an MQTT client, logged in as *you*, the IAM
# user. The workbook's watcher does the same: it connects to the same data endpoint with **MQTT over
# WebSocket**, and authenticates the way AWS IoT expects from IAM identities: the `wss://ENDPOINT/mqtt`
# URL carries a **SigV4 signature** made with your AWS credentials (service name
# `iotdevicegateway`). No custom authorizer is involved on this side; AWS IoT checks your IAM
# permissions (`iot:Connect`, `iot:Subscribe`, `iot:Receive`) instead. The code is the same on the
# sandbox, which checks the signature the same way (`helpers/mqtt.py` shows how the URL is signed).
#
# `start()` returns once the broker has acknowledged the subscription (the MQTT `SUBACK`), so
# nothing you publish afterwards can be missed.

# %%
watch = watch_from_session(wb.session, wb.data_endpoint, topic, ca_bundle=wb.ca_bundle)
watch.start(timeout=15)
print(f"Subscribed to {watch.topic_filter!r} with QoS {watch.qos}; messages so far: {len(watch.messages)}")

# %% [markdown]
# ### What just happened
# The watcher opened a TLS connection, upgraded it to a WebSocket with the signed URL, sent an MQTT
# `CONNECT` (answered by `CONNACK`) and a `SUBSCRIBE` for `test/cust-auth/topic` (answered by
# `SUBACK`). It now waits in the background for messages.
#
# From a terminal in the repository's folder, the sandbox has the same subscriber as a command:
#
# ```bash
# .venv/bin/python -m helpers.sandbox subscribe 'test/#'
# ```

# %% [markdown]
# ### Troubleshooting
# - **`MqttConnectionError: ... (HTTP 403 Forbidden): the SigV4 signature was not accepted`**: the
#   credentials, the region or this machine's clock is wrong. A signed URL is only valid for a few
#   minutes around the time in it.
# - **`MqttConnectionError: The TLS certificate of ... is not trusted`**: on the sandbox, pass
#   `ca_bundle=wb.ca_bundle`; on AWS, leave it `None` so the system's trust store is used.
# - **`MqttConnectionError: The connection to ... closed before the MQTT CONNACK`** (AWS): your IAM
#   identity is not allowed `iot:Connect`; AWS IoT closes the connection rather than explain.

# %% [markdown]
# ## 3. Publish, and watch it arrive
#
# The view below is live, like the console's test client: each message appears in it as it
# arrives, newest first, with the time, topic, QoS, retain flag and the payload (JSON
# pretty-printed). The publish cell is right under it, so you see the message land.

# %%
view = message_view(watch)
view

# %% [markdown]
# Publish over HTTPS exactly as in notebook 06, then wait for the message. `wait_for(n)` returns
# once at least `n` messages have arrived (or raises `MqttTimeoutError` after the timeout).

# %%
payload = json.dumps({"data_mode": "workbook", "vibration": 180, "temperature": 38})
before = len(watch.messages)
allowed = publish(payload, action_token="allow")
print("HTTPS publish:", allowed.status, allowed.body["message"])
arrived = watch.wait_for(before + 1, timeout=10)[before:]
print(format_messages(arrived))

# %% [markdown]
# ### What just happened
# The publish passed the authorizer, the broker matched its topic against the watcher's filter, and
# delivered it. The payload arrived as the very bytes you sent: AWS IoT does not parse or rewrite
# it. The cell below compares them.

# %%
received = arrived[0]
print("topic:         ", received.topic)
print("same bytes:    ", received.payload == payload.encode())
print("QoS delivered: ", received.qos)

# %% [markdown]
# ## 4. A denied publish delivers nothing
#
# Now publish with `actionToken=deny`. The function answers with a Deny policy, AWS IoT answers
# `403 Forbidden`, and the message is dropped before it reaches the broker. How do you show that
# nothing came? Waiting a while and seeing nothing proves little: how long is long enough? Send a
# **sentinel** instead: an allowed message on the same topic, right after the denied one. When the
# sentinel arrives, the watcher is connected and caught up, and whatever arrived since the denied
# publish is on screen. The same live view again, here in sight.

# %%
view

# %%
denied_payload = json.dumps({"data_mode": "workbook", "note": "this one is denied"})
count_before_deny = len(watch.messages)
denied = publish(denied_payload, action_token="deny")
print("HTTPS publish:", denied.status, denied.body["message"])

# %%
sentinel_payload = json.dumps({"data_mode": "workbook", "note": "sentinel, sent after the denied one"})
sentinel = publish(sentinel_payload, action_token="allow")
print("HTTPS publish of the sentinel:", sentinel.status, sentinel.body["message"])
since_deny = watch.wait_for(count_before_deny + 1, timeout=10)[count_before_deny:]
print(format_messages(since_deny))

# %% [markdown]
# Only the sentinel arrived: the denied message was never delivered. (Had the sentinel not come
# either, `wait_for` would have raised `MqttTimeoutError` after 10 seconds: then the watcher, not
# the authorizer, is the problem.) On AWS, where the broker does not promise to deliver messages in
# the order they were sent, a sentinel is strong evidence rather than proof; here the denied
# message never reached the broker at all, so nothing can come late.

# ### Troubleshooting
# If an *allowed* message does not arrive, check, in this order:
# - the publish really returned `200` (a `403` delivers nothing);
# - the watcher and the publisher use the same account and region: the data endpoint is per account
#   and region, so a subscriber on another endpoint sees nothing;
# - the topic filter matches the topic exactly, including letter case; when in doubt, subscribe to
#   `#` (everything) and look at the topics that arrive.

# %% [markdown]
# ## 5. Wildcards: watch a whole tree of topics
#
# A second watcher subscribes to `test/#`. Publish once to `test/cust-auth/topic` and once to
# another topic under `test/`: the wildcard watcher gets both, the exact watcher only the first.

# %%
everything = watch_from_session(wb.session, wb.data_endpoint, "test/#", ca_bundle=wb.ca_bundle)
everything.start(timeout=15)
print("Watching 'test/#' as well")

# %%
exact_before = len(watch.messages)
for to_topic in ("test/workbook/other-topic", topic):  # the exact topic last: it is the exact watcher's sentinel
    result = publish(json.dumps({"to": to_topic}), to_topic=to_topic)
    print(f"published to {to_topic}: {result.status}")
print("\nOn 'test/#':")
print(format_messages(everything.wait_for(2, timeout=10)))
print(f"\nOn {topic!r}:")
print(format_messages(watch.wait_for(exact_before + 1, timeout=10)[exact_before:]))

# %% [markdown]
# ### What just happened
# The broker compared each topic with each subscription's filter. `test/#` matches both topics;
# `test/cust-auth/topic` matches only itself. Your custom authorizer's policy allows `iot:*` on
# every topic of the account, so both publishes were allowed; a tighter policy could allow
# `topic/test/cust-auth/*` only, and the second publish would get `403`.
#
# ## 6. Stop watching
#
# A watcher holds a connection open until you stop it. Stop both; their messages stay readable.

# %%
view.stop()
watch.stop()
everything.stop()
print("Stopped. Messages kept:", len(watch.messages), "and", len(everything.messages))

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: the allowed message arrived byte for byte on its topic,
# and the denied one never did. It stops the watchers again on its way out, whatever happens (stopping
# twice is harmless).

# %%
try:
    assert allowed.status == 200 and denied.status == 403
    assert received.topic == topic and received.payload == payload.encode()
    assert all(message.payload != denied_payload.encode() for message in watch.messages + everything.messages)
    assert [m.payload for m in since_deny] == [sentinel_payload.encode()]
    assert len(watch.messages) == count_before_deny + 2  # the sentinel and the wildcard section's message
    assert sorted(m.topic for m in everything.messages) == ["test/cust-auth/topic", "test/workbook/other-topic"]
    print("✓ Watch the messages: the allowed message arrived byte for byte; the denied one did not.")
finally:
    watch.stop()
    everything.stop()

# %% [markdown]
# ## Questions
# 1. Which of these topic filters match the topic `test/cust-auth/topic`: `test/+`, `test/+/topic`,
#    `test/#`, `#`, `Test/#`?
#
# <details><summary>Solution</summary>
#
# `test/+/topic`, `test/#` and `#`. `test/+` matches exactly two levels (`test/x`), and `Test/#`
# differs in letter case: topics are case-sensitive.
# </details>
#
# 2. The watcher connects with SigV4 and your IAM credentials, not with the custom authorizer. What
#    would change if it used the custom authorizer instead?
#
# <details><summary>Solution</summary>
#
# It would send the authorizer name, token and signature (in the WebSocket request's headers or
# query, or in the MQTT user name), and the function would be invoked on connect. The function's
# policy would then have to allow `iot:Connect`, `iot:Subscribe` and `iot:Receive`, and AWS IoT
# would cache that policy for `refreshAfterInSeconds` (600 s) before invoking the function again.
# </details>
#
# 3. You publish with QoS 0 and nothing is subscribed. You subscribe a second later. Does the
#    message arrive?
#
# <details><summary>Solution</summary>
#
# No. The broker delivers to the subscriptions that exist at publish time and keeps nothing else,
# unless the message was published with `retain=true`.
# </details>

# %% [markdown]
# ## Summary
# - MQTT is publish/subscribe: messages go to topics; subscribers ask for topic filters, with `+`
#   for one level and `#` for the rest.
# - An IAM identity subscribes with MQTT over WebSocket and a SigV4-signed URL; the sandbox accepts
#   the same connection.
# - An allowed HTTPS publish reaches every matching subscriber, byte for byte; a denied one reaches
#   nobody.
#
# ## What's next
# In [08 · Experiments](08-experiments.ipynb) you break things on purpose (a tampered signature, a
# denied token, a badly encoded query string) and read in the logs why each request was refused.
