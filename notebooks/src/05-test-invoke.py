# %% [markdown]
# # 05 · Test the authorizer with test-invoke-authorizer
#
# Everything is in place: the function, the key pair, the authorizer and the permission. Before any
# device connects, AWS IoT Core lets you run the whole chain from the API with
# `test_invoke_authorizer`: you give it a token and its signature, it verifies the signature, calls
# your function as the authorizer would, and returns the function's answer. In this notebook you
# use it three ways: without request details, with an HTTP request, and with a forged signature.
#
# ## What you will learn
# 1. How to sign the token for a request, and what of the signature is safe to show.
# 2. Why a test without request details answers Deny.
# 3. How to pass an HTTP context so the function sees a query string, and read the Allow policy.
# 4. What happens to a tampered signature, and how the function's log proves it was never called.
#
# **Time to learn:** 15 minutes to read everything; 10 minutes on the README's 60-minute workshop path (run the cells, read "What just happened")
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | The token-signing key pair | Necessary | [02 · The token-signing key pair](02-key-pair.ipynb) |
# | The authorizer | Necessary | [03 · Create the authorizer](03-create-authorizer.ipynb) |
# | The invoke permission | Necessary | [04 · Let IoT invoke the function](04-grant-permission.ipynb) |
# | The function's event and response | Helpful | [01 · The authorizer function](01-authorizer-function.ipynb) |

# %% [markdown]
# ## Where this stage fits
#
# The custom-auth flow, with this notebook's part highlighted (test-invoke-authorizer runs these steps without a device):
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
#     rect rgb(255, 230, 140)
#     Authorizer->>Authorizer: 3. verify the token's signature with the public key
#     Authorizer->>Function: 4. invoke (allowed by the function's resource policy)
#     Function-->>Authorizer: 5. isAuthenticated, principalId, policyDocuments
#     Authorizer->>Authorizer: 6. does the policy allow iot:Publish on the topic?
#     end
#     Gateway->>Broker: 7. publish the message
#     Broker-->>Subscriber: 8. deliver to matching subscriptions
#     Gateway-->>Device: 9. 200 OK, or 403 Forbidden
# ```
#
# (JupyterLab 4.1 and later draw this diagram; elsewhere it shows as text. The README has the whole flow.)

# %%
import base64
import json
import time

from helpers.cloudwatch import count_events
from helpers.errors import show_briefly
from helpers.keys import load_key_pair, openssl_commands, sign_token, tamper, verify_signature
from helpers.workbook import error_code, open_workbook

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback
wb = open_workbook()
print(f"target: {wb.target}, region: {wb.region}")

# %% [markdown]
# ## 1. Sign the token
#
# The token is the string `tokenKeyValue`. You sign it with the private key from notebook 02, the
# same operation as this `openssl` pipeline:

# %%
TOKEN = "tokenKeyValue"
wb.state.require_all(private_key_path="02-key-pair", token_key_name="03-create-authorizer",
                     statement_id="04-grant-permission")  # names every notebook still to run
private_key_path = wb.state.require("private_key_path", notebook="02-key-pair")
pair = load_key_pair(wb.keys_dir)
assert str(pair.private_key_path) == private_key_path
print(openssl_commands(pair, TOKEN)["sign"])

# %%
signature = sign_token(private_key_path, TOKEN)
print(f"Signature: {len(signature)} characters of base64 on one line ({len(base64.b64decode(signature))} bytes)")
wb.state.set(token=TOKEN)

# %% [markdown]
# ### What just happened
# `sign_token` (in `helpers/keys.py`) made the RSA SHA-256 signature of the token's bytes and
# base64-encoded it on one line. The notebook shows only its length: the
# full value is long, and together with the token it works like a password, so it has no business
# in a notebook's saved output. The token itself is saved in the state as `token` for the next
# notebooks.
#
# ### Troubleshooting
# - **`KeyFileError: Private key file ... does not exist`**: run notebook 02.
# - **`NotReadyError: private_key_path is not recorded yet`**: run notebook 02 in this workbook.

# %% [markdown]
# ## 2. Test without request details: Deny
#
# The simplest test passes just the authorizer's name, the token and the signature, like the AWS
# tutorial's `aws iot test-invoke-authorizer` command.

# %%
iot = wb.client("iot")
authorizer_name = wb.names.authorizer


def statement_of(answer):
    """The first statement of the first policy document; AWS IoT returns each document as a JSON string."""
    return json.loads(answer["policyDocuments"][0])["Statement"][0]


# %%
# CLI: aws iot test-invoke-authorizer --authorizer-name my-new-authorizer-<suffix> \
#        --token tokenKeyValue --token-signature "$SIGNATURE"
plain = iot.test_invoke_authorizer(authorizerName=authorizer_name, token=TOKEN, tokenSignature=signature)
print("isAuthenticated:         ", plain["isAuthenticated"])
print("principalId:             ", plain["principalId"])
print("refreshAfterInSeconds:   ", plain["refreshAfterInSeconds"])
print("disconnectAfterInSeconds:", plain["disconnectAfterInSeconds"])
print("Effect:                  ", statement_of(plain)["Effect"])

