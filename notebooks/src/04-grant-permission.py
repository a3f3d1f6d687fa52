# %% [markdown]
# # 04 · Let IoT invoke the function
#
# Your authorizer names your function, but that alone does not let AWS IoT Core call it: Lambda
# refuses callers the function's own policy does not allow. In this notebook you add one statement
# to the function's **resource-based policy** that lets the AWS IoT service invoke it, only on
# behalf of your authorizer.
#
# ## What you will learn
# 1. The difference between identity-based and resource-based policies, and which one applies here.
# 2. How `add_permission` grants `lambda:InvokeFunction` to `iot.amazonaws.com` for one authorizer ARN.
# 3. How to read the statement back with `get_policy`, and why statement ids must be unique.
#
# **Time to learn:** 10 minutes to read everything; 5 minutes on the README's 60-minute workshop path (run the cells, read "What just happened")
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | The authorizer function | Necessary | [01 · The authorizer function](01-authorizer-function.ipynb) |
# | The authorizer and its ARN | Necessary | [03 · Create the authorizer](03-create-authorizer.ipynb) |
# | IAM policy basics (Effect, Principal, Action, Resource, Condition) | Helpful | [IAM policies](https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html) |

# %% [markdown]
# ## Where this stage fits
#
# The custom-auth flow, with this notebook's part highlighted (the permission that lets IoT invoke the function):
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
#     end
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

from helpers.errors import show_briefly
from helpers.rerun import policy_statement, reuse_if_exists, source_arn_of
from helpers.widgets import arn_input, authorizer_exists, validate_authorizer_arn
from helpers.workbook import open_workbook

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback
wb = open_workbook()
print(f"target: {wb.target}, region: {wb.region}")

# %% [markdown]
# ## 1. Two kinds of policy
#
# AWS decides every request by looking at policies of two kinds:
#
# - An **identity-based policy** is attached to the *caller* (a user or role) and says what that
#   caller may do. The execution role of notebook 01 carries one: the function may write logs.
# - A **resource-based policy** is attached to the *resource* being called and says who may call
#   it. A Lambda function has one, its **function policy**, which starts out empty.
#
# AWS IoT Core is not a user or role in your account, so you cannot give it an identity policy.
# Instead you name it in the function's resource-based policy, as the service principal
# `iot.amazonaws.com`. A **condition** on the **source ARN** narrows the grant to your authorizer:
# without it, any authorizer in any account could point at your function and run it.
#
# Pick the authorizer: the box is pre-filled with the ARN notebook 03 recorded.

# %%
authorizer_arn_box = arn_input(
    "Authorizer ARN", wb.state.require("authorizer_arn", notebook="03-create-authorizer"), validate_authorizer_arn,
    authorizer_exists(wb),  # also asks AWS that it exists
)
authorizer_arn_box

# %%
authorizer_arn = authorizer_arn_box.checked()  # the shape and that it exists, or one line saying what is wrong
function_name = wb.names.function
statement_id = wb.names.statement_id
print("Authorizer ARN:", authorizer_arn)
print("Function:      ", function_name)
print("Statement id:  ", statement_id)

# %% [markdown]
# ### What just happened
# The box's value is an authorizer ARN, `arn:aws:iot:<region>:<account>:authorizer/<name>`. The
# **statement id** (`Sid`) names the statement you are about to add; it must be unique within the
# function's policy, which is why it carries the workbook's suffix.
#
# ### Troubleshooting
# - **`NotReadyError: authorizer_arn is not recorded yet`**: run notebook 03 first.
# - **`ArnError: Authorizer ARN: ...`** (a wrong shape, or no such authorizer): the box holds something else, for example
#   the function ARN. Paste the ARN that notebook 03 printed.

# %% [markdown]
# ## 2. Add the permission
#
# `add_permission` adds one statement to the function policy: **Allow** principal
# `iot.amazonaws.com` the action `lambda:InvokeFunction`, if the request's source ARN is your
# authorizer. Lambda refuses a second statement with the same id (`ResourceConflictException`),
# so on a re-run `reuse_if_exists` (in `helpers/rerun.py`) keeps the statement your first run added.

# %%
awslambda = wb.client("lambda")
# CLI: aws lambda add-permission --function-name custom-auth-function-<suffix> \
#        --statement-id Id-<suffix> --action lambda:InvokeFunction \
#        --principal iot.amazonaws.com --source-arn <authorizer ARN>
with reuse_if_exists() as outcome:
    awslambda.add_permission(
        FunctionName=function_name, StatementId=statement_id, Action="lambda:InvokeFunction",
        Principal="iot.amazonaws.com", SourceArn=authorizer_arn,
    )
wb.record("lambda-permission", f"{function_name}/{statement_id}")
print("added" if outcome.created else "already there from an earlier run: reused")

# %% [markdown]
# A kept statement may name another authorizer (say you changed the box above since the first run).
# `policy_statement` reads the statement back from `get_policy`, and `source_arn_of` its condition's
# source ARN (both in `helpers/rerun.py`); if it is not yours, remove it and add it again.

