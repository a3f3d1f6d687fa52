# %% [markdown]
# # 08 · Experiments from the tutorial's next steps
#
# The AWS tutorial ends with a suggestion: change things and see what happens. This notebook does
# that, with a subscriber watching, and then goes one step further than a `403` can: it reads AWS
# IoT's own log to find out *why* each request was refused. Last, it moves the credentials from the
# headers into the URL, where a single unencoded character is enough to break the signature.
#
# ## What you will learn
# 1. What happens to a request whose token signature was tampered with.
# 2. What happens when the function itself says Deny.
# 3. How to read *why* a request was refused, from the decision log and the function's own log.
# 4. How to pass the credentials as query parameters, and why the signature must be URL-encoded there.
# 5. What `enableCachingForHttp` saves on a kept-alive HTTPS connection, measured and plotted.
#
# **Time to learn:** 35 minutes to read everything (section 5, caching, is 10 of them); not on the README's 60-minute workshop path (a take-home notebook)
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | Publishing over HTTPS with a custom authorizer | Necessary | [06 · Publish over HTTPS](06-publish-https.ipynb) |
# | Watching a topic with MQTT | Necessary | [07 · Watch the messages arrive](07-watch-messages.ipynb) |
# | How a token signature is made and checked | Helpful | [02 · The token-signing key pair](02-key-pair.ipynb) |
# | Percent-encoding in URLs | Helpful | [MDN: Percent-encoding](https://developer.mozilla.org/en-US/docs/Glossary/Percent-encoding) |

# %% [markdown]
# ## Where this stage fits
#
# The custom-auth flow, with this notebook's part highlighted (where a request can be refused, and the log that says why):
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
#     end
#     Authorizer->>Function: 4. invoke (allowed by the function's resource policy)
#     Function-->>Authorizer: 5. isAuthenticated, principalId, policyDocuments
#     rect rgb(255, 230, 140)
#     Authorizer->>Authorizer: 6. does the policy allow iot:Publish on the topic?
#     end
#     Gateway->>Broker: 7. publish the message
#     Broker-->>Subscriber: 8. deliver to matching subscriptions
#     rect rgb(255, 230, 140)
#     Gateway-->>Device: 9. 200 OK, or 403 Forbidden
#     end
# ```
#
# (JupyterLab 4.1 and later draw this diagram; elsewhere it shows as text. The README has the whole flow.)

# %%
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import requests

from helpers.cloudwatch import count_events, decision_for, invocation_lines
from helpers.errors import show_briefly
from helpers.experiments import keep_alive_run, plot_caching
from helpers.iot_logging import logging_role
from helpers.keys import sign_token, tamper, verify_signature
from helpers.mqtt import watch_from_session
from helpers.publish import custom_auth_inputs, query_auth_url, send
from helpers.workbook import error_code, open_workbook, retry_while

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback
%config InlineBackend.figure_formats = ["svg"]  # plots as SVG: sharp at any zoom, and text in the saved notebook

# %% [markdown]
# Open the workbook, prepare the token and its signature as in notebook 06, and start a watcher on
# the topic (notebook 07) so that every experiment also shows whether a message got through.

# %%
wb = open_workbook()
iot, logs = wb.client("iot"), wb.client("logs")
token_key_name, token, private_key_path = custom_auth_inputs(wb.state)  # as notebooks 02-05 recorded them
public_key_pem = Path(wb.state.require("public_key_path", notebook="02-key-pair")).read_text()
signature = sign_token(private_key_path, token)
topic = "test/cust-auth/topic"


# %%
def publish(payload, *, action_token="allow", with_token=token, with_signature=signature, session=None):
    """One HTTPS publish through the custom authorizer (the request of notebook 06, in helpers/publish.py)."""
    return send(wb, topic, payload, authorizer=wb.names.authorizer, token_key_name=token_key_name,
                token=with_token, signature=with_signature, action_token=action_token, session=session)


watch = watch_from_session(wb.session, wb.data_endpoint, topic, ca_bundle=wb.ca_bundle)
watch.start(timeout=15)
print(f"Watching {topic!r}; messages so far: {len(watch.messages)}")

