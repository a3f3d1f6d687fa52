# %% [markdown]
# # 09 · Connect a device over MQTT
#
# Notebook 06 published one message over HTTPS. Most devices that use a custom authorizer do
# something else: they keep an **MQTT** connection open, log in with a **user name and password**
# (the token and its signature ride along in the user name), and then publish and subscribe for
# hours. In this notebook your authorizer function learns to answer such a device with a
# **least-privilege** policy: this device, its own topics, nothing else. You connect the way the
# AWS IoT Device SDK does it, then by hand to see every byte of the login, and then you break
# the login in four ways and read in the log why each one was refused.
#
# ## What you will learn
# 1. How the function reads an MQTT login (`protocolData.mqtt`) and returns a least-privilege policy, tested with `test-invoke-authorizer --mqtt-context`.
# 2. How a device connects with the AWS IoT Device SDK v2 (`direct_with_custom_authorizer`, then over WebSocket), subscribes, publishes, and receives.
# 3. What goes over the wire: the user name's query string, the URL-encoded signature, ALPN `mqtt` and SNI, with paho-mqtt and the mosquitto clients.
# 4. How a wrong password, a tampered signature, another client id and a topic outside the policy are refused, and where the log says why.
# 5. What `refreshAfterInSeconds` and `disconnectAfterInSeconds` do to a long-lived connection.
# 6. How to drive a device from a small console.
#
# **Time to learn:** 40 minutes to read everything; not on the README's 60-minute workshop path (a take-home notebook)
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | The authorizer function and its policy answer | Necessary | [01 · The authorizer function](01-authorizer-function.ipynb) |
# | The authorizer, the token and its signature | Necessary | [03 · Create the authorizer](03-create-authorizer.ipynb), [05 · Test the authorizer](05-test-invoke.ipynb) |
# | MQTT topics, filters and QoS | Necessary | [07 · Watch the messages](07-watch-messages.ipynb) |
# | Reading `AWSIotLogsV2` | Helpful | [08 · Experiments](08-experiments.ipynb) |

# %% [markdown]
# ## Where this stage fits
#
# The custom-auth flow for an MQTT device, with this notebook's part highlighted:
#
# ```mermaid
# sequenceDiagram
#     participant Device
#     participant Gateway as AWS IoT device gateway
#     participant Authorizer as Custom authorizer
#     participant Function as Lambda function
#     participant Broker as Message broker
#     rect rgb(255, 230, 140)
#     Device->>Gateway: 1. TLS to port 443 with ALPN "mqtt", then CONNECT with user name (authorizer, token, signature) and password
#     end
#     Gateway->>Authorizer: 2. look up the authorizer named in the user name
#     Authorizer->>Authorizer: 3. verify the token's signature with the public key
#     Authorizer->>Function: 4. invoke with protocolData.mqtt (user name, password in base64, client id)
#     rect rgb(255, 230, 140)
#     Function-->>Authorizer: 5. isAuthenticated, principalId, a least-privilege policy, refresh and disconnect times
#     Authorizer->>Authorizer: 6. does the policy allow iot:Connect on client/CLIENT_ID?
#     Gateway-->>Device: 7. CONNACK: accepted, or refused
#     Device->>Broker: 8. SUBSCRIBE and PUBLISH, each checked against the cached policy
#     Broker-->>Device: 9. the messages on the device's own topics
#     end
# ```
#
# (JupyterLab 4.1 and later draw this diagram; elsewhere it shows as text. The README has the whole flow.)

# %%
import inspect
import json
import ssl
from concurrent.futures import Future
from urllib.parse import quote

import paho.mqtt.client as paho
from awscrt import mqtt5
from awsiot import mqtt5_client_builder
from paho.mqtt.enums import CallbackAPIVersion

