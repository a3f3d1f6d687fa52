# %% [markdown]
# # 01 · The authorizer function
#
# A custom authorizer is, at its heart, a Lambda function: AWS IoT Core hands it what a client
# sent, and the function answers with *who* the client is and *which IoT policy* applies to it.
# In this notebook you read that function, give it an execution role, deploy it to Lambda, and
# test it the way the Lambda console's **Test** tab does, before AWS IoT is involved at all.
#
# ## What you will learn
# 1. What the function receives (the authorizer event) and what it must answer (the authorization response).
# 2. Why a Lambda function needs an execution role, and how to create the one the console would.
# 3. How to deploy a function from a zip and wait until Lambda reports it `Active`.
# 4. How to invoke it with test events and read its answer and its log tail.
#
# **Time to learn:** 20 minutes to read everything; 10 minutes on the README's 60-minute workshop path (run the cells, read "What just happened")
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | A target chosen and reachable | Necessary | [00 · Set up](00-set-up.ipynb) |
# | What AWS Lambda is (functions, handlers, invocations) | Helpful | [Lambda: how it works](https://docs.aws.amazon.com/lambda/latest/dg/concepts-basics.html) |
# | IAM roles and trust policies | Helpful | [IAM roles](https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles.html) |

# %% [markdown]
# ## Where this stage fits
#
# The custom-auth flow, with this notebook's part highlighted (the function you write and deploy):
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
#     rect rgb(255, 230, 140)
#     Authorizer->>Function: 4. invoke (allowed by the function's resource policy)
#     Function-->>Authorizer: 5. isAuthenticated, principalId, policyDocuments
#     end
#     Authorizer->>Authorizer: 6. does the policy allow iot:Publish on the topic?
#     Gateway->>Broker: 7. publish the message
#     Broker-->>Subscriber: 8. deliver to matching subscriptions
#     Gateway-->>Device: 9. 200 OK, or 403 Forbidden
# ```
#
# (JupyterLab 4.1 and later draw this diagram; elsewhere it shows as text. The README has the whole flow.)

# %%
import base64
import hashlib
import importlib.util
import inspect
import io
import json
import zipfile

from helpers.errors import show_briefly
from helpers.rerun import reuse_if_exists
from helpers.workbook import FUNCTION_DIR, open_workbook, retry_while, zip_function

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback
wb = open_workbook()
print(f"target: {wb.target}, region: {wb.region}")

# %% [markdown]
# ## 1. Read the handler
#
# The function's code lives in `functions/custom_auth/lambda_function.py`. Lambda calls its
# **handler**, `lambda_handler(event, context)`, once per request. Rather than scroll through the
# whole file, load it as a module here and look at its parts one at a time.

# %%
handler_path = FUNCTION_DIR / "lambda_function.py"
module_spec = importlib.util.spec_from_file_location("lambda_function", handler_path)
handler_module = importlib.util.module_from_spec(module_spec)
module_spec.loader.exec_module(handler_module)
print(wb.relative(handler_path))
print(inspect.getsource(handler_module.lambda_handler))

# %% [markdown]
# Three things happen in `lambda_handler`:
#
# 1. It **prints the event**. Whatever a Lambda function prints ends up in its CloudWatch Logs
#    group, `/aws/lambda/<function name>`: the first place to look when an authorizer misbehaves.
# 2. It reads the **account and Region** from `context.invoked_function_arn`, so nothing is
#    hard-coded and the same code works in any account, and in the sandbox.
# 3. It **decides an effect**, Allow or Deny, and builds the response around it.
#
# ### The event it receives
# AWS IoT Core documents the event's full shape (fields that do not apply are left out):
#
# ```json
# {
#   "token": "aToken",
#   "signatureVerified": true,
#   "protocols": ["tls", "http", "mqtt"],
#   "protocolData": {
#     "tls":  {"serverName": "..."},
#     "http": {"headers": {"...": "..."}, "queryString": "?name=value"},
#     "mqtt": {"username": "...", "password": "<base64>", "clientId": "..."}
#   },
#   "connectionMetadata": {"id": "<uuid>"}
# }
# ```
#
# When you test an authorizer with `aws iot test-invoke-authorizer` and only a token, there is no
# request to describe, so **`protocolData` is absent**. The handler treats that case as Deny. The
# decision itself reads the HTTP query string:

# %%
print(inspect.getsource(handler_module._effect_from_http))