# %% [markdown]
# ## 0. Turn on AWS IoT logging
#
# Section 3 reads *why* AWS IoT refused a request from its log group, `AWSIotLogsV2`. AWS IoT writes
# nothing there until the account turns logging on, and the sandbox behaves the same way. Turning it on
# takes two things ([AWS IoT: configure logging](https://docs.aws.amazon.com/iot/latest/developerguide/configure-logging.html)):
#
# 1. a **role** AWS IoT may assume (trusted by `iot.amazonaws.com`) that may write CloudWatch Logs:
#    here with AWS's managed policy `service-role/AWSIoTLogging`;
# 2. **`SetV2LoggingOptions`** with that role and a **default level**. AWS logs a successful publish at
#    `INFO` and a refusal at `ERROR`, and a level logs itself and everything more severe, so `INFO`
#    shows both (with `ERROR` the baseline's `Success` entry would never appear).
#
# Logging is one setting per account and region, and log lines cost money on AWS: the helper records
# the options that were there before, and notebook 10 puts them back and deletes the role.

# %%
role_arn = logging_role(wb)  # creates or reuses the role (helpers/iot_logging.py); recorded for clean-up
print("logging role:", role_arn)

# %%
# CLI: aws iot set-v2-logging-options --role-arn ROLE_ARN --default-log-level INFO
answer = retry_while(lambda: iot.set_v2_logging_options(roleArn=role_arn, defaultLogLevel="INFO"),
                     codes=("InvalidRequestException",), attempts=10)  # on AWS a new role takes seconds to work

# %%
# CLI: aws iot get-v2-logging-options
options = iot.get_v2_logging_options()
print("defaultLogLevel:", options["defaultLogLevel"], "| disableAllLogs:", options["disableAllLogs"])

# %% [markdown]
# ## 1. A tampered signature
#
# First a baseline: one good request, which must arrive. The time just before it is kept, so that
# section 3 can find this request in the function's log.

# %%
started_ms = int(time.time() * 1000) - 1000  # a second of slack for clock granularity
good_payload = json.dumps({"experiment": "baseline"})
good = publish(good_payload)
print("baseline:", good.status, good.body["message"])
print("arrived: ", [m.payload.decode() for m in watch.wait_for(1, timeout=10)])

# %% [markdown]
# Now change one character in the middle of the signature. `helpers.keys.tamper` swaps it for the
# next character of the base64 alphabet, so the result is still well-formed base64, just not a
# signature of the token any more. Check it locally first with the public key, the way AWS IoT
# checks it:

# %%
bad_signature = tamper(signature)
changed = [i for i, (a, b) in enumerate(zip(signature, bad_signature)) if a != b]
print(f"characters changed: {len(changed)} (at position {changed[0]} of {len(signature)})")
print("original verifies:", verify_signature(public_key_pem, token, signature))
print("tampered verifies:", verify_signature(public_key_pem, token, bad_signature))

# %%
count_before = len(watch.messages)
tampered = publish(json.dumps({"experiment": "tampered signature"}), with_signature=bad_signature)
print("tampered:", tampered.status, tampered.body["message"])
publish(json.dumps({"experiment": "sentinel 1"}))  # notebook 07's sentinel: allowed, sent right after
arrived = watch.wait_for(count_before + 1, timeout=10)[count_before:]
print("arrived since, up to the sentinel:", [m.payload.decode() for m in arrived])

# %% [markdown]
# ### What just happened
# AWS IoT verified the signature with the authorizer's public key *before* doing anything else, the
# check failed, and the request was refused on the spot: `403 Forbidden`, nothing published. Your
# function was not even invoked, so a forged token costs you no Lambda invocation, and your
# function's code never has to defend against forgeries. The `actionToken=allow` in the URL did not
# matter: nobody read it.

# %% [markdown]
# ## 2. The function says Deny
#
# The tutorial's other lever: a valid signature, but `actionToken=deny`.

# %%
count_before = len(watch.messages)
denied = publish(json.dumps({"experiment": "deny"}), action_token="deny")
print("deny:", denied.status, denied.body["message"])
publish(json.dumps({"experiment": "sentinel 2"}))
arrived = watch.wait_for(count_before + 1, timeout=10)[count_before:]
print("arrived since, up to the sentinel:", [m.payload.decode() for m in arrived])