from helpers.device import Device, DeviceEvents, device_console, load_function, masked, mosquitto_commands, username
from helpers.cloudwatch import count_events, entry_for_client, format_entry, now_ms
from helpers.errors import show_briefly
from helpers.iot_logging import logging_role
from helpers.keys import sign_token, tamper
from helpers.mqtt import host_and_port
from helpers.publish import custom_auth_inputs, send, signature_setup
from helpers.widgets import format_messages
from helpers.workbook import open_workbook, retry_while

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback

# %% [markdown]
# Open the workbook and prepare what a device needs: the authorizer's name, the token key name, the
# token and its signature (as in notebook 06), and the password the function expects. The device's
# id ends in your workbook's suffix, so two learners sharing an AWS account never share a device.

# %%
wb = open_workbook()
iot, logs = wb.client("iot"), wb.client("logs")
token_key_name, token, private_key_path = custom_auth_inputs(wb.state, function_arn="01-authorizer-function")
signature = sign_token(private_key_path, token)
function = load_function()  # functions/custom_auth/lambda_function.py, the code notebook 01 deployed
DEVICE_PASSWORD = function.DEVICE_PASSWORD
device_id = f"sensor-{wb.state.suffix}"
topic = f"devices/{device_id}/telemetry"
host, port = host_and_port(wb.data_endpoint)  # on AWS: the endpoint has no port, so 443
print("device id:", device_id, "| topic:", topic, "| data endpoint:", wb.data_endpoint)

# %% [markdown]
# ## 0. Turn on AWS IoT logging
#
# Section 5 reads why each refusal happened from `AWSIotLogsV2`, which AWS IoT writes only while
# logging is on. This is notebook 08's section 0 again (it reuses the role if 08 made it; notebook
# 10 puts the account's logging options back and deletes the role).

# %%
role_arn = logging_role(wb)  # creates or reuses the role (helpers/iot_logging.py); recorded for clean-up
# CLI: aws iot set-v2-logging-options --role-arn ROLE_ARN --default-log-level INFO
retry_while(lambda: iot.set_v2_logging_options(roleArn=role_arn, defaultLogLevel="INFO"),
            codes=("InvalidRequestException",), attempts=10)  # on AWS a new role takes seconds to work
print("defaultLogLevel:", iot.get_v2_logging_options()["defaultLogLevel"])

# %% [markdown]
# ## 1. The function's MQTT branch
#
# When a device connects over MQTT, the event carries `protocolData.mqtt`: the **user name** exactly
# as the device sent it (query string included), the **password base64-encoded** by AWS IoT (the
# function must decode it), and the **client id**. The function takes the device's id from the
# start of the user name, checks the password, and answers with a policy for that device alone:

# %%
print(inspect.getsource(function._mqtt_response))

# %%
print(inspect.getsource(function.device_policy))

# %% [markdown]
# Three details make this policy *least privilege*:
#
# - **`iot:Connect` on `client/DEVICE`**: the client id must be the id the password was checked for.
#   A policy with `client/*` would let a stolen password connect as any device, and kick the real
#   one off (AWS IoT allows one connection per client id).
# - **`iot:Publish` and `iot:Receive` on `topic/devices/DEVICE/*`, `iot:Subscribe` on
#   `topicfilter/devices/DEVICE/*`**: subscribing checks the *filter* (`topicfilter/`), receiving and
#   publishing check the *topic* (`topic/`). In a policy `*` is a wildcard; MQTT's `+` and `#` are not.
# - **The id must be plain letters, digits, `-` and `_`**: a user name of `*` would otherwise become
#   `client/*`, a wildcard the attacker chose.
#
# ### Ask the authorizer first: `test-invoke-authorizer --mqtt-context`
# As in notebook 05, `test_invoke_authorizer` runs the real chain (signature check, permission,
# function) without a device. `mqttContext` describes the login. Its `password` is a *blob*: boto3
# takes the bytes and base64-encodes them on the wire; the AWS CLI takes the base64 text itself.

