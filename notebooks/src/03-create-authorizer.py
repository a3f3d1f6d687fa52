# %% [markdown]
# # 03 · Create the authorizer
#
# The **authorizer** is the AWS IoT Core resource that ties the previous two stages together: it
# names the Lambda function that decides, and holds the public key that checks token signatures.
# Devices refer to it by name when they connect or publish. In this notebook you create it with
# token signing on, read back its description, and see what AWS IoT does with a key it cannot use.
#
# ## What you will learn
# 1. Which function the authorizer calls, given by its ARN.
# 2. How `create_authorizer` sets up token signing: `tokenKeyName` and `tokenSigningPublicKeys`.
# 3. How to read an authorizer back with `describe_authorizer`.
# 4. What AWS IoT answers when the public key is unusable, and why authorizers are a limited resource.
#
# **Time to learn:** 15 minutes to read everything; 5 minutes on the README's 60-minute workshop path (run the cells, read "What just happened")
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | The deployed authorizer function and its ARN | Necessary | [01 · The authorizer function](01-authorizer-function.ipynb) |
# | The token-signing key pair | Necessary | [02 · The token-signing key pair](02-key-pair.ipynb) |
# | Amazon Resource Names (ARNs) | Helpful | [ARNs](https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html) |

# %% [markdown]
# ## Where this stage fits
#
# The custom-auth flow, with this notebook's part highlighted (the authorizer: name, token key, public key):
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
#     rect rgb(255, 230, 140)
#     Gateway->>Authorizer: 2. look up the custom authorizer by name
#     Authorizer->>Authorizer: 3. verify the token's signature with the public key
#     end
#     Authorizer->>Function: 4. invoke (allowed by the function's resource policy)
#     Function-->>Authorizer: 5. isAuthenticated, principalId, policyDocuments
#     Authorizer->>Authorizer: 6. does the policy allow iot:Publish on the topic?
#     Gateway->>Broker: 7. publish the message
#     Broker-->>Subscriber: 8. deliver to matching subscriptions
#     Gateway-->>Device: 9. 200 OK, or 403 Forbidden
# ```
#
# (JupyterLab 4.1 and later draw this diagram; elsewhere it shows as text. The README has the whole flow.)

# %%
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from helpers.errors import show_briefly
from helpers.rerun import differences, reuse_if_exists
from helpers.widgets import arn_input, function_exists, validate_function_arn
from helpers.workbook import open_workbook

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback
wb = open_workbook()
print(f"target: {wb.target}, region: {wb.region}")

# %% [markdown]
# ## 1. Which function?
#
# The authorizer refers to its function by **function ARN**. The box below is pre-filled with the
# ARN notebook 01 recorded. In the console you would paste it from the function's overview page;
# here you may paste another function's ARN, and the box checks its shape as you type and asks Lambda that it exists.

# %%
function_arn_box = arn_input(
    "Function ARN", wb.state.require("function_arn", notebook="01-authorizer-function"), validate_function_arn,
    function_exists(wb),  # also asks AWS that it exists
)
function_arn_box

# %% [markdown]
# The next cell reads the box. Run it again after you change the value. (When the notebook runs
# without a browser, the box keeps its pre-filled value.)

# %%
function_arn = function_arn_box.checked()  # the shape and that it exists, or one line saying what is wrong
print("Function ARN:", function_arn)

# %% [markdown]
# ### What just happened
# `arn_input` (in `helpers/widgets.py`) showed a text box and a validator that knows the shape of a
# Lambda function ARN, `arn:aws:lambda:<region>:<account>:function:<name>`, and asked Lambda that it exists. `checked()` stops the
# notebook here if the value is not one, rather than letting AWS IoT reject it later.
#
# ### Troubleshooting
# - **`NotReadyError: function_arn is not recorded yet: run notebook 01-authorizer-function
#   first`**: the state file has no function ARN. Run notebook 01.
# - **`ArnError: Function ARN: ...`**: the box holds something else (a role ARN, a name, or the
#   ARN of a function that does not exist; the message says which). Paste the ARN notebook 01 printed.

# %% [markdown]
# ## 2. Create the authorizer with token signing on
#
# Token signing is set by four parameters of `create_authorizer`:
#
# | Parameter | Value | Meaning |
# | --- | --- | --- |
# | `signingDisabled` | `False` | devices must send a token signature (the default; it can never be changed later) |
# | `tokenKeyName` | `"tokenKeyName"` | the header or query parameter that carries the token |
# | `tokenSigningPublicKeys` | `{"FirstKey": <PEM>}` | named public keys; a signature valid for any of them passes |
# | `status` | `"ACTIVE"` | AWS IoT uses the authorizer at once |
#
# Naming the keys lets you rotate them: add `SecondKey`, move devices over, then remove `FirstKey`.

# %%
iot = wb.client("iot")
public_key_pem = Path(wb.state.require("public_key_path", notebook="02-key-pair")).read_text()
TOKEN_KEY_NAME = "tokenKeyName"
print(public_key_pem.splitlines()[0], f"... ({len(public_key_pem)} characters)")