# %% [markdown]
# ### What just happened
# The client sees exactly the same answer as for the forged signature: `403 Forbidden` and a trace
# id. Inside AWS IoT, though, this request went further: the signature verified, the function ran,
# and it returned a policy whose statement *denies* `iot:*`. An explicit Deny beats any Allow, so
# `iot:Publish` was refused. From the outside you cannot tell the two apart; the log can.

# %% [markdown]
# ## 3. Read why: the decision log
#
# AWS IoT writes one log entry per decision to the CloudWatch Logs group **`AWSIotLogsV2`**, with
# the request's **trace id** (the one in every answer), a `status`, and for failures a `reason` and
# `details`. The trace id is therefore how you find *your* request: search the group for it with a
# filter pattern in double quotes (an exact-phrase match).
#
# Two things to know before you rely on it:
#
# - **The group exists only once AWS IoT logging is on** (section 0): until then, on AWS and on the
#   sandbox alike, the calls below answer `ResourceNotFoundException` (the group does not exist).
# - **The `sandbox` object is sandbox-only.** AWS's entries carry the status, reason and details; the
#   sandbox adds what it alone can see: whether the signature verified, whether the function ran, and
#   which policy statement decided. On AWS those columns show `-`.
#
# AWS delivers log events a few seconds after the fact, so `decision_for` (in `helpers/cloudwatch.py`)
# asks again for a while before giving up. (The sandbox writes them at once.)

# %%
requests_sent = {"baseline": good, "tampered": tampered, "deny": denied}
try:  # decision_for (helpers/cloudwatch.py) calls filter_log_events, asking again while AWS delivers late
    # CLI: aws logs filter-log-events --log-group-name AWSIotLogsV2 --filter-pattern '"TRACE_ID"'
    decisions = {label: decision_for(logs, result.trace_id) for label, result in requests_sent.items()}
except logs.exceptions.ResourceNotFoundException:
    decisions = {}
    print("The log group AWSIotLogsV2 does not exist: AWS IoT logging is not on in this account and "
          "region. Run section 0 above, then this notebook again from section 1.")

# %% [markdown]
# One row per request. Where an entry did not arrive, the row says so.

# %%
print(f"{'request':<10} {'status':<8} {'reason':<24} {'signatureVerified':<18} {'lambdaInvoked':<14} decidedBy")
for label, entry in decisions.items():
    if entry is None:
        print(f"{label:<10} (no log entry arrived for trace id {requests_sent[label].trace_id})")
        continue
    extra = entry.get("sandbox", {})
    decided = (extra.get("decidedBy") or {}).get("detail", "-") if extra else "-"
    print(f"{label:<10} {entry['status']:<8} {entry.get('reason', '-'):<24} "
          f"{str(extra.get('signatureVerified', '-')):<18} {str(extra.get('lambdaInvoked', '-')):<14} {decided}")

# %% [markdown]
# The `details` say it in words:

# %%
for label, entry in decisions.items():
    if entry and entry["status"] != "Success":
        print(f"{label}:\n  {entry.get('details', '-')}\n")

# %% [markdown]
# ### What just happened
# - **tampered**: `Failure`, signature not verified, function not invoked. The sandbox gives the
#   reason `AUTHENTICATION_FAILURE`: that is *the sandbox's choice*, since AWS documents only
#   `AUTHORIZATION_FAILURE`; on AWS, read the reason your entry carries. AWS IoT
#   could not establish *who* the client is.
# - **deny**: `AUTHORIZATION_FAILURE`, signature verified, function invoked, refused by the Deny
#   statement of the policy the function returned. The client was recognised, but not allowed to
#   publish.
# - **baseline**: `Success`, allowed by the function's Allow statement.
#
# Authentication (who are you?) and authorization (what may you do?) are two separate steps, and the
# log tells you which one failed. From a terminal in the repository's folder,
# `.venv/bin/python -m helpers.sandbox log` shows the sandbox's log groups as they grow.