# %% [markdown]
# ### What just happened
# AWS IoT verified the signature with `FirstKey`, checked that it may invoke the function (notebook
# 04), called it, and returned its answer. The answer is **Deny**, and that is correct: the test
# carried no HTTP, MQTT or TLS details, so the event had **no `protocolData`**, and the handler
# (notebook 01) denies such events. So this test proves the wiring (signature, permission,
# function) works, though not the decision logic.
#
# ### Troubleshooting
# - **An error saying AWS IoT may not invoke the function**: the function policy lacks the
#   statement of notebook 04, or its source ARN is another authorizer's. Check it with
#   `get_policy` and run notebook 04 again.
# - **`ClientError: ... (ResourceNotFoundException)`**: the authorizer name is wrong, or it lives
#   in another Region.
# - **`ClientError: ... (InvalidResponseException)`**: the function ran but failed or answered
#   something AWS IoT cannot use; read its log group `/aws/lambda/custom-auth-function-<suffix>`.

# %% [markdown]
# ## 3. Test with an HTTP context: Allow
#
# `test_invoke_authorizer` can also describe the request the device made. With `httpContext` you
# give the headers and the query string of an HTTPS publish, and AWS IoT puts them into the
# event's `protocolData.http`, exactly what the handler reads.

# %%
token_key_name = wb.state.require("token_key_name", notebook="03-create-authorizer")
http_context = {
    "headers": {"x-amz-customauthorizer-name": authorizer_name, token_key_name: TOKEN},
    "queryString": "?actionToken=allow",
}

# %%
allow_mark_ms = int(time.time() * 1000)  # used in section 4: this call must leave a START line in the log
# CLI: aws iot test-invoke-authorizer --authorizer-name my-new-authorizer-<suffix> \
#        --token tokenKeyValue --token-signature "$SIGNATURE" \
#        --http-context '{"headers": {...}, "queryString": "?actionToken=allow"}'
allowed = iot.test_invoke_authorizer(
    authorizerName=authorizer_name, token=TOKEN, tokenSignature=signature, httpContext=http_context
)
print("Effect:", statement_of(allowed)["Effect"])
print(json.dumps(statement_of(allowed), indent=2))

# %% [markdown]
# ### What just happened
# This time the event held `protocolData.http.queryString = "?actionToken=allow"`, so the function
# answered **Allow**. `policyDocuments` comes back as a list of JSON *strings* (the function
# returned objects; AWS IoT serializes them), so the cell parses the first one. Its statement
# allows every IoT action (`iot:*`) on every IoT resource of your account and Region.
#
# ### Troubleshooting
# - **Still Deny**: check the query string. The handler looks for `actionToken=allow`; a typo
#   such as `actiontoken` or `allowed` gives Deny.
# - **`ParamValidationError: Parameter validation failed: ... httpContext`**: boto3 checks the
#   shape before sending; `headers` must be a map of strings and `queryString` a string.

# %% [markdown]
# ## 4. A tampered signature
#
# What if the signature is wrong? AWS IoT says it verifies signatures *before* invoking the
# function. You can check that claim from the outside: every Lambda invocation writes a `START`
# line to the function's log group, `/aws/lambda/<function name>`. Count the `START` lines, send a
# tampered signature, and count again.
#
# First, the count before. The cell waits until the log shows the Allow test of section 3, so
# that nothing still in flight is counted later. On AWS, log events can take a few seconds to
# arrive in CloudWatch Logs.

# %%
logs = wb.client("logs")
log_group = f"/aws/lambda/{wb.names.function}"


def start_lines(since_ms=0):
    """How many invocations (START lines) the function's log group holds, from since_ms on."""
    # CLI: aws logs filter-log-events --log-group-name /aws/lambda/custom-auth-function-<suffix> \
    #        --filter-pattern '"START RequestId"' --start-time <epoch ms>
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=log_group, filterPattern='"START RequestId"', startTime=since_ms
    )
    return sum(len(page["events"]) for page in pages)


# %%
# count_events (helpers/cloudwatch.py): the same count, asked again every 2 s (up to 60 s) until it is reached
allow_starts = count_events(logs, log_group, '"START RequestId"', allow_mark_ms, at_least=1, attempts=30)
print("The Allow test of section 3 left its START line:", allow_starts >= 1)
starts_before = start_lines()

# %% [markdown]
# Now the tampered signature: the genuine one with its middle character changed.

# %% tags=["raises-exception"]
tampered = tamper(signature)
# CLI: aws iot test-invoke-authorizer --authorizer-name my-new-authorizer-<suffix> \
#        --token tokenKeyValue --token-signature "$TAMPERED_SIGNATURE"
iot.test_invoke_authorizer(authorizerName=authorizer_name, token=TOKEN, tokenSignature=tampered)

