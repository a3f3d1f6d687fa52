# %% [markdown]
# # 06 · Publish over HTTPS
#
# Everything is in place: a function that decides, a key pair that signs the token, an authorizer
# that ties them together, and the permission that lets AWS IoT Core call the function. Now you act
# as a device. You send one HTTPS `POST` to your account's device data endpoint, carrying the token,
# its signature and the authorizer's name, and AWS IoT Core publishes your message to an MQTT topic
# only if the authorizer says Allow. The AWS tutorial does this step in Postman; here it is a few
# lines of Python with `requests`, so you can see every header that goes over the wire.
#
# ## What you will learn
# 1. How to find your account's device data endpoint (`describe-endpoint`, type `iot:Data-ATS`).
# 2. How an HTTPS publish request carries custom-authorizer credentials: a URL and three headers.
# 3. How to send it with `requests` and read AWS IoT's answer: `200 OK` with a trace id.
# 4. How the action token in the URL switches the function's decision between Allow and Deny.
#
# **Time to learn:** 20 minutes to read everything; 10 minutes on the README's 60-minute workshop path (run the cells, read "What just happened")
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | The authorizer and its token key name | Necessary | [03 · Create the authorizer](03-create-authorizer.ipynb) |
# | The permission for AWS IoT to invoke the function | Necessary | [04 · Let IoT invoke the function](04-grant-permission.ipynb) |
# | Signing a token, and what test-invoke proved | Necessary | [05 · Test the authorizer](05-test-invoke.ipynb) |
# | HTTP requests, headers and status codes | Helpful | [MDN: An overview of HTTP](https://developer.mozilla.org/en-US/docs/Web/HTTP/Overview) |

# %% [markdown]
# ## Where this stage fits
#
# The custom-auth flow, with this notebook's part highlighted (the device's HTTPS request and its answer):
#
# ```mermaid
# sequenceDiagram
#     participant Device
#     participant Gateway as AWS IoT device gateway
#     participant Authorizer as Custom authorizer
#     participant Function as Lambda function
#     participant Broker as Message broker
#     participant Subscriber as MQTT subscriber
#     rect rgb(255, 230, 140)
#     Device->>Gateway: 1. POST /topics/TOPIC with authorizer name, token, signature
#     end
#     Gateway->>Authorizer: 2. look up the custom authorizer by name
#     Authorizer->>Authorizer: 3. verify the token's signature with the public key
#     Authorizer->>Function: 4. invoke (allowed by the function's resource policy)
#     Function-->>Authorizer: 5. isAuthenticated, principalId, policyDocuments
#     Authorizer->>Authorizer: 6. does the policy allow iot:Publish on the topic?
#     rect rgb(255, 230, 140)
#     Gateway->>Broker: 7. publish the message
#     end
#     Broker-->>Subscriber: 8. deliver to matching subscriptions
#     rect rgb(255, 230, 140)
#     Gateway-->>Device: 9. 200 OK, or 403 Forbidden
#     end
# ```
#
# (JupyterLab 4.1 and later draw this diagram; elsewhere it shows as text. The README has the whole flow.)

# %%
import json

import requests

from helpers.errors import show_briefly
from helpers.keys import sign_token
from helpers.publish import curl_command, custom_auth_inputs, send, signature_setup
from helpers.widgets import action_token_sender
from helpers.workbook import open_workbook

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback

# %% [markdown]
# Open the workbook and read what the earlier notebooks recorded: the authorizer's token key
# name (from 03) and the token (from 05). The signature is computed again from the token with
# your private key, exactly as in notebook 05; it is the same every time for the same token and key.

# %%
wb = open_workbook()
authorizer_name = wb.names.authorizer
token_key_name, token, private_key_path = custom_auth_inputs(wb.state)  # as notebooks 02-05 recorded them
signature = sign_token(private_key_path, token)
print("Authorizer:     ", authorizer_name)
print("Token key name: ", token_key_name)
print("Token:          ", token)
print("Signature:      ", f"{len(signature)} base64 characters")

# %% [markdown]
# ## 1. Find the device data endpoint
#
# AWS IoT Core has two kinds of endpoint. The **control plane** (`iot.us-west-2.amazonaws.com`) is
# where you created the authorizer. The **data plane** is where devices connect and publish; every
# account has its own host name there. Ask for the `iot:Data-ATS` type: its certificate is signed
# by Amazon Trust Services, which every current operating system trusts. (The older `iot:Data` type
# uses a legacy certificate authority and should not be used for new work.)