# %%
# CLI: aws iot test-invoke-authorizer --authorizer-name my-new-authorizer-<suffix> \
#        --token tokenKeyValue --token-signature "$SIGNATURE" \
#        --mqtt-context '{"username": "sensor-<suffix>", "password": "'"$(printf %s "$DEVICE_PASSWORD" | base64)"'",
#                         "clientId": "sensor-<suffix>"}'
allowed = iot.test_invoke_authorizer(
    authorizerName=wb.names.authorizer, token=token, tokenSignature=signature,
    mqttContext={"username": device_id, "password": DEVICE_PASSWORD.encode(), "clientId": device_id},
)
print("isAuthenticated:", allowed["isAuthenticated"], "| principalId:", allowed["principalId"])
print("refreshAfterInSeconds:", allowed["refreshAfterInSeconds"],
      "| disconnectAfterInSeconds:", allowed["disconnectAfterInSeconds"])
print(json.dumps(json.loads(allowed["policyDocuments"][0]), indent=2))

# %% [markdown]
# And with a wrong password, the same call gets the tutorial's Deny:

# %%
# CLI: the same, with "password": "'"$(printf %s not-the-password | base64)"'"
denied = iot.test_invoke_authorizer(
    authorizerName=wb.names.authorizer, token=token, tokenSignature=signature,
    mqttContext={"username": device_id, "password": b"not-the-password", "clientId": device_id},
)
print(json.loads(denied["policyDocuments"][0])["Statement"])

# %% [markdown]
# ### What just happened
# AWS IoT verified the token's signature, invoked your function with an event whose
# `protocolData.mqtt` held the user name, the base64 password and the client id, and returned the
# function's answer, policies as JSON strings. Test-invoke never checks `iot:Connect` itself: it
# shows what the function *would* allow. If the device still cannot connect, compare the policy's
# `client/...` resource with the client id the device really sends.
#
# ### Troubleshooting
# - **The Allow call shows the `iot:*` Deny**: the deployed function is older than this notebook.
#   Run notebook 01's deploy cell again (it uploads `functions/custom_auth/lambda_function.py`).
# - **`Invalid base64`** from the AWS CLI: `--mqtt-context`'s password must be base64 text
#   (`printf %s PASSWORD | base64`); boto3 wants the raw bytes instead.

# %% [markdown]
# ## 2. Connect with the AWS IoT Device SDK
#
# The SDK's builder `direct_with_custom_authorizer` makes an MQTT 5 client that connects over TLS
# to port 443 with ALPN `mqtt`, and builds the user name for you: your `auth_username`, then
# `?x-amz-customauthorizer-name=...&x-amz-customauthorizer-signature=...&tokenKeyName=...` (it
# URL-encodes the signature). `DeviceEvents` (in `helpers/device.py`) turns the client's callbacks
# into things a cell can wait for. The cell is the same on AWS: `port` is 443 there, and
# `wb.ca_bundle` is `None`, so the system's trust store (which holds Amazon's CA) is used.

# %%
events = DeviceEvents()
client = mqtt5_client_builder.direct_with_custom_authorizer(
    endpoint=host, port=port, ca_filepath=wb.ca_bundle, client_id=device_id,
    auth_username=device_id, auth_password=DEVICE_PASSWORD,
    auth_authorizer_name=wb.names.authorizer, auth_authorizer_signature=signature,
    auth_token_key_name=token_key_name, auth_token_value=token,
    **events.callbacks(),
)
client.start()
connected = events.wait_connected(timeout=15)
print(connected)

# %% [markdown]
# Subscribe to the device's own topics, publish to one, and receive your own message back:

# %%
suback = client.subscribe(mqtt5.SubscribePacket(subscriptions=[
    mqtt5.Subscription(topic_filter=f"devices/{device_id}/#", qos=mqtt5.QoS.AT_LEAST_ONCE)])).result(15)
print("SUBACK:", [code.name for code in suback.reason_codes])
sent = client.publish(mqtt5.PublishPacket(topic=topic, payload=b'{"temperature": 21}',
                                          qos=mqtt5.QoS.AT_LEAST_ONCE)).result(15)