# %% [markdown]
# Only `actionToken=allow` in the query string gives Allow. That is a demo switch, not security:
# a real authorizer would check a password, a JWT or a database here. (An MQTT device's login,
# `protocolData.mqtt`, takes the handler's other branch: a password and a narrow policy, in
# [09 · MQTT devices](09-mqtt-devices.ipynb).)
#
# ### The response it returns
# Because the module is loaded, you can call its response builder directly and see the answer
# AWS IoT Core expects, without deploying anything:

# %%
example_response = handler_module.authorization_response("Deny", "aws", wb.region, wb.account_id)
print(json.dumps(example_response, indent=2))

# %% [markdown]
# ### What just happened
# You ran the handler's own `authorization_response` locally. Its fields:
#
# - `isAuthenticated`: the client is recognized. What it may *do* is decided by the policy.
# - `principalId`: a name for the client in AWS IoT's logs; letters and digits only.
# - `policyDocuments`: a list of IoT policies. Here one statement covers every IoT action (`iot:*`)
#   on every IoT resource of this account and Region, with the effect the handler decided.
# - `disconnectAfterInSeconds` (3600) and `refreshAfterInSeconds` (600): AWS IoT closes the
#   connection after an hour and calls the function again every ten minutes to refresh the policy.
#   Both must lie between 300 and 86,400 seconds.
#
# ### Troubleshooting
# - **`FileNotFoundError: ... functions/custom_auth/lambda_function.py`**: the notebook is not
#   running from this repository's `notebooks/` folder. Start JupyterLab from the repository root.
# - **`AttributeError: module 'lambda_function' has no attribute ...`**: the handler file was
#   edited and a function was renamed. Restore it (`git diff functions/`) or adjust the cell.

# %% [markdown]
# ## 2. The execution role
#
# Every Lambda function runs *as* an IAM role, its **execution role**: Lambda assumes the role
# and the function's code gets that role's permissions. Two parts define the role:
#
# - a **trust policy** saying *who may assume it*: the Lambda service, `lambda.amazonaws.com`;
# - **permission policies** saying *what it may do*. The console attaches AWS's managed policy
#   `AWSLambdaBasicExecutionRole`, which allows exactly one thing: writing CloudWatch Logs.
#
# When you create a function in the console it makes this role for you, under the path
# `/service-role/`. Here you make the same role yourself.

# %%
iam = wb.client("iam")
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
BASIC_EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
print(json.dumps(TRUST_POLICY, indent=2))

# %% [markdown]
# The next cell creates the role. Run it a second time and IAM answers `EntityAlreadyExists`:
# `reuse_if_exists` (in `helpers/rerun.py`) takes that answer to mean "the role from your first
# run is there, keep it", and lets every other error through. The role carries the workbook's tag,
# so you can find it in the console.

# %%
# CLI: aws iam create-role --role-name custom-auth-function-role-<suffix> --path /service-role/ \
#        --assume-role-policy-document file://trust-policy.json --tags Key=iot-custom-auth-workbook,Value=<suffix>
with reuse_if_exists() as outcome:
    iam.create_role(
        RoleName=wb.names.role, Path="/service-role/", AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
        Description="Execution role of the custom authorizer function (iot-custom-auth-workbook)",
        Tags=[{"Key": key, "Value": value} for key, value in wb.tags().items()],
    )
wb.record("iam-role", wb.names.role)
print("created" if outcome.created else "already there from an earlier run: reused")

# %% [markdown]
# Now attach the managed policy, and read the role back: its ARN is what Lambda needs.

# %%
# CLI: aws iam attach-role-policy --role-name custom-auth-function-role-<suffix> \
#        --policy-arn arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole
iam.attach_role_policy(RoleName=wb.names.role, PolicyArn=BASIC_EXECUTION_POLICY)
wb.record("iam-role-policy", f"{wb.names.role}/{BASIC_EXECUTION_POLICY}")

# CLI: aws iam get-role --role-name custom-auth-function-role-<suffix>
role = iam.get_role(RoleName=wb.names.role)["Role"]
wb.state.set(role_arn=role["Arn"])