# %%
iot = wb.client("iot")
# CLI: aws iot describe-endpoint --endpoint-type iot:Data-ATS --output text
endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
print("Data endpoint:", endpoint)

# %% [markdown]
# ### What just happened
# On AWS the answer looks like `abc123example-ats.iot.us-west-2.amazonaws.com`: one host per account
# and region. The sandbox answers with its own local address instead (`localhost` and a port). You
# never need to write the address down: `wb.data_endpoint` makes the same call for later notebooks.

# %% [markdown]
# ## 2. Build the request
#
# AWS IoT's HTTPS publish API is one route: `POST /topics/TOPIC?qos=0`. The body is the message,
# byte for byte. Because no AWS credentials (SigV4) are attached, AWS IoT looks for custom
# authorizer credentials instead, in headers (or query parameters, see notebook 08):
#
# | Header | Value | Why |
# | --- | --- | --- |
# | `x-amz-customauthorizer-name` | the authorizer's name | which authorizer decides |
# | the authorizer's **token key name** (`tokenKeyName`) | the token (`tokenKeyValue`) | what the function receives |
# | `x-amz-customauthorizer-signature` | base64 signature of the token | proves the token came from the private key holder |
#
# The URL also carries `actionToken=allow`. AWS IoT ignores that parameter, but it passes the whole
# query string to your function, and the function from notebook 01 reads it to choose Allow or Deny.

# %%
topic = "test/cust-auth/topic"
url = f"https://{endpoint}/topics/{topic}?qos=0&actionToken=allow"
headers = {
    "x-amz-customauthorizer-name": authorizer_name,
    token_key_name: token,
    "x-amz-customauthorizer-signature": signature,
}

# %%
print("POST", url)
for name, value in headers.items():
    shown = f"<{len(value)} base64 characters>" if name == "x-amz-customauthorizer-signature" else value
    print(f"  {name}: {shown}")

# %% [markdown]
# The message is a small JSON document, like a sensor reading. AWS IoT does not look inside it:
# any bytes up to 128 KB are fine, and they reach subscribers unchanged.

# %%
payload = json.dumps({"data_mode": "workbook", "vibration": 180, "temperature": 38})
print(payload)

# %% [markdown]
# ## 3. Send it
#
# `requests.post` opens a TLS connection to the endpoint, checks its certificate (`verify=`: the
# system's trust store on AWS, the sandbox's own CA file on the sandbox), and sends the request. It
# also writes the `Host` header from the URL for you, which is why the tutorial has you set `Host`
# by hand in Postman and you do not need to here.

# %%
response = requests.post(url, headers=headers, data=payload, verify=wb.tls_verify, timeout=15)
print(response.status_code, response.reason)
print(response.json())

# %% [markdown]
# ### What just happened
# Before your message reached the broker, AWS IoT Core did four things, in this order:
#
# 1. found the authorizer named in `x-amz-customauthorizer-name`, and checked it is `ACTIVE`;
# 2. verified the signature of the token with the authorizer's public key (no Lambda call yet);
# 3. invoked your function with the token, the headers and the query string;
# 4. checked that the policy the function returned allows `iot:Publish` on
#    `arn:aws:iot:REGION:ACCOUNT:topic/test/cust-auth/topic`.
#
# Only then was the message published, and the answer is `200 OK` with `{"message": "OK",
# "traceId": ...}`. The **trace id** names this one request in AWS IoT's logs; notebook 08 uses it to
# read *why* a request was refused.
#
# The same request from a terminal, with `curl`, run from the repository's folder (on the sandbox,
# `--cacert` points at its CA). A signature has no business in a notebook's saved output, so the
# command reads it from a shell variable: set `TOKEN` and `SIGNATURE` first, with the same `openssl`
# line as notebook 02, then paste the `curl` command.

# %%
print(f"TOKEN={token}")
print(signature_setup(wb.relative(private_key_path)))
print(curl_command(url, headers, payload, cacert=wb.relative(wb.ca_bundle) if wb.ca_bundle else None))