print("PUBACK:", sent.puback.reason_code.name)
print(format_messages(events.wait_for(1, timeout=10)))

# %% [markdown]
# Now the HTTPS publish of notebook 06, to the device's topic. The device receives it like any
# other message: the broker does not care how a message came in.

# %%
https = send(wb, topic, json.dumps({"command": "report"}), authorizer=wb.names.authorizer,
             token_key_name=token_key_name, token=token, signature=signature, action_token="allow")
print("HTTPS publish:", https.status, https.body["message"])
print(format_messages(events.wait_for(2, timeout=10)))

# %%
client.stop()  # an MQTT DISCONNECT, then the client stops for good (it would otherwise reconnect)
print("stopped:", events.stopped.wait(10))
direct_messages = [m.payload for m in events.messages]

# %% [markdown]
# ### What just happened
# The SDK opened TLS to the data endpoint with ALPN `mqtt`, and sent a CONNECT whose user name
# carried the authorizer's name, the token and the URL-encoded signature. AWS IoT verified the
# signature, invoked the function, cached the policy it returned, and checked `iot:Connect` on
# `client/sensor-...`: `CONNACK SUCCESS`. Every later SUBSCRIBE, PUBLISH and delivery was checked
# against that cached policy, without invoking the function again.
#
# ### Over WebSocket
# Where only HTTPS gets through a firewall, the same device can use MQTT over a WebSocket at
# `wss://ENDPOINT/mqtt`. Only the builder changes; the credentials still travel in the CONNECT's
# user name and password. `Device` (`helpers/device.py`) wraps the same builder calls and answers
# with reason-code names:

# %%
with Device(wb.data_endpoint, ca_file=wb.ca_bundle, client_id=device_id, password=DEVICE_PASSWORD,
            authorizer=wb.names.authorizer, token_key_name=token_key_name, token=token, signature=signature,
            transport="websockets") as ws_device:  # mqtt5_client_builder.websockets_with_custom_authorizer
    ws_connected = ws_device.connect()
    print(ws_connected)
    print("SUBACK:", ws_device.subscribe(f"devices/{device_id}/#"))
    print("PUBACK:", ws_device.publish(topic, b'{"temperature": 22, "via": "websocket"}'))
    print(format_messages(ws_device.wait_for(1)))

# %% [markdown]
# ### Troubleshooting
# - **`refused: AWS_ERROR_MQTT_UNEXPECTED_HANGUP (no CONNACK)`**: the server closed the connection
#   instead of answering. On AWS that is how many refusals look (section 5); read `AWSIotLogsV2`.
# - **No answer within 15 s**: wrong endpoint or port. Custom authentication over MQTT needs port
#   443 with ALPN `mqtt` (or WebSocket); port 8883 is for X.509 client certificates.
# - **`refused: CONNACK NOT_AUTHORIZED`** although test-invoke allows: the client id differs from
#   the id in the user name, so the policy's `iot:Connect` does not match.

# %% [markdown]
# ## 3. By hand: what goes over the wire
#
# The SDK hides three things that every other MQTT client needs you to get right:
#
# 1. **The user name's query string**, with the signature **URL-encoded**: a base64 signature holds
#    `+`, `/` and `=`, and an unencoded `+` reads as a space (notebook 08, section 4).
# 2. **ALPN `mqtt`** in the TLS handshake: AWS IoT serves custom-auth MQTT on port 443 only to
#    clients that ask for the `mqtt` protocol.
# 3. **SNI**, the host name in the TLS handshake: AWS IoT uses it to find your account's endpoint.
#
# Build the user name yourself (the output masks the signature):

# %%
user_name = (f"{device_id}?x-amz-customauthorizer-name={quote(wb.names.authorizer, safe='')}"
             f"&x-amz-customauthorizer-signature={quote(signature, safe='')}"
             f"&{token_key_name}={quote(token, safe='')}")