# %% [markdown]
# ### The function's own log
#
# Whatever a Lambda function prints goes to its log group, `/aws/lambda/FUNCTION_NAME`, between a
# `START` and an `END` line carrying the invocation's request id. Read the lines since the baseline
# request, and keep the invocation that saw `actionToken=allow`: that is the baseline's.
# `invocation_lines` (in `helpers/cloudwatch.py`) groups the lines from each `START` to its `END` and
# asks again while AWS delivers late. (The event line is long; only the parts the function used are shown.)

# %%
lambda_group = f"/aws/lambda/{wb.names.function}"
# CLI: aws logs filter-log-events --log-group-name /aws/lambda/FUNCTION --start-time STARTED_MS
invocation = invocation_lines(logs, lambda_group, since_ms=started_ms, containing="['allow']")
for line in invocation:
    if line.startswith("Event received: "):  # the whole event is long: show the parts the function used
        event = json.loads(line[len("Event received: "):])
        line = (f"Event received: token={event.get('token')!r}, signatureVerified={event.get('signatureVerified')}, "
                f"queryString={event['protocolData']['http']['queryString']!r}, ...")
    print(line)

# %% [markdown]
# The function received the query string, found `actionToken` equal to `allow`, and answered with
# an Allow policy: the same decision the log entry's `Success` records, seen from the other side.
# For the tampered request there is no invocation in this log at all.

# %% [markdown]
# ### Troubleshooting
# - **`ResourceNotFoundException: The specified log group does not exist.`** for `AWSIotLogsV2`: AWS
#   IoT logging is off (see above). For `/aws/lambda/...`: the function has never run, or its execution
#   role may not write logs (notebook 01 attaches `AWSLambdaBasicExecutionRole` for that).
# - **No events yet**: on AWS, log events arrive seconds after the request; ask again.
# - **The wrong log group name** is the most common slip. The old version of AWS IoT logging wrote to
#   `AWSIotLogs`; the current one writes to `AWSIotLogsV2`:

# %% tags=["raises-exception"]
logs.filter_log_events(logGroupName="AWSIotLogs", filterPattern=f'"{denied.trace_id}"')

# %% [markdown]
# ## 4. Credentials in the query string
#
# Headers are not always available: a browser cannot add custom headers to a WebSocket request, for
# example. So AWS IoT also accepts the three credentials as **query parameters** of the URL. The
# catch is encoding. A base64 signature can contain `+`, `/` and `=`, and in a query string `+` means
# a space (the form-encoding rule that servers apply when they decode query parameters). An
# unencoded `+` therefore arrives as a space, the signature no longer matches, and the request is
# refused before your function runs. AWS's documentation says it plainly: the signature must be
# URL-encoded.
#
# Whether the signature of `tokenKeyValue` contains a `+` depends on your key. It almost always does
# (a 684-character signature lacks a `+` for about one key in 46,000). If yours has none, the cell
# below picks the first of `tokenKeyValue-1`, `tokenKeyValue-2`, ... whose signature has one; the
# function does not care which token it gets, and the choice is the same every time for your key.

# %%
demo_token, demo_signature, attempt = token, signature, 0
while "+" not in demo_signature:
    attempt += 1
    demo_token = f"{token}-{attempt}"
    demo_signature = sign_token(private_key_path, demo_token)
if demo_token == token:
    print(f"The signature of {token!r} contains '+': it shows the problem as it is.")
else:
    print(f"The signature of {token!r} has no '+', so the experiment uses {demo_token!r}, whose signature has one.")

# %% [markdown]
# First the naive URL: the three credentials appended with an f-string, the signature pasted in as it
# is. Decode the query string the way a server does, and look at what becomes of the signature:

# %%
endpoint = wb.data_endpoint
raw_url = (f"https://{endpoint}/topics/{topic}?qos=0&actionToken=allow"
           f"&x-amz-customauthorizer-name={wb.names.authorizer}&{token_key_name}={demo_token}"
           f"&x-amz-customauthorizer-signature={demo_signature}")
received = parse_qs(urlsplit(raw_url).query)["x-amz-customauthorizer-signature"][0]
print("URL:", raw_url[:raw_url.index("x-amz-customauthorizer-signature=")]
      + "x-amz-customauthorizer-signature=<the signature, not encoded>")  # a signature is never printed