# %%
# CLI: aws iam list-attached-role-policies --role-name custom-auth-function-role-<suffix>
attached = iam.list_attached_role_policies(RoleName=wb.names.role)["AttachedPolicies"]
print("Role ARN:        ", role["Arn"])
print("Trusted service: ", role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"])
print("Attached policies:", sorted(policy["PolicyArn"] for policy in attached))

# %% [markdown]
# ### What just happened
# IAM created (or found) the role `custom-auth-function-role-<suffix>` with the trust policy
# above, and attached the managed policy. Attaching a policy that is already attached is not an
# error, so that call is safe to repeat. The role's ARN is saved in the workbook's state as
# `role_arn`, and the role and its policy are recorded so notebook 10 can delete them.
#
# ### Troubleshooting
# - **`ClientError: ... (AccessDenied) when calling the CreateRole operation`** (AWS): your
#   identity may not create IAM roles. Ask for `iam:CreateRole`, `iam:AttachRolePolicy` and
#   `iam:PassRole`, or for an existing role whose ARN you can use instead.
# - **`ClientError: ... (MalformedPolicyDocument)`**: the trust policy is not valid JSON or not a
#   valid policy. Compare it with the one printed above.
# - **`EntityAlreadyExists`** does not reach you: `reuse_if_exists` reads it as "created by an
#   earlier run". If the role was made by hand with another trust policy, delete it (notebook 09)
#   and run section 2 again.

# %% [markdown]
# ## 3. Deploy the function
#
# A Python function is deployed as a **zip file** holding the handler file at its top level.
# `zip_function` (in `helpers/workbook.py`) builds that zip in memory, just as
# `zip -r function.zip .` would from inside `functions/custom_auth/`.

# %%
awslambda = wb.client("lambda")
package = zip_function(FUNCTION_DIR)
package_sha256 = base64.b64encode(hashlib.sha256(package).digest()).decode()
print("Files in the package:", zipfile.ZipFile(io.BytesIO(package)).namelist())

# %% [markdown]
# The cell below creates the function from the zip. As with the role, a second run gets Lambda's
# "Function already exist" (`ResourceConflictException`), and `reuse_if_exists` keeps your function.
#
# On AWS, a role created seconds ago may not be usable yet: IAM changes take a moment to reach
# every Region, and Lambda answers `InvalidParameterValueException: The role defined for the
# function cannot be assumed by Lambda`. `retry_while` (in `helpers/workbook.py`) simply repeats
# the call for a short while in that one case.

# %%
# CLI: aws lambda create-function --function-name custom-auth-function-<suffix> --runtime python3.12 \
#        --role <role ARN> --handler lambda_function.lambda_handler --zip-file fileb://function.zip \
#        --tags iot-custom-auth-workbook=<suffix>
with reuse_if_exists() as outcome:
    retry_while(lambda: awslambda.create_function(
        FunctionName=wb.names.function, Runtime="python3.12", Role=role["Arn"],
        Handler="lambda_function.lambda_handler", Code={"ZipFile": package},
        Description="Custom authorizer for AWS IoT Core (iot-custom-auth-workbook)", Tags=wb.tags(),
    ), codes=("InvalidParameterValueException",), message_contains="cannot be assumed", attempts=15)
wb.record("lambda-function", wb.names.function)
print("created" if outcome.created else "already there from an earlier run: reused")

# %% [markdown]
# Lambda identifies code by its **CodeSha256**: the SHA-256 hash of the zip, base64-encoded. If the
# function already existed, its code may be older than your `lambda_function.py`; compare the two
# hashes and upload the code only when they differ.

# %%
# CLI: aws lambda get-function --function-name custom-auth-function-<suffix>
deployed_sha256 = awslambda.get_function(FunctionName=wb.names.function)["Configuration"]["CodeSha256"]
if deployed_sha256 != package_sha256:
    # CLI: aws lambda update-function-code --function-name custom-auth-function-<suffix> --zip-file fileb://function.zip
    awslambda.update_function_code(FunctionName=wb.names.function, ZipFile=package)
    # CLI: aws lambda wait function-updated-v2 --function-name custom-auth-function-<suffix>
    awslambda.get_waiter("function_updated_v2").wait(FunctionName=wb.names.function)
print("code uploaded again" if deployed_sha256 != package_sha256 else "deployed code matches the local package")

# %% [markdown]
# A new function starts in the state `Pending` while Lambda prepares it, and can be invoked once
# it is `Active`. boto3's **waiter** `function_active_v2` polls `GetFunction` until then.

# %%
# CLI: aws lambda wait function-active-v2 --function-name custom-auth-function-<suffix>
awslambda.get_waiter("function_active_v2").wait(FunctionName=wb.names.function)
# CLI: aws lambda get-function --function-name custom-auth-function-<suffix>
configuration = awslambda.get_function(FunctionName=wb.names.function)["Configuration"]
wb.state.set(function_arn=configuration["FunctionArn"])
for key in ("FunctionName", "FunctionArn", "Runtime", "Handler", "Role", "State"):
    print(f"{key + ':':<14}{configuration[key]}")
print(f"{'CodeSha256:':<14}matches the local package: {configuration['CodeSha256'] == package_sha256}")

# %% [markdown]
# ### What just happened
# Lambda stored the zip, attached the execution role, and reports the function `Active`. Its
# **function ARN**, `arn:aws:lambda:<region>:<account>:function:<name>`, is saved as
# `function_arn`: notebook 03 gives it to the authorizer. In the console this is the "Function
# ARN" you would copy from the Function overview.
#
# ### Troubleshooting
# - **`ClientError: ... (InvalidParameterValueException) ... The role defined for the function
#   cannot be assumed by Lambda`** even after the retries: the role's trust policy does not name
#   `lambda.amazonaws.com`, or (AWS) IAM is slower than usual. Check section 2, wait a minute,
#   run the cell again.
# - **`ClientError: ... (InvalidParameterValueException) ... runtime parameter of python3.x is no
#   longer supported`**: Lambda refuses deprecated runtimes for new functions. Use `python3.12`.
# - **`WaiterError: Waiter FunctionActiveV2 failed: ... "Failed"`**: Lambda could not prepare the
#   function; `StateReason` in `get_function`'s `Configuration` says why.
# - **`ClientError: ... (ResourceConflictException) ... The operation cannot be performed at this
#   time`** (AWS): an earlier update is still in progress. Wait a few seconds and run the cell again.

# %% [markdown]
# ## 4. Test it like the console's Test tab
#
# The console's **Test** tab does one thing: it calls Lambda's `Invoke` with a JSON event you
# choose and shows the answer and the end of the log. The same call from boto3 is `invoke`, and
# `LogType="Tail"` asks Lambda to send back the last 4 KB of the log, base64-encoded.
#
# First, the console's default event, `{"key1": "value1", ...}`. It has no `protocolData`.

# %%
console_default_event = {"key1": "value1", "key2": "value2", "key3": "value3"}
# CLI: aws lambda invoke --function-name custom-auth-function-<suffix> --log-type Tail \
#        --cli-binary-format raw-in-base64-out --payload '{"key1": "value1", ...}' answer.json
console_response = awslambda.invoke(
    FunctionName=wb.names.function, Payload=json.dumps(console_default_event), LogType="Tail"
)
console_answer = json.loads(console_response["Payload"].read())
print("StatusCode:", console_response["StatusCode"])
print(json.dumps(console_answer, indent=2))

# %% [markdown]
# The decision is the `Effect` of the policy's statement; a small function reads it, for this
# answer and the ones to come:


# %%
def effect_of(answer):
    """The Effect of the first statement of the first policy document."""
    return answer["policyDocuments"][0]["Statement"][0]["Effect"]


print("Effect:", effect_of(console_answer))

# %% [markdown]
# Deny, as the handler promised for an event without `protocolData`. Now the log tail: the lines
# the function printed, framed by Lambda's own `START`, `END` and `REPORT` lines. The helper below
# only decodes the base64 and drops `Init Duration` (present on a cold start only) so the output
# reads the same every time; request ids and durations will differ on your screen.


# %%
def print_log_tail(response):
    """Decode an Invoke response's LogResult and print it line by line."""
    for line in base64.b64decode(response["LogResult"]).decode().splitlines():
        if line.startswith("REPORT"):
            line = "\t".join(part for part in line.split("\t") if not part.startswith("Init Duration"))
        print(line)


print_log_tail(console_response)

# %% [markdown]
# Next, an event shaped like an HTTPS publish: `protocolData.http` with the query string
# `?actionToken=allow`, as AWS IoT sends it when a device adds that parameter to its URL.

# %%
http_event = {
    "token": "tokenKeyValue", "signatureVerified": True,
    "protocols": ["tls", "http"],
    "protocolData": {
        "tls": {"serverName": wb.data_endpoint.split(":")[0]},
        "http": {"headers": {"content-type": "application/json"}, "queryString": "?actionToken=allow"},
    },
    "connectionMetadata": {"id": "e56f08c3-c559-490f-aa9f-7e8427d0f57b"},
}

# %%
# CLI: aws lambda invoke --function-name custom-auth-function-<suffix> --log-type Tail \
#        --cli-binary-format raw-in-base64-out --payload file://http-event.json answer.json
http_response = awslambda.invoke(FunctionName=wb.names.function, Payload=json.dumps(http_event), LogType="Tail")
http_answer = json.loads(http_response["Payload"].read())
print("StatusCode:", http_response["StatusCode"])
print("Effect:    ", effect_of(http_answer))
print()
print_log_tail(http_response)

# %% [markdown]
# ### What just happened
# Lambda ran your handler twice in its own runtime. The console-style event gave **Deny**; the
# HTTP-shaped event with `actionToken=allow` gave **Allow**. The log tail shows the handler's
# `print` output between `START` and `END`, and `REPORT` gives the duration and memory Lambda
# measured. The same lines are kept in the log group `/aws/lambda/custom-auth-function-<suffix>`.
#
# `StatusCode` 200 means the *invocation* worked. A function that raised an exception also
# answers 200, with a `FunctionError` field in the response and the error in the payload, so
# always check for `FunctionError` too.
#
# ### Troubleshooting
# Here is an error on purpose: invoking a function name that does not exist.

# %% tags=["raises-exception"]
# CLI: aws lambda invoke --function-name no-such-function answer.json
awslambda.invoke(FunctionName="no-such-function", Payload=json.dumps(console_default_event))

# %% [markdown]
# Lambda answers **`ResourceNotFoundException`** (HTTP 404) and names the full function ARN it
# looked for. On AWS the usual causes are a typo, or the right name in the wrong Region (check
# `wb.region`). Other errors you may meet here:
#
# - **`ClientError: ... (InvalidRequestContentException) ... Could not parse request body into
#   json`**: the payload is not JSON. Build it with `json.dumps(...)`.
# - **A `FunctionError: "Unhandled"` key in the response**: the handler raised. The payload holds
#   `errorType` and `errorMessage`, and the log tail holds the traceback.
# - **`ClientError: ... (ResourceConflictException) ... The operation cannot be performed at this
#   time. The function is currently in the following state: Pending`** (AWS): run the waiter cell
#   of section 3 first.

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: the function is Active with your code, its ARN is
# recorded for the next notebooks, and its two test answers are Deny and Allow.

# %%
final = awslambda.get_function(FunctionName=wb.names.function)["Configuration"]
assert final["State"] == "Active"
assert final["CodeSha256"] == package_sha256
assert wb.state.require("function_arn", notebook="01-authorizer-function") == final["FunctionArn"]
assert wb.state.require("role_arn", notebook="01-authorizer-function") == final["Role"]
assert effect_of(console_answer) == "Deny" and "FunctionError" not in console_response
assert effect_of(http_answer) == "Allow" and "FunctionError" not in http_response
print(f"✓ Authorizer function: {final['FunctionName']} is Active; test answers Deny and Allow as expected.")

# %% [markdown]
# ## Questions
# 1. Why does the console-default test event give Deny, even though nothing in it is wrong?
#
# <details><summary>Solution</summary>
#
# The handler allows only when `protocolData.http.queryString` carries `actionToken=allow`. The
# console's default event has no `protocolData` at all, so the handler treats it like a
# `test-invoke-authorizer` call without context and answers Deny.
# </details>
#
# 2. The execution role trusts `lambda.amazonaws.com`. Does that let AWS IoT Core call the function?
#
# <details><summary>Solution</summary>
#
# No. The trust policy only says who may *assume the role* (Lambda, to run your code). Who may
# *invoke the function* is set by the function's own resource-based policy, which you extend for
# AWS IoT in notebook 04.
# </details>
#
# 3. Re-running section 3 after editing `lambda_function.py` uploads new code. How does the
#    notebook know the code changed?
#
# <details><summary>Solution</summary>
#
# The compare cell reads the deployed function's `CodeSha256` (base64 of the SHA-256 of the zip),
# compares it with the same hash of the freshly built package, and calls `update_function_code` only when they differ.
# </details>

# %% [markdown]
# ## Summary
# - The authorizer function receives an event describing the request (`protocolData` only when
#   there is a real request) and answers `isAuthenticated`, `principalId`, `policyDocuments` and
#   the refresh/disconnect intervals.
# - A function runs as an execution role that trusts `lambda.amazonaws.com`; the managed policy
#   `AWSLambdaBasicExecutionRole` lets it write logs.
# - `create_function` takes the zip; the `function_active_v2` waiter waits until it can run.
# - `invoke` with `LogType="Tail"` is the console's Test tab: the answer plus the end of the log.
#
# ## What's next
# In [02 · The token-signing key pair](02-key-pair.ipynb) you create the RSA key pair that signs
# the tokens AWS IoT will check before it ever calls this function.