print(masked(user_name))
assert user_name == username(device_id, authorizer=wb.names.authorizer, signature=signature,
                             token_key_name=token_key_name, token=token)  # what helpers/device.py builds

# %% [markdown]
# Then connect with paho-mqtt, MQTT 5, with ALPN `mqtt`; paho sends `host` as the SNI name.

# %%
tls = ssl.create_default_context(cafile=wb.ca_bundle)  # cafile None on AWS: the system's CAs
tls.set_alpn_protocols(["mqtt"])

# %%
hand = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5)
hand.tls_set_context(tls)
hand.username_pw_set(user_name, DEVICE_PASSWORD)
connack = Future()
hand.on_connect = lambda c, userdata, flags, reason_code, properties: connack.set_result(reason_code)
hand.connect(host, port, keepalive=60)
hand.loop_start()
print("CONNACK:", connack.result(15), "| ALPN:", hand.socket().selected_alpn_protocol())

# %%
published = hand.publish(topic, b'{"temperature": 23, "via": "paho"}', qos=1)
published.wait_for_publish(15)
print("published:", published.is_published())
hand.disconnect()
hand.loop_stop()  # waits for paho's network thread to end
print("disconnected")

# %% [markdown]
# ### From a terminal: the mosquitto clients
# The same login with `mosquitto_sub` and `mosquitto_pub`. The signature comes from a shell
# variable and is never printed; first put it there (as in notebook 06), and the password in
# `DEVICE_PASSWORD`:

# %%
print(f"TOKEN={token}")
print(signature_setup(wb.relative(private_key_path)))
print("read -rs DEVICE_PASSWORD   # type the device password (DEVICE_PASSWORD in lambda_function.py)")
print(mosquitto_commands(wb.data_endpoint, ca_file=wb.relative(wb.ca_bundle) if wb.ca_bundle else None,
                         device_id=device_id, authorizer=wb.names.authorizer, token_key_name=token_key_name,
                         token=token, topic=topic))

# %% [markdown]
# ### What just happened
# paho sent the TLS handshake with SNI and ALPN `mqtt`, then the very CONNECT the SDK sent: the
# broker answered `Success` and the function ran with the same event. The mosquitto lines do the
# same from a shell; `--tls-alpn mqtt` is the part people forget. The `&` runs `mosquitto_sub` in
# the background: stop it with `kill %1` (one connection per client id: the second client takes
# over from the first; give each its own id in real use).

# %% [markdown]
# ## 4. How a device is refused
#
# Four ways to get it wrong, each with what the client sees and what the log says. Two helpers from
# `helpers/cloudwatch.py` read the logs with `filter_log_events` (the CLI line is beside each call):
# `entry_for_client` finds the `AWSIotLogsV2` entry (the decision) for one client id, and
# `count_events` counts the function's `START` lines (its invocations), both since a given moment and
# asking again for a while, because AWS delivers log events seconds late. The cell below makes
# devices that differ from the good one in one thing each.

# %%
function_log = f"/aws/lambda/{wb.names.function}"  # where the function's START lines go


def device(client_id=device_id, password=DEVICE_PASSWORD, with_signature=signature):
    """A device (not yet connected) whose user name starts with this notebook's device id."""
    return Device(wb.data_endpoint, ca_file=wb.ca_bundle, client_id=client_id, device_id=device_id,
                  password=password, authorizer=wb.names.authorizer, token_key_name=token_key_name,
                  token=token, signature=with_signature)

# %% [markdown]
# ### 4.1 A wrong password: the function says Deny
# The signature is fine, so the function runs, finds the wrong password, and returns the Deny
# policy: no `iot:Connect`.

# %%
since = now_ms()
with device(password="not-the-password") as d:
    wrong_password = d.connect()
print("client sees:", wrong_password)