print("the server reads the signature unchanged:", received == demo_signature)
print("what it reads contains spaces:          ", " " in received)

# %%
unencoded = requests.post(raw_url, data=json.dumps({"experiment": "query, not encoded"}),
                          verify=wb.tls_verify, timeout=15)
print(unencoded.status_code, unencoded.json()["message"])

# %% [markdown]
# Now the same parameters, every value URL-encoded (`+` becomes `%2B`, `/` becomes `%2F`, `=` becomes
# `%3D`). `helpers.publish.query_auth_url` builds that URL with `urllib.parse.quote(value, safe="")`:

# %%
encoded_url = query_auth_url(endpoint, topic, authorizer=wb.names.authorizer, token_key_name=token_key_name,
                             token=demo_token, signature=demo_signature, action_token="allow")
received = parse_qs(urlsplit(encoded_url).query)["x-amz-customauthorizer-signature"][0]
start_of_signature = encoded_url.index("x-amz-customauthorizer-signature=")
print("URL:", encoded_url[:start_of_signature] + "x-amz-customauthorizer-signature=<the signature, URL-encoded>")
print("how quote() writes + / =:               ", quote("+/=", safe=""))
print("the server reads the signature unchanged:", received == demo_signature)

# %%
count_before = len(watch.messages)
encoded = requests.post(encoded_url, data=json.dumps({"experiment": "query, encoded"}),
                        verify=wb.tls_verify, timeout=15)
print(encoded.status_code, encoded.json()["message"])
print("arrived:", [m.payload.decode() for m in watch.wait_for(count_before + 1, timeout=10)[count_before:]])

# %% [markdown]
# ### What just happened
# The only difference between the two requests is how the signature was written into the URL. The
# server decoded `%2B` back into `+`, the signature verified, the function read `actionToken=allow`
# from the same query string, and the message was published. `urllib.parse.quote(signature,
# safe="")` is all the encoding takes; AWS's device SDKs do it for you. The `/` and `=` characters
# happen to survive unencoded in most servers, but do not count on it: encode the whole value.
#
# ### Troubleshooting
# - **`403` with credentials in the query string, but `200` with the same values in headers**: the
#   signature (or the token) was not URL-encoded.
# - **`403` after copying a signature from a terminal**: `openssl base64` without `-A` wraps its output
#   every 64 characters; the line breaks are not part of the signature.

# %% [markdown]
# ## 5. Caching the function's answer on a kept-alive connection
#
# Over HTTPS, AWS IoT calls your function for **every** request: a device that publishes once a second
# costs one Lambda invocation a second. The authorizer setting **`enableCachingForHttp`** changes that
# for devices that keep their HTTPS connection open (HTTP keep-alive): AWS IoT then reuses the
# function's answer on that connection for the `refreshAfterInSeconds` the function returned (600 s
# here, see notebook 01). It does not affect MQTT, where the answer is kept for the connection anyway
# ([CreateAuthorizer](https://docs.aws.amazon.com/iot/latest/apireference/API_CreateAuthorizer.html),
# [Configuring custom authorizers](https://docs.aws.amazon.com/iot/latest/developerguide/config-custom-auth.html)).
#
# The experiment: send the same publish ten times over one connection (a `requests.Session` keeps it
# open), with caching off and then on, and count in the function's log how often it ran. Each run uses
# its own token (signed like the first; the function does not care which token it gets), so that each
# run's invocations can be found in the log by the token they received.

# %%
REQUESTS = 10
run_tokens = {"caching off": f"{token}-cache-off", "caching on": f"{token}-cache-on"}
run_signatures = {label: sign_token(private_key_path, run_token) for label, run_token in run_tokens.items()}
caching_started_ms = int(time.time() * 1000) - 1000  # this run's log lines only, even when re-run
runs = {}

# %% [markdown]
# Caching off first (the default; the cell sets it, so a re-run starts from the same place). The
# setting is changed with `update_authorizer`, like the key and the function in notebook 03.
# `keep_alive_run` (in `helpers/experiments.py`) sends on one `requests.Session` and times each request.