# %% [markdown]
# The sandbox answers **`InvalidRequestException`** (HTTP 400): that is the sandbox's choice, since AWS
# does not document what a tampered test-invoke returns (an error, or an answer that does not
# authenticate). What matters holds on both: did the function run?
#
# Counting at once could miss a `START` line still on its way (on AWS, log events take seconds to
# arrive), and waiting "long enough" is a guess. So send a **sentinel**: the genuine signature once
# more, right after the tampered one. Its test *does* run the function. Once its `START` line is
# in the log, one from the tampered test, sent earlier, would be there too: on the sandbox for
# certain; on AWS almost always (CloudWatch Logs does not promise order), so read it as strong
# evidence rather than proof.

# %%
# CLI: aws iot test-invoke-authorizer --authorizer-name my-new-authorizer-<suffix> \
#        --token tokenKeyValue --token-signature "$SIGNATURE"
iot.test_invoke_authorizer(authorizerName=authorizer_name, token=TOKEN, tokenSignature=signature)
total = count_events(logs, log_group, '"START RequestId"', 0, at_least=starts_before + 1, attempts=30)
new_starts = total - starts_before
print("New START lines since the tampered test:", new_starts, "(the sentinel's own is one)")

# %% [markdown]
# ### What just happened
# One new `START` line, the sentinel's: the tampered test did **not invoke** the function. AWS IoT checked the signature against
# `FirstKey`, found it invalid and stopped there. The same happens to a device that sends a bad
# signature: it is refused without costing you a Lambda invocation. (On AWS, a device gets
# `Forbidden` rather than this API error.)
#
# ### Troubleshooting
# - **`ClientError: ... (InvalidRequestException)` with a signature you believe is right**: the
#   token you signed is not the one you sent (an `echo` without `-n` adds a newline), or the
#   signature lost characters or gained line breaks on its way. Sign again and pass it unchanged.
# - **`ClientError: ... (ResourceNotFoundException) ... log group does not exist`** when counting:
#   the function has never run (or its logs were deleted). Run section 3 first.
# - **Two or more new START lines** on AWS: another client used the function in the meantime, or a
#   late log event from section 3 arrived; run the counting cell, the tampered test and the
#   sentinel again.

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: the plain test answers Deny, the test with
# `actionToken=allow` answers Allow, and a tampered signature is rejected without invoking the
# function.

# %%
try:
    # CLI: aws iot test-invoke-authorizer ... --token-signature "$TAMPERED_SIGNATURE"
    iot.test_invoke_authorizer(authorizerName=authorizer_name, token=TOKEN, tokenSignature=tampered)
    tampered_code = None
except iot.exceptions.ClientError as exc:
    tampered_code = error_code(exc)
assert statement_of(plain)["Effect"] == "Deny" and plain["isAuthenticated"] is True
assert statement_of(allowed)["Effect"] == "Allow"
# What AWS answers a tampered test-invoke is not documented: an error (the sandbox: InvalidRequestException)
# or an answer with isAuthenticated false. Either way the function must not have run.
assert new_starts == 1  # the sentinel's START line, and none from the tampered test
print("tampered test-invoke answered:", tampered_code or "a result (not an error)")
assert not verify_signature(pair.public_key_pem, TOKEN, tampered)
assert wb.state.require("token", notebook="05-test-invoke") == TOKEN
print("✓ Test invoke: Deny without context, Allow with actionToken=allow, tampered signature rejected.")

# %% [markdown]
# ## Questions
# 1. The first test returned Deny. Does that mean something is misconfigured?
#
# <details><summary>Solution</summary>
#
# No. A Deny *answer* means the whole chain worked: the signature verified, AWS IoT was allowed to
# invoke the function, and the function answered. It denied because the test carried no request
# details (`protocolData` was absent). A misconfiguration shows up as an *error* instead.
# </details>
#
# 2. How could you tell, without reading any logs, that the tampered test never reached the function?
#
# <details><summary>Solution</summary>
#
# The error type. A function that ran and denied gives a normal answer with a Deny policy; a
# function that ran and failed, or answered something unusable, gives `InvalidResponseException`
# (the API's error for a bad function response). `InvalidRequestException` about
# the signature means AWS IoT refused the request itself. The log count confirms it.
# </details>
#
# 3. Which part of the request decides Allow or Deny in this demo, and which part decides whether
#    the function is asked at all?
#
# <details><summary>Solution</summary>
#
# The query string's `actionToken` decides Allow or Deny, inside the function. The token
# signature decides whether the function is asked at all: AWS IoT checks it first.
# </details>

# %% [markdown]
# ## Summary
# - `test_invoke_authorizer` runs the real chain: signature check, permission check, function call.
# - Without request details the event has no `protocolData`, so this function answers Deny.
# - `httpContext` with `queryString="?actionToken=allow"` gives Allow; `policyDocuments` arrive as
#   JSON strings to parse.
# - A tampered signature is an `InvalidRequestException`, and the function's log gains no `START` line.
#
# ## What's next
# In [06 · Publish over HTTPS](06-publish-https.ipynb) you send the same token and signature the
# way a device does, in an HTTPS publish request to your account's data endpoint.