# %%
# CLI: aws logs filter-log-events --log-group-name AWSIotLogsV2 --start-time SINCE --filter-pattern '"CLIENT_ID"'
wrong_password_log = entry_for_client(logs, device_id, "Connect", since)
print(format_entry(wrong_password_log))
# CLI: aws logs filter-log-events --log-group-name /aws/lambda/FUNCTION --start-time SINCE --filter-pattern '"START RequestId"'
wrong_password_runs = count_events(logs, function_log, '"START RequestId"', since)
print("function invocations:", wrong_password_runs)

# %% [markdown]
# ### 4.2 A tampered signature: refused before the function runs
# One character of the signature changed (as in notebook 08). AWS IoT checks the signature with the
# authorizer's public key before anything else; the function's log proves it never ran.

# %%
since = now_ms()
with device(with_signature=tamper(signature)) as d:
    tampered = d.connect()
print("client sees:", tampered)

# %%
tampered_log = entry_for_client(logs, device_id, "Connect", since)
print(format_entry(tampered_log))

# %% [markdown]
# Did the function run? Notebook 07's **sentinel**, for the function's log: connect once more with the
# genuine signature. That connection *does* run the function; once its `START` line is in the log,
# one from the tampered connection, made earlier, would be there too.

# %%
with device() as d:
    sentinel = d.connect()
tampered_runs = count_events(logs, function_log, '"START RequestId"', since, at_least=1)  # asks again until 1
print("sentinel:", sentinel, "| function invocations since the tampered connection:", tampered_runs)

# %% [markdown]
# ### 4.3 Another client id: no `iot:Connect`
# The right password for `sensor-...`, but the client id `sensor-...-2`. The function allows the
# login; the policy's `iot:Connect` names the device's own client id only.

# %%
since, other_id = now_ms(), f"{device_id}-2"
with device(client_id=other_id) as d:
    other_client = d.connect()
print("client sees:", other_client)
other_client_log = entry_for_client(logs, other_id, "Connect", since)
print(format_entry(other_client_log))

# %% [markdown]
# ### 4.4 A subscribe and a publish outside the policy
# Connected as itself, the device tries another device's topics.

# %%
since = now_ms()
with device() as d:
    print(d.connect())
    outside_subscribe = d.subscribe("devices/someone-else/#")
    outside_publish = d.publish("devices/someone-else/telemetry", b'{"temperature": -40}')
print("SUBSCRIBE devices/someone-else/#:", outside_subscribe)
print("PUBLISH devices/someone-else/telemetry:", outside_publish)

# %%
outside_subscribe_log = entry_for_client(logs, device_id, "Subscribe", since)
print(format_entry(outside_subscribe_log))
outside_publish_log = entry_for_client(logs, device_id, "Publish-In", since)
print(format_entry(outside_publish_log))

# %% [markdown]
# ### What just happened
# | experiment | the client saw (sandbox) | the log's reason | the function ran? |
# | --- | --- | --- | --- |
# | wrong password | CONNACK `NOT_AUTHORIZED` (0x87) | `AUTHORIZATION_FAILURE`: the Deny policy | yes |
# | tampered signature | CONNACK `BAD_USERNAME_OR_PASSWORD` (0x86) | `AUTHENTICATION_FAILURE` (the sandbox's own label) | no |
# | another client id | CONNACK `NOT_AUTHORIZED` (0x87) | `AUTHORIZATION_FAILURE`: no `iot:Connect` | yes |
# | subscribe / publish outside | SUBACK and PUBACK `NOT_AUTHORIZED` (0x87) | `AUTHORIZATION_FAILURE` | no (the cached policy decided) |
#
# What AWS documents, and what it leaves open:
#
# - AWS IoT's MQTT 5 reason codes include 0x86 *Bad User Name or Password* for CONNACK and 0x87
#   *Not authorized* for CONNACK, PUBACK, SUBACK and DISCONNECT
#   ([MQTT 5 reason codes](https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html)); it does
#   not say which custom-auth failure gets which. Many refusals on AWS arrive instead as a closed
#   connection, which the SDK reports as `AWS_ERROR_MQTT_UNEXPECTED_HANGUP`. The cells above print
#   what *your* target answered, and the final check accepts either form.
# - `AUTHORIZATION_FAILURE` is AWS's documented reason for a policy that does not allow the action;
#   `AUTHENTICATION_FAILURE` and the `sandbox` line are the sandbox's extras.
# - Over MQTT 3.1.1 a publisher cannot be told "no": AWS IoT closes the connection instead. MQTT 5
#   clients like this one get a PUBACK with 0x87.