# %% [markdown]
# ### Troubleshooting
# - **`requests.exceptions.SSLError: ... CERTIFICATE_VERIFY_FAILED`**: the certificate of the host
#   was not trusted. On the sandbox, `verify=` must be `wb.tls_verify` (its CA file); never
#   `verify=False`, which would also accept an impostor. On AWS, use the `iot:Data-ATS` endpoint.
# - **`403 Forbidden`** with a trace id: AWS IoT refused the request, and deliberately does not say
#   why. The usual causes: the signature does not match the token (signed with another key, or
#   changed on the way; notebook 08 shows this), the function answered Deny (`actionToken` is not
#   `allow`), the function may not be invoked by AWS IoT (notebook 04's permission is missing), or
#   the authorizer is `INACTIVE`. Notebook 08 reads the reason from the log.
# - **`403` with `{"message": "Missing Authentication Token"}`**, or a connection error: the URL
#   points at the wrong host, such as the control-plane endpoint instead of the data endpoint.
#   Publish only to the address `describe-endpoint --endpoint-type iot:Data-ATS` returns.
#
# `requests` does not raise on a `403`: it hands you the response, and the status code is yours to
# check. `response.raise_for_status()` turns an error status into an exception, which is what you
# want in a script. Here it is, on purpose, with a request the function denies:

# %% tags=["raises-exception"]
denied = requests.post(url.replace("actionToken=allow", "actionToken=deny"), headers=headers, data=payload,
                       verify=wb.tls_verify, timeout=15)
denied.raise_for_status()

# %% [markdown]
# ## 4. Switch between Allow and Deny
#
# Your function decides from the `actionToken` query parameter, so you can watch the decision flip
# without touching the authorizer. Choose a value below and press **Send**: the widget calls
# `helpers.publish.send(...)`, which builds the same URL and headers as above and makes the same
# `requests.post` (see `helpers/publish.py`).

# %%
def publish_with(action_token):
    return send(wb, topic, payload, authorizer=authorizer_name, token_key_name=token_key_name, token=token,
                signature=signature, action_token=action_token)


action_token_sender(publish_with)

# %% [markdown]
# The same, without the widget: one request with `allow`, one with `deny`.

# %%
results = {action_token: publish_with(action_token) for action_token in ("allow", "deny")}
for action_token, result in results.items():
    print(f"actionToken={action_token:<5}  ->  {result.status} {result.body['message']}")

# %% [markdown]
# ### What just happened
# Both requests carried a valid token and signature, so AWS IoT invoked your function both times.
# With `allow` the function returned a policy whose statement *allows* `iot:*`; with `deny` the
# statement *denies* it, and an explicit Deny always wins. A denied request gets the same bare
# `403 Forbidden` as a bad signature: AWS IoT never tells a client which check failed, so that an
# attacker learns nothing from trying.

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: the request with `actionToken=allow` was published
# (`200 OK` with a trace id) and the one with `deny` was refused (`403 Forbidden`).

# %%
assert response.status_code == 200 and response.json()["message"] == "OK" and response.json()["traceId"]
assert results["allow"].ok and results["allow"].status == 200 and results["allow"].trace_id
assert results["deny"].status == 403 and results["deny"].body["message"] == "Forbidden"
assert denied.status_code == 403
print("✓ Publish over HTTPS: allow → 200 OK with a trace id, deny → 403 Forbidden.")

# %% [markdown]
# ## Questions
# 1. Which header tells AWS IoT Core which authorizer to use, and what happens if a request names
#    none?
#
# <details><summary>Solution</summary>
#
# `x-amz-customauthorizer-name`. Without it, AWS IoT uses the account's *default* authorizer if one
# is set (`aws iot set-default-authorizer`); if there is none, the request is refused with `403`.
# </details>
#
# 2. A request with a valid signature and `actionToken=deny` gets `403`. Was your function invoked?
#
# <details><summary>Solution</summary>
#
# Yes. The signature was verified first, so AWS IoT invoked the function, which returned a policy
# with `"Effect": "Deny"`. The explicit Deny refused `iot:Publish`. A *bad signature* also gives
# `403`, but then the function is never invoked (notebook 08 shows the difference in the log).
# </details>
#
# 3. Why does AWS IoT not tell the client *why* it refused a request?
#
# <details><summary>Solution</summary>
#
# Any detail would help an attacker: "bad signature" versus "policy denied" tells them whether a
# stolen token still verifies. The reason goes to the account owner's log instead (notebook 08).
# </details>

# %% [markdown]
# ## Summary
# - Devices publish to the account's data endpoint (`describe-endpoint --endpoint-type iot:Data-ATS`).
# - An HTTPS publish is `POST /topics/TOPIC?qos=0` with three custom-authorizer headers: the
#   authorizer's name, the token under the token key name, and the token's signature.
# - AWS IoT verifies the signature, invokes the function, and checks its policy before publishing;
#   success is `200 {"message": "OK", "traceId": ...}`, any refusal a bare `403 Forbidden`.
#
# ## What's next
# In [07 · Watch the messages arrive](07-watch-messages.ipynb) you subscribe to the topic with an
# MQTT client and see your published messages arrive, byte for byte.