# %%
# CLI: aws iot update-authorizer --authorizer-name my-new-authorizer-<suffix> --no-enable-caching-for-http
iot.update_authorizer(authorizerName=wb.names.authorizer, enableCachingForHttp=False)
runs["caching off"] = keep_alive_run(
    lambda session: publish(json.dumps({"experiment": "caching off"}), session=session,
                            with_token=run_tokens["caching off"], with_signature=run_signatures["caching off"]),
    REQUESTS)

# %%
# CLI: aws iot update-authorizer --authorizer-name my-new-authorizer-<suffix> --enable-caching-for-http
iot.update_authorizer(authorizerName=wb.names.authorizer, enableCachingForHttp=True)
runs["caching on"] = keep_alive_run(
    lambda session: publish(json.dumps({"experiment": "caching on"}), session=session,
                            with_token=run_tokens["caching on"], with_signature=run_signatures["caching on"]),
    REQUESTS)

# %% [markdown]
# Now count. Every invocation prints the event it received, token included, to the function's log
# group; `count_events` (in `helpers/cloudwatch.py`) counts the events that carry a run's token, asking
# again while AWS delivers late.

# %%
for label, run in runs.items():
    # CLI: aws logs filter-log-events --log-group-name /aws/lambda/FUNCTION --filter-pattern '"TOKEN"' --start-time MS
    run.invocations = count_events(logs, lambda_group, f'"{run_tokens[label]}"', caching_started_ms,
                                   at_least=1 if label == "caching on" else REQUESTS)
    print(f"{label:<12} requests: {len(run.statuses)}, all answered 200: {set(run.statuses) == {200}}, "
          f"function invocations: {run.invocations}")

# %% [markdown]
# The same numbers as a picture, with each request's latency. (`plot_caching` in
# `helpers/experiments.py` draws it with matplotlib.)

# %% tags=["nbval-ignore-output"]
# nbval-ignore-output: latencies differ on every run and machine; the counts above are compared instead
fig = plot_caching(runs)

# %% [markdown]
# Put the setting back: the rest of the workbook, and AWS's tutorial, use the authorizer without caching.

# %%
# CLI: aws iot update-authorizer --authorizer-name my-new-authorizer-<suffix> --no-enable-caching-for-http
iot.update_authorizer(authorizerName=wb.names.authorizer, enableCachingForHttp=False)
# CLI: aws iot describe-authorizer --authorizer-name my-new-authorizer-<suffix>
caching_now = iot.describe_authorizer(authorizerName=wb.names.authorizer)["authorizerDescription"]["enableCachingForHttp"]
print("enableCachingForHttp:", caching_now)

# %% [markdown]
# ### What just happened
# - **Caching off**: one function invocation per request, ten in all, even though the connection
#   stayed open. That is AWS's documented behaviour for HTTP.
# - **Caching on**: fewer invocations than requests; AWS IoT answered the later requests from the
#   answer it kept for this connection. The sandbox runs the function exactly once per connection and
#   token (until `refreshAfterInSeconds` passes): that exact count is *the sandbox's choice*; AWS
#   documents that the answer is cached, not how many calls a run like this one makes.
# - **Latency**: the first request of each run is the slowest (it opens the TLS connection). With
#   caching off every request also waits for the function; with caching on, the later requests skip it.
#   Your numbers will differ: on AWS the network adds its own time, on the sandbox your laptop's load does.
#
# The cost is freshness: for up to `refreshAfterInSeconds`, a device keeps what the function said, even
# if you would now answer differently (a revoked token keeps working on that connection).
#
# ### Troubleshooting
# - **`InvalidRequestException` on `update_authorizer`** with `enableCachingForHttp`: your botocore is
#   older than the parameter (added in December 2021); the workbook's pinned boto3 has it.
# - **Caching on, yet as many invocations as requests**: the requests did not share a connection
#   (a new `requests.post` per request, or a proxy that closes it), or the function returned no
#   `refreshAfterInSeconds`.
# - **On AWS, caching on still shows one invocation per request** although one connection was shared: AWS
#   does not say how soon a changed authorizer setting reaches the device gateway. Wait a minute and run
#   section 5 again from its first cell (which starts a fresh count).

# %% [markdown]
# Stop the watcher; its messages stay readable.

