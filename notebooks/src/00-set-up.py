# %% [markdown]
# # 00 · Set up: choose where your AWS calls go
#
# This workbook builds an AWS IoT Core **custom authorizer** one stage per notebook: a Lambda
# function that decides who may publish, a key pair that signs tokens, the authorizer that ties
# them together, and a device that publishes over HTTPS while an MQTT client watches.
# Every stage makes real AWS API calls. This first notebook decides *where* those calls go.
#
# ## What you will learn
# 1. The two targets: the offline **sandbox** (the default) and a real **AWS account**.
# 2. How one set of boto3 calls reaches either target: only the endpoint and credentials change.
# 3. How to ask AWS who you are (`sts get-caller-identity`) and read the answer.
#
# **Time to learn:** 10 minutes to read everything; 5 minutes on the README's 60-minute workshop path (run the cells, read "What just happened")
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | Running a notebook cell (Shift+Enter) | Necessary | [JupyterLab basics](https://jupyterlab.readthedocs.io/en/stable/user/notebook.html) |
# | What an AWS account and region are | Helpful | [AWS glossary](https://docs.aws.amazon.com/glossary/latest/reference/glos-chap.html) |
#
# Nothing else: no AWS account is needed for the sandbox.
#
# **How to run the notebooks.** Run each cell with Shift+Enter and read its output before the next.
# Some cells fail *on purpose* (their text says so) to show an AWS error as one line. JupyterLab's
# *Run > Run All Cells* stops at such a cell: click the cell after it and choose *Run > Run Selected
# Cell and All Below* to go on.

# %%
import os

from helpers.errors import show_briefly
from helpers.widgets import target_chooser
from helpers.workbook import open_workbook

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback

# %% [markdown]
# ## 1. Two targets, one code path
#
# | | **sandbox** (default) | **aws** |
# | --- | --- | --- |
# | Needs | nothing but this machine | an AWS account, credentials for boto3, a region |
# | Costs | nothing | a few cents at most; notebook 10 deletes everything |
# | Talks to | a local stand-in for IAM, Lambda, IoT and CloudWatch Logs over HTTPS | AWS |
#
# The sandbox is not a mock: it checks every request's AWS signature, runs your Lambda handler in
# its own process, and runs a real MQTT broker. That is why the *same* cells work against both:
# boto3 is simply pointed at a different endpoint with different credentials.
#
# Pick a target with the buttons below. If you do nothing, the workbook uses the sandbox, and so
# does a headless run (set the environment variable `WORKBOOK_TARGET=aws` to script a real run).

# %%
target_chooser()

# %% [markdown]
# The chooser only records your choice in the workbook's state file (`.workbook/state.json`,
# never committed). The next cell opens the workbook on that target; on the sandbox it starts the
# sandbox in the background first, if it is not already running (`helpers/workbook.py` shows how).

# %%
wb = open_workbook()
print(wb.summary())

# %% [markdown]
# The **suffix** is how thirty people can share one AWS account in a workshop: every name the
# workbook creates ends with it (`custom-auth-function-<suffix>` and so on), so nobody's
# resources collide, and re-running a notebook finds *your* resources again.

# %% [markdown]
# ## 2. Who am I?
#
# Every AWS tutorial should start by checking who the credentials belong to: it catches the wrong
# profile or region before anything is created. The call is STS `GetCallerIdentity`; it needs no
# permissions at all.

# %%
sts = wb.client("sts")
# CLI: aws sts get-caller-identity
identity = sts.get_caller_identity()
print("Account:", identity["Account"])
print("Arn:    ", identity["Arn"])

# %% [markdown]
# ### What just happened
# boto3 signed the request with AWS Signature Version 4 (SigV4) using the target's credentials,
# sent it over HTTPS, and got back the account id and the identity's ARN. On the sandbox the
# account is always `123456789012`, the placeholder account AWS uses in its own documentation.
#
# To make the AWS CLI or any other AWS SDK talk to the sandbox from a terminal, start it (or find
# the running one) with the venv's Python, from the repository's folder, and `eval` the settings it
# prints; the AWS CLI is the one the workbook's install provides:
#
# ```bash
# eval "$(.venv/bin/python -m helpers.sandbox start)"
# .venv/bin/aws sts get-caller-identity
# ```

# %% [markdown]
# ### Troubleshooting
# - **`AwsSetupError: ... boto3 found no credentials`** (target `aws`): boto3 looks in the
#   environment, then `~/.aws/credentials`. Run `aws configure`, or choose the sandbox.
# - **`ClientError: ... (InvalidClientTokenId)`** or **`(SignatureDoesNotMatch)`**: the access
#   key is unknown or the secret is wrong. On the sandbox this means something overrode its
#   credentials (check `AWS_ACCESS_KEY_ID` in your environment).
# - **`SandboxError: The sandbox exited while starting`**: the message quotes the end of
#   `.workbook/sandbox/sandbox.log`; a port conflict is the usual cause.

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: the target is recorded, boto3 reaches it, and the
# account STS reports is the one the workbook will put into every ARN.

# %%
assert wb.target in ("sandbox", "aws")
assert identity["Account"] == wb.account_id and len(wb.account_id) == 12
assert wb.region == wb.state.region
print(f"✓ Set up: target {wb.target}, region {wb.region}, account reachable.")

# %% [markdown]
# ## Questions
# 1. Which two things differ between a call to the sandbox and a call to AWS?
#
# <details><summary>Solution</summary>
#
# The endpoint URL the client connects to, and the credentials it signs with. The boto3 calls,
# their parameters and the answers' shapes are the same.
# </details>
#
# 2. Why does every resource name carry a suffix?
#
# <details><summary>Solution</summary>
#
# So that many learners can share one AWS account without name collisions, and so that running a
# notebook again reuses this workbook's resources instead of failing with a conflict.
# </details>

# %% [markdown]
# ## The notebooks
# | notebook | stage | workshop path |
# | --- | --- | --- |
# | [00 · Set up](00-set-up.ipynb) | choose the target and check who you are | 5 min |
# | [01 · The authorizer function](01-authorizer-function.ipynb) | the Lambda handler, its role, deploy and test | 10 min |
# | [02 · The key pair](02-key-pair.ipynb) | the RSA key pair that signs tokens | 5 min |
# | [03 · Create the authorizer](03-create-authorizer.ipynb) | the authorizer, signing on | 5 min |
# | [04 · Grant permission](04-grant-permission.ipynb) | let `iot.amazonaws.com` invoke the function | 5 min |
# | [05 · Test invoke](05-test-invoke.ipynb) | `test-invoke-authorizer`: Deny, then Allow | 10 min |
# | [06 · Publish over HTTPS](06-publish-https.ipynb) | a device's request with the custom-auth headers | 10 min |
# | [07 · Watch the messages](07-watch-messages.ipynb) | an MQTT client watching | take home |
# | [08 · Experiments](08-experiments.ipynb) | tampering, deny, the decision log, query strings | take home |
# | [09 · MQTT devices](09-mqtt-devices.ipynb) | a device connects over MQTT with a password, least privilege | take home |
# | [10 · Clean up](10-cleanup.ipynb) | delete everything the workbook created | 5 min |

# %% [markdown]
# ## Summary
# - The workbook runs against the offline sandbox by default, or a real AWS account.
# - `open_workbook()` gives every notebook boto3 clients for the chosen target.
# - `sts.get_caller_identity()` confirms who you are before you create anything.
#
# ## What's next
# In [01 · The authorizer function](01-authorizer-function.ipynb) you write the Lambda handler
# that decides Allow or Deny, deploy it, and test it.