# %% [markdown]
# The next cell creates the authorizer. On a second run AWS IoT answers
# `ResourceAlreadyExistsException`, and `reuse_if_exists` (in `helpers/rerun.py`) keeps the one
# your first run made.

# %%
# CLI: aws iot create-authorizer --authorizer-name my-new-authorizer-<suffix> \
#        --authorizer-function-arn <function ARN> --token-key-name tokenKeyName \
#        --token-signing-public-keys FirstKey="$(cat public-key.pem)" --status ACTIVE \
#        --no-signing-disabled --tags Key=iot-custom-auth-workbook,Value=<suffix>
with reuse_if_exists() as outcome:
    iot.create_authorizer(
        authorizerName=wb.names.authorizer, authorizerFunctionArn=function_arn, status="ACTIVE",
        tokenKeyName=TOKEN_KEY_NAME, tokenSigningPublicKeys={"FirstKey": public_key_pem}, signingDisabled=False,
        tags=[{"Key": key, "Value": value} for key, value in wb.tags().items()],
    )
wb.record("iot-authorizer", wb.names.authorizer)
print("created" if outcome.created else "already there from an earlier run: reused")

# %% [markdown]
# A reused authorizer may be out of date: made before you chose another function in the box, or
# holding the public key of an older key pair. `differences` (also in `helpers/rerun.py`) compares
# what `describe_authorizer` reports with what you want, and `update_authorizer` changes only then.

# %%
wanted = {"authorizerFunctionArn": function_arn, "tokenKeyName": TOKEN_KEY_NAME,
          "tokenSigningPublicKeys": {"FirstKey": public_key_pem}, "status": "ACTIVE"}
# CLI: aws iot describe-authorizer --authorizer-name my-new-authorizer-<suffix>
current = iot.describe_authorizer(authorizerName=wb.names.authorizer)["authorizerDescription"]
stale = differences(current, wanted)
if stale:
    # CLI: aws iot update-authorizer --authorizer-name my-new-authorizer-<suffix> \
    #        --authorizer-function-arn <function ARN> --token-signing-public-keys FirstKey=... --status ACTIVE
    iot.update_authorizer(authorizerName=wb.names.authorizer, **wanted)
print("updated:", stale if stale else "nothing, it is as wanted")

# %% [markdown]
# `describe_authorizer` returns the whole configuration, dates included. These are the fields that
# matter here:

# %%
# CLI: aws iot describe-authorizer --authorizer-name my-new-authorizer-<suffix>
description = iot.describe_authorizer(authorizerName=wb.names.authorizer)["authorizerDescription"]
wb.state.set(authorizer_arn=description["authorizerArn"], token_key_name=description["tokenKeyName"])
print(f"{'authorizerArn:':<24}{description['authorizerArn']}")
print(f"{'authorizerName:':<24}{description['authorizerName']}")
print(f"{'status:':<24}{description['status']}")
print(f"{'signingDisabled:':<24}{description['signingDisabled']}")
print(f"{'tokenKeyName:':<24}{description['tokenKeyName']}")
print(f"{'tokenSigningPublicKeys:':<24}{sorted(description['tokenSigningPublicKeys'])}")
print(f"{'authorizerFunctionArn:':<24}{description['authorizerFunctionArn']}")

# %% [markdown]
# ### What just happened
# AWS IoT created the authorizer `my-new-authorizer-<suffix>` and answered with its **authorizer
# ARN**, `arn:aws:iot:<region>:<account>:authorizer/<name>`, now saved as `authorizer_arn` along
# with `token_key_name`. The description confirms it is ACTIVE, that signing is on, and which
# function and key it uses. Nothing has called the function yet, and AWS IoT is not even *allowed*
# to call it: granting that is notebook 04.
#
# ### Troubleshooting
# - **`ResourceAlreadyExistsException`** does not reach you: `reuse_if_exists` reads it as "made
#   by an earlier run", and the cell after it brings that authorizer in line with what you want.
# - **`ClientError: ... (InvalidRequestException) ... tokenSigningPublicKeys`**: the public key
#   is not a usable PEM RSA key; section 3 shows this on purpose.
# - **`ClientError: ... (LimitExceededException)`**: the account has reached its quota of
#   authorizers (see section 3).

# %% [markdown]
# ## 3. When AWS IoT refuses a key
#
# AWS IoT accepts only RSA public keys of **at least 2048 bits**. The next cell makes a throwaway
# 1024-bit key in memory (its private half is discarded at once) and offers its public half to a
# new authorizer with a throwaway name. Expect an error.