# %% [markdown]
# ### Troubleshooting
# - **`AWS_ERROR_MQTT_UNEXPECTED_HANGUP` on connect**: read the `Connect` entry in `AWSIotLogsV2`.
#   `AUTHORIZATION_FAILURE` means the policy: no `iot:Connect`, or a `client/` resource that does not
#   match the client id (a wrong account or Region in the ARN does the same).
# - **No `Connect` entry at all**: AWS IoT logging is off (section 0), or the device never reached
#   the gateway (wrong port, no ALPN `mqtt`).
# - **The function never runs although the password is right**: the signature was refused. Is it
#   URL-encoded in the user name? Is it the signature of this very token?

# %% [markdown]
# ## 5. `refreshAfterInSeconds` and `disconnectAfterInSeconds`
#
# An MQTT connection can stay open for hours, so the function's answer carries two clocks
# ([AWS IoT: defining your Lambda function](https://docs.aws.amazon.com/iot/latest/developerguide/config-custom-auth.html)):
#
# - **`refreshAfterInSeconds`** (your function: 600): AWS IoT keeps the policy for that long, then
#   invokes the function again with the same login, so a revoked device loses its rights within ten
#   minutes. Until then, no publish or subscribe invokes the function (section 4.4 proved it).
# - **`disconnectAfterInSeconds`** (your function: 3600): AWS IoT closes the connection after that
#   long, whatever the policy; the device must connect (and be authenticated) again.
#
# Both must be between 300 and 86,400 seconds, too long to wait for here. The sandbox does what AWS
# describes: after `refreshAfterInSeconds` it invokes the function again and applies the new policy
# (if the new answer no longer allows `iot:Connect` it closes the connection, MQTT 5 DISCONNECT
# 0x87); after `disconnectAfterInSeconds` it closes the connection with MQTT 5 DISCONNECT 0xA0
# *Maximum connect time* and logs `CUSTOMAUTH_TTL_EXPIRATION`, AWS IoT's own name for this
# disconnect reason (one of the `disconnectReason` values of
# [GetThingConnectivityData](https://docs.aws.amazon.com/iot/latest/apireference/API_GetThingConnectivityData.html)).
# The sandbox sends MQTT 5 clients a DISCONNECT with a reason code; AWS does not document whether it does. A device's SDK then reconnects with its credentials, and the function decides again.

# %% [markdown]
# ## 6. A device console
#
# The console below is a device in a box: type the client id and the password, Connect, Publish,
# and watch the messages on the device's topics arrive. It does exactly what `Device` does (its
# plain twin in `helpers/device.py`): try a wrong password, or another client id, and compare with
# section 4.

# %%
def make_device(client_id, password):
    """A Device for the console: the user name starts with the client id typed in."""
    return Device(wb.data_endpoint, ca_file=wb.ca_bundle, client_id=client_id, password=password,
                  authorizer=wb.names.authorizer, token_key_name=token_key_name, token=token,
                  signature=signature)


console = device_console(make_device, device_id, topic)
console

# %% [markdown]
# Without a browser (or to check the console), the same clicks in code: the password typed in,
# Connect, Publish.

# %%
console.password.value = DEVICE_PASSWORD  # what typing it into the box does
console_connected = console.connect()
print(console_connected)
console_published = console.publish()
console.device.wait_for(1, timeout=10)
print(console.status)
print(console.text)

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: the SDK connected directly and over WebSocket, received
# its own message and the HTTPS publish; paho connected by hand; every refusal was a refusal (in
# whatever form your target answers), with a log entry that explains it; the tampered signature
# never reached the function. On its way out it disconnects every client, whatever happens.