# %%
watch.stop()
print("Stopped. Messages received in this notebook:", len(watch.messages))

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: the tampered and denied requests were refused, delivered
# nothing, and (where the decision log exists) were logged with the right reasons; query-string
# authentication with the encoded signature succeeded; with caching on, the function ran fewer times
# than there were requests, and caching is off again.

# %%
try:
    assert good.status == 200 and tampered.status == 403 and denied.status == 403
    payloads = [m.payload for m in watch.messages]
    assert good_payload.encode() in payloads
    assert not any(b"tampered" in p or b'"deny"' in p or b"not encoded" in p for p in payloads)
    if decisions:  # the decision log exists (always on the sandbox)
        assert decisions["tampered"]["status"] == "Failure"  # its reason code: see section 3
        assert decisions["deny"]["reason"] == "AUTHORIZATION_FAILURE"
        assert decisions["baseline"]["status"] == "Success"
    assert invocation and any("['allow']" in line for line in invocation)
    assert unencoded.status_code == 403 and encoded.status_code == 200
    assert runs["caching off"].invocations == REQUESTS  # AWS: one invocation per HTTP request without caching
    assert 1 <= runs["caching on"].invocations < REQUESTS and caching_now is False  # the exact count: the sandbox's
    print("✓ Experiments: tampered and denied requests were refused and logged with their reasons; "
          "the URL-encoded query-string signature worked; caching saved function invocations.")
finally:
    watch.stop()

# %% [markdown]
# ## Questions
# 1. Both a tampered signature and `actionToken=deny` give `403 Forbidden`. Name two differences
#    that the decision log shows between them.
#
# <details><summary>Solution</summary>
#
# The reason and details: the signature did not verify (the sandbox says `AUTHENTICATION_FAILURE`,
# its own label) versus `AUTHORIZATION_FAILURE`, AWS's documented code (the policy denied `iot:Publish`). And whether the function ran: not for the tampered signature,
# which is rejected before any invocation; yes for the deny, which the function itself decided.
# </details>
#
# 2. A colleague's device works with headers but gets `403` when it sends the same values as query
#    parameters. What is the first thing you check?
#
# <details><summary>Solution</summary>
#
# Whether the signature is URL-encoded in the query string. An unencoded `+` is read as a space, so
# the signature AWS IoT checks is not the one that was made, and verification fails.
# </details>
#
# 3. Why is it good that a bad signature never reaches your function?
#
# <details><summary>Solution</summary>
#
# A forged request costs nothing but AWS IoT's own check: no Lambda invocation (no cost, no load,
# no concurrency used), and your function only ever sees tokens signed by your private key, so it
# can trust that the token was issued by you.
# </details>
#
# 4. With `enableCachingForHttp` on, a device sends each message with a fresh `requests.post(...)`.
#    How many times does your function run for ten messages, and why?
#
# <details><summary>Solution</summary>
#
# Ten times. The cached answer belongs to one kept-alive connection, and a bare `requests.post` opens
# a new connection for every request. Use one `requests.Session` (or any HTTP client with keep-alive)
# to benefit from the cache.
# </details>

# %% [markdown]
# ## Summary
# - A tampered signature is refused before the function runs: `403`, nothing delivered,
#   a `Failure` entry in the log (reason `AUTHENTICATION_FAILURE` on the sandbox, its own label).
# - A Deny from the function is refused after it runs: `403`, nothing delivered,
#   `AUTHORIZATION_FAILURE` in the log.
# - The trace id in every answer finds the request in `AWSIotLogsV2` (when AWS IoT logging is on);
#   the function's prints are in `/aws/lambda/FUNCTION_NAME`.
# - In a query string, the signature must be URL-encoded: an unencoded `+` becomes a space.
# - `enableCachingForHttp` reuses the function's answer on a kept-alive HTTPS connection for
#   `refreshAfterInSeconds`: fewer invocations and faster answers, at the price of freshness.
#
# ## What's next
# In [09 · MQTT devices](09-mqtt-devices.ipynb) a device connects over MQTT with a user name and
# password, the way most devices with a custom authorizer do, and gets only the permissions it needs.
# (Or go straight to [10 · Clean up](10-cleanup.ipynb) to delete everything the workbook created.)