# %%
small_public_pem = (
    rsa.generate_private_key(public_exponent=65537, key_size=1024)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
throwaway_name = f"{wb.names.authorizer}-small-key"
print(small_public_pem.splitlines()[0], "... a 1024-bit RSA public key")

# %% tags=["raises-exception"]
# CLI: aws iot create-authorizer --authorizer-name my-new-authorizer-<suffix>-small-key ... \
#        --token-signing-public-keys FirstKey="$(cat small-public-key.pem)"
wb.record("iot-authorizer", throwaway_name)  # first: should AWS accept the key, notebook 10 deletes it
iot.create_authorizer(
    authorizerName=throwaway_name,
    authorizerFunctionArn=function_arn,
    tokenKeyName=TOKEN_KEY_NAME,
    tokenSigningPublicKeys={"FirstKey": small_public_pem},
    status="ACTIVE",
    signingDisabled=False,
)

# %% [markdown]
# The sandbox answered **`InvalidRequestException`** (HTTP 400), which is what AWS's 2048-bit rule
# implies; AWS does not document whether it checks the size at create time, so the throwaway name was
# recorded first: if your account accepted the key, notebook 10 deletes that authorizer. The request itself is wrong, so
# retrying it cannot help. The same error comes back for a garbled key, such as a PEM with a line
# missing or its `BEGIN`/`END` lines cut off by a copy and paste. Nothing was created:

# %%
try:
    # CLI: aws iot describe-authorizer --authorizer-name my-new-authorizer-<suffix>-small-key
    iot.describe_authorizer(authorizerName=throwaway_name)
    throwaway_exists = True
except iot.exceptions.ResourceNotFoundException:
    throwaway_exists = False
    wb.state.forget_resource("iot-authorizer", throwaway_name)  # nothing to clean up
print("Throwaway authorizer exists:", throwaway_exists)

# %% [markdown]
# ### What just happened
# AWS IoT validated the public key before creating anything and refused it as a whole, so no
# half-made authorizer is left behind.
#
# ### Troubleshooting
# - **`ClientError: ... (LimitExceededException)`**: an account may have only a limited number
#   of authorizers at one time (the tutorial warns about it). Old authorizers from earlier
#   tutorials count too. List them with `aws iot list-authorizers`; delete the ones you no longer
#   need (set them `INACTIVE` first). Notebook 10 deletes exactly what this workbook recorded, so
#   running it after each session keeps you far from the quota.
# - **`ClientError: ... (InvalidRequestException)`** with a key that looks right: make sure you
#   pasted the *public* key file, whole, including `-----BEGIN PUBLIC KEY-----` and
#   `-----END PUBLIC KEY-----`, with no characters added or removed.

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: the authorizer is ACTIVE with signing on, holds
# `FirstKey` (your public key), and calls the function from notebook 01.

# %%
check = iot.describe_authorizer(authorizerName=wb.names.authorizer)["authorizerDescription"]
assert check["status"] == "ACTIVE" and check["signingDisabled"] is False
assert check["tokenKeyName"] == wb.state.require("token_key_name", notebook="03-create-authorizer") == "tokenKeyName"
assert check["tokenSigningPublicKeys"]["FirstKey"].strip() == public_key_pem.strip()
assert check["authorizerFunctionArn"] == function_arn == wb.state["function_arn"]
assert check["authorizerArn"] == wb.state.require("authorizer_arn", notebook="03-create-authorizer")
assert not throwaway_exists or ("iot-authorizer", throwaway_name) in wb.state.resources()  # either outcome, recorded
print(f"✓ Authorizer: {check['authorizerName']} is ACTIVE, signing on with FirstKey, calling your function.")

# %% [markdown]
# ## Questions
# 1. Why is `tokenSigningPublicKeys` a map of named keys rather than a single key?
#
# <details><summary>Solution</summary>
#
# For key rotation: you can add a second key, move your token signer to it, then remove the old
# one, and AWS IoT accepts signatures made with any key in the map throughout.
# </details>
#
# 2. Devices put their token in a header or query parameter called `tokenKeyName`. Where does that
#    name come from, and could it be another one?
#
# <details><summary>Solution</summary>
#
# It is the authorizer's `tokenKeyName`, which you chose in `create_authorizer` (the tutorial's
# literal `tokenKeyName`). Any name of letters, digits, `_` and `-` would do, as long as devices
# send the token under the same name.
# </details>
#
# 3. Can you switch off token signing later with `update_authorizer`?
#
# <details><summary>Solution</summary>
#
# No. `signingDisabled` is fixed when the authorizer is created; `update_authorizer` has no such
# parameter. To change it, create a new authorizer.
# </details>

# %% [markdown]
# ## Summary
# - An authorizer names its Lambda function by ARN and, with signing on, holds named RSA public
#   keys (at least 2048 bits) and the `tokenKeyName` that carries the token.
# - `create_authorizer` with `status="ACTIVE"` puts it to use at once; `describe_authorizer` reads it back.
# - A bad key is an `InvalidRequestException` and creates nothing; too many authorizers is a
#   `LimitExceededException`, which cleaning up avoids.
#
# ## What's next
# In [04 · Let IoT invoke the function](04-grant-permission.ipynb) you give AWS IoT permission to
# call your function for this authorizer, and for nothing else.