# %%
try:
    assert connected.ok and connected.reason == "SUCCESS" and ws_connected.ok
    assert [code.name for code in suback.reason_codes] == ["GRANTED_QOS_1"] and sent.puback.reason_code.name == "SUCCESS"
    assert https.status == 200 and sorted(direct_messages) == [b'{"command": "report"}', b'{"temperature": 21}']
    assert not connack.result(0).is_failure and published.is_published()
    for outcome in (wrong_password, tampered, other_client):
        assert not outcome.ok, outcome  # a CONNACK refusal, or AWS_ERROR_MQTT_UNEXPECTED_HANGUP
    assert outside_subscribe != ["GRANTED_QOS_1"] and outside_publish != "SUCCESS"
    for entry in (wrong_password_log, other_client_log, outside_subscribe_log, outside_publish_log):
        assert entry["status"] == "Failure" and entry["reason"] == "AUTHORIZATION_FAILURE", entry
    assert tampered_log["status"] == "Failure"
    assert wrong_password_runs >= 1 and sentinel.ok and tampered_runs == 1  # the sentinel's invocation alone
    assert console_connected.ok and console_published == "SUCCESS"
    print("✓ MQTT devices: connected with least privilege; every refusal refused and explained in the log.")
finally:
    client.stop()
    hand.loop_stop()
    console.disconnect()

# %% [markdown]
# ## Questions
# 1. The function's policy names `client/sensor-...`. Why not `client/${iot:ClientId}`, which AWS's
#    policy variables allow?
#
# <details><summary>Solution</summary>
#
# `${iot:ClientId}` is whatever client id the device sends, so `client/${iot:ClientId}` allows
# *every* client id: anyone with the password could connect as any device and take over its
# session. The policy must bind the client id to the identity the password proved. (Inside topic
# names, `${iot:ClientId}` is fine once `iot:Connect` pins the client id.)
# </details>
#
# 2. A device's login works with `test-invoke-authorizer`, but the device gets
#    `AWS_ERROR_MQTT_UNEXPECTED_HANGUP`. Name three likely causes and where you would look.
#
# <details><summary>Solution</summary>
#
# The policy lacks `iot:Connect`, or its `client/` resource does not match the client id (or names
# the wrong account or Region); the device connects without ALPN `mqtt` or to port 8883; the
# signature in the user name is not URL-encoded. The `Connect` entry in `AWSIotLogsV2` tells the
# policy cases apart (`AUTHORIZATION_FAILURE`); the function's own log shows whether it ran at all.
# </details>
#
# 3. You revoke a device by changing its password in the function's table. How long can the
#    connected device keep publishing?
#
# <details><summary>Solution</summary>
#
# Until AWS IoT refreshes the policy: at most `refreshAfterInSeconds` (600 s here). At the refresh
# the function sees the old password, answers Deny, and AWS IoT closes the connection. A shorter
# refresh revokes sooner, at the cost of more invocations.
# </details>

# %% [markdown]
# ## Summary
# - Over MQTT, custom-auth credentials travel in the CONNECT: the user name's query string carries
#   the authorizer's name, the token and the **URL-encoded** signature; the password reaches the
#   function base64-encoded, in `protocolData.mqtt`.
# - Devices connect to port 443 with ALPN `mqtt` (or over WebSocket at `/mqtt`); the AWS IoT Device
#   SDK's `direct_with_custom_authorizer` does all of it for you.
# - A least-privilege answer pins `iot:Connect` to the device's own client id and its topics to its
#   own prefix; everything else is refused, and `AWSIotLogsV2` says why.
# - The policy is cached for `refreshAfterInSeconds`; the connection lasts at most
#   `disconnectAfterInSeconds`.
#
# ## What's next
# In [10 · Clean up](10-cleanup.ipynb) you delete everything the workbook created, in the right
# order, and check with AWS that it is gone.