# %%
statement = policy_statement(awslambda, function_name, statement_id)
if source_arn_of(statement) != authorizer_arn:
    # CLI: aws lambda remove-permission --function-name custom-auth-function-<suffix> --statement-id Id-<suffix>
    awslambda.remove_permission(FunctionName=function_name, StatementId=statement_id)
    # CLI: aws lambda add-permission ... (the same line as above)
    awslambda.add_permission(FunctionName=function_name, StatementId=statement_id, Action="lambda:InvokeFunction",
                             Principal="iot.amazonaws.com", SourceArn=authorizer_arn)
    statement = policy_statement(awslambda, function_name, statement_id)
wb.state.set(statement_id=statement_id)
print(json.dumps(statement, indent=2, sort_keys=True))

# %% [markdown]
# ### What just happened
# Lambda added the statement; `get_policy` answers the whole policy as a JSON *string*, which
# `policy_statement` parsed so the cell could pretty-print your statement. Read it as a sentence: **Allow** the **service** `iot.amazonaws.com` to
# **`lambda:InvokeFunction`** on **this function's ARN**, on the **condition** that the request
# comes from a source whose ARN is **like** your authorizer's (`ArnLike` on `AWS:SourceArn`).
# The statement id is saved as `statement_id`, and the permission is recorded for clean-up.
#
# The whole function policy, as `get_policy` returns it, wraps the statements in a policy document:

# %%
# CLI: aws lambda get-policy --function-name custom-auth-function-<suffix>
function_policy = json.loads(awslambda.get_policy(FunctionName=function_name)["Policy"])
print("Version:   ", function_policy["Version"])
print("Statements:", sorted(s["Sid"] for s in function_policy["Statement"]))

# %% [markdown]
# ### Troubleshooting
# Here is an error on purpose: adding a statement with an id that is already taken.

# %% tags=["raises-exception"]
# CLI: aws lambda add-permission --function-name custom-auth-function-<suffix> --statement-id Id-<suffix> ...
awslambda.add_permission(
    FunctionName=function_name,
    StatementId=statement_id,
    Action="lambda:InvokeFunction",
    Principal="iot.amazonaws.com",
    SourceArn=authorizer_arn,
)

# %% [markdown]
# Lambda answers **`ResourceConflictException`** (HTTP 409): the statement id exists. The AWS
# tutorial uses the fixed id `Id-1234` and advises picking another value if you see this error,
# which happens whenever you repeat the tutorial. The workbook avoids it twice over: its id carries
# your suffix (`Id-<suffix>`), so it cannot collide with another learner's or tutorial's
# statement, and section 2 runs its `add_permission` inside `reuse_if_exists`, which reads exactly
# this error as "added by an earlier run".
#
# Other errors here:
#
# - **`ClientError: ... (ResourceNotFoundException) ... Function not found`**: the function name
#   is wrong or the function is in another Region. Run notebook 01.
# - **`ClientError: ... (AccessDeniedException) ... not authorized to perform:
#   lambda:AddPermission`** (AWS): your identity may not change function policies. Ask for
#   `lambda:AddPermission` and `lambda:GetPolicy` on the function.
# - **`ClientError: ... (InvalidParameterValueException) ... principal`**: the principal is
#   misspelled; it must be exactly `iot.amazonaws.com`.

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: the function policy holds a statement that lets
# `iot.amazonaws.com` invoke the function, conditioned on your authorizer's ARN.

# %%
check_policy = json.loads(awslambda.get_policy(FunctionName=function_name)["Policy"])
grants = [s for s in check_policy["Statement"] if s["Effect"] == "Allow" and source_arn_of(s) == authorizer_arn
          and s["Principal"] == {"Service": "iot.amazonaws.com"} and s["Action"] == "lambda:InvokeFunction"]
assert [s["Sid"] for s in grants] == [wb.state.require("statement_id", notebook="04-grant-permission")]
assert grants[0]["Resource"] == wb.state.require("function_arn", notebook="01-authorizer-function")
assert authorizer_arn == wb.state.require("authorizer_arn", notebook="03-create-authorizer")
print(f"✓ Permission: iot.amazonaws.com may invoke {function_name} for {authorizer_arn.split('/')[-1]} only.")

# %% [markdown]
# ## Questions
# 1. Why can't you give AWS IoT Core permission through the execution role of notebook 01?
#
# <details><summary>Solution</summary>
#
# The execution role is what the *function* runs as; its trust policy lets Lambda assume it, and
# its permissions say what the function's code may do. Whether someone may *invoke* the function
# is decided by the function's resource-based policy, the only place where the AWS IoT service
# principal can be named.
# </details>
#
# 2. What could happen if you left out `SourceArn`?
#
# <details><summary>Solution</summary>
#
# The statement would let the AWS IoT service invoke the function for *any* authorizer, including
# one in another AWS account that someone pointed at your function's ARN. `SourceArn` limits the
# grant to your authorizer (AWS also recommends adding `SourceAccount`).
# </details>

# %% [markdown]
# ## Summary
# - Identity-based policies say what a caller may do; resource-based policies say who may call a
#   resource. AWS IoT is named in the function's resource-based policy.
# - `add_permission` with `Principal="iot.amazonaws.com"`, `Action="lambda:InvokeFunction"` and
#   `SourceArn=<authorizer ARN>` grants exactly what the authorizer needs.
# - Statement ids are unique per function: a repeated id is a `ResourceConflictException`, so
#   the workbook's id carries a suffix and the cell checks before it adds.
#
# ## What's next
# In [05 · Test the authorizer](05-test-invoke.ipynb) you sign a token and have AWS IoT run the
# whole chain with `test_invoke_authorizer`.
