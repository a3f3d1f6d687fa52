# %% [markdown]
# # 10 · Clean up
#
# The workbook created an IAM role, a Lambda function with a resource-based policy, an AWS IoT
# custom authorizer and a key pair. This notebook deletes exactly those, in an order AWS accepts,
# and then asks AWS, resource by resource, to confirm that each one is gone. It is safe to run
# more than once, and after a run that stopped halfway.
#
# ## What you will learn
# 1. Why you should delete a tutorial's resources: authorizer quotas, cost and standing permissions.
# 2. The tutorial's three CLI steps for deleting an authorizer, and why the order matters.
# 3. How to preview a clean-up (a dry run) before you delete anything.
# 4. How to delete everything the workbook recorded, in dependency order.
# 5. How to prove that it is gone, from the APIs themselves.
#
# **Time to learn:** 10 minutes to read everything; 5 minutes on the README's 60-minute workshop path (run the cells, read "What just happened")
#
# ## Prerequisites
# | Concept | Importance | Where |
# | --- | --- | --- |
# | What the workbook created, and where it recorded it | Necessary | [00 · Set up](00-set-up.ipynb) to [09 · MQTT devices](09-mqtt-devices.ipynb) |
# | The authorizer's `ACTIVE`/`INACTIVE` status | Helpful | [03 · Create the authorizer](03-create-authorizer.ipynb) |

# %%
from pathlib import Path

from botocore.exceptions import ClientError

from helpers.cleanup import adopt, cleanup, find_orphans, format_steps
from helpers.errors import show_briefly
from helpers.workbook import error_code, open_workbook

show_briefly()  # errors (AWS, HTTP and the workbook's own) show as one clear line; %tb shows the full traceback

# %%
wb = open_workbook()
iot, lambda_client, iam = wb.client("iot"), wb.client("lambda"), wb.client("iam")
print(f"target: {wb.target}, region: {wb.region}")

# %% [markdown]
# ## 1. Why clean up
#
# - **Quotas.** An AWS account may have only a limited number of custom authorizers at a time. Leave
#   old ones behind, and one day `create-authorizer` fails with `LimitExceededException`; in a
#   workshop sharing one account, that day comes quickly.
# - **Cost.** Nothing here costs much while idle, but a Lambda function's logs are kept (and billed)
#   forever unless you delete them, and every request a forgotten authorizer answers invokes the
#   function.
# - **Standing permissions.** The role and the function's resource-based policy are permissions that
#   nobody is watching any more. The private key can still sign tokens the authorizer accepts, as
#   long as the authorizer exists.

# %% [markdown]
# ## 2. The tutorial's way
#
# The AWS tutorial deletes the authorizer in three commands: find it, deactivate it, delete it.
# AWS refuses to delete an `ACTIVE` authorizer. That protects the devices still using it:
# deactivating first is a deliberate, separate step, and it already stops the authorizer from
# admitting anyone. With your names:

# %%
name = wb.names.authorizer
print("aws iot list-authorizers")
print(f"aws iot update-authorizer --status INACTIVE --authorizer-name {name}")
print(f"aws iot delete-authorizer --authorizer-name {name}")

# %% [markdown]
# The rest has an order too. IAM refuses to delete a role with policies still attached
# (`DeleteConflict`), and a Lambda permission only exists as part of its function. So the workbook
# goes from the outside in: the IoT logging options notebook 08 changed (put back as they were, or
# turned off), authorizer, permission, function, policy attachments, roles, key files.
# It deletes only what the earlier notebooks recorded with `wb.record(...)` in the state file,
# never anything it merely finds by name, so it cannot touch another learner's resources.

# %% [markdown]
# ### If the state file was lost
# A deleted or replaced `.workbook/state.json` would leave resources behind that nothing records. So
# before the preview, the workbook looks for them: resources with its name prefixes and its tag, and
# key files in its keys folder. On AWS only those provably yours count (their authorizer holds *your*
# public key), so another learner's resources in a shared account are never touched; on the sandbox
# everything in it is yours. What it finds is added to the record, and deleted with the rest.

# %%
orphans = find_orphans(wb)  # read-only calls: list/describe/get (helpers/cleanup.py)
print(orphans.summary())
print("added to the record:", adopt(wb, orphans))

# %% [markdown]
# ## 3. Preview: a dry run
#
# `helpers.cleanup.cleanup(wb, dry_run=True)` reads the record and says what it *would* do, without
# a single AWS call. (The functions that do the deleting are in `helpers/cleanup.py`, one short
# function per kind: `update_authorizer` + `delete_authorizer`, `remove_permission`,
# `delete_function`, `detach_role_policy`, `delete_role`, and deleting the two key files.)

# %% tags=["nbval-ignore-output"]
# nbval-ignore-output: the plan lists what is still recorded: everything on a first run, nothing on a second.
plan = cleanup(wb, dry_run=True)
print(format_steps(plan))

# %% [markdown]
# ## 4. Delete it
#
# Now for real. Each step either deletes its resource, finds it `already gone` (from an earlier,
# interrupted run: AWS answers `ResourceNotFoundException` or `NoSuchEntity`), or reports
# `failed: ...` and keeps it recorded so that the next run tries again. Either of the first two
# outcomes removes it from the record.

# %% tags=["nbval-ignore-output"]
# nbval-ignore-output: the steps are what was still recorded: every resource on a first run, none on a second.
steps = cleanup(wb)
print(format_steps(steps))

# %% [markdown]
# Whatever the table above said, this is what must hold now, and it prints the same on every run:

# %%
failed = [step for step in steps if step.outcome.startswith("failed")]
print("failed steps:      ", len(failed))
print("still recorded:    ", wb.state.resources())

# %% [markdown]
# The ARNs and key paths the stages saved now name things that no longer exist. Forget them, so
# that opening a stage notebook after this one tells you exactly which notebook to run first,
# instead of calling AWS with the name of a deleted resource.

# %%
STAGE_VALUES = ("role_arn", "function_arn", "private_key_path", "public_key_path",
                "authorizer_arn", "token_key_name", "statement_id", "token")
if not failed:
    wb.state.set(**{key: None for key in STAGE_VALUES})
print("stage values left: ", sorted(key for key in STAGE_VALUES if wb.state.get(key) is not None))

# %% [markdown]
# ### What just happened
# On a first run every line says `deleted`; on a second run there is nothing left to do. If a line
# says `failed`, its message is AWS's own error: fix the cause (often a missing IAM permission on a
# real account) and run the cell again.

# %% [markdown]
# ## 5. Prove it is gone
#
# A clean-up you have not checked is a hope. Ask each service about each resource. A deleted
# resource answers with an error, and which error is part of the proof. Here is the raw answer for
# the authorizer:

# %% tags=["raises-exception"]
# CLI: aws iot describe-authorizer --authorizer-name NAME
iot.describe_authorizer(authorizerName=name)

# %% [markdown]
# `ResourceNotFoundException` is AWS IoT's way of saying "no such authorizer". Lambda uses the same
# code name; IAM says `NoSuchEntity`. The cell below asks about every resource and reports each
# expected "not found" as **gone**; anything else is a failure you should look at.

# %%
def is_gone(call, gone_code):
    """'gone' when the call fails with the service's not-found error; otherwise say what it found."""
    try:
        call()
    except ClientError as error:
        if error_code(error) == gone_code:
            return f"gone ({gone_code})"
        return f"CHECK: {error_code(error)}"
    return "STILL THERE"


checks = {
    # CLI: aws iot describe-authorizer --authorizer-name NAME
    f"authorizer {name}": is_gone(lambda: iot.describe_authorizer(authorizerName=name),
                                  "ResourceNotFoundException"),
    # CLI: aws lambda get-function --function-name NAME
    f"function {wb.names.function}": is_gone(lambda: lambda_client.get_function(FunctionName=wb.names.function),
                                             "ResourceNotFoundException"),
    # CLI: aws iam get-role --role-name NAME
    f"role {wb.names.role}": is_gone(lambda: iam.get_role(RoleName=wb.names.role), "NoSuchEntity"),
    f"role {wb.names.logging_role}": is_gone(lambda: iam.get_role(RoleName=wb.names.logging_role), "NoSuchEntity"),
}
key_files = sorted(wb.keys_dir.glob("*.pem")) if wb.keys_dir.is_dir() else []
checks["key files in the keys folder"] = "gone" if not key_files else f"STILL THERE: {len(key_files)} files"
for what, verdict in checks.items():
    print(f"{what:<44} {verdict}")

# %% [markdown]
# AWS IoT logging is back as it was before notebook 08 (off, if it was never configured):

# %%
# CLI: aws iot get-v2-logging-options
try:
    logging_now = iot.get_v2_logging_options()
    logging_off = logging_now["disableAllLogs"] or logging_now["defaultLogLevel"] == "DISABLED"
except ClientError as error:
    logging_off = error_code(error) == "NotConfiguredException"
print("AWS IoT logging off:", logging_off)

# %% [markdown]
# And the authorizer list, as the tutorial's first command shows it: yours is no longer in it.

# %%
# CLI: aws iot list-authorizers
listed = [a["authorizerName"] for page in iot.get_paginator("list_authorizers").paginate() for a in page["authorizers"]]
print(f"{name} listed:", name in listed)

# %% [markdown]
# ### Troubleshooting
# - **`failed: DeleteConflict: Cannot delete entity, must detach all policies first.`** for the role:
#   a policy was attached to it by hand, outside the workbook. Detach it
#   (`aws iam list-attached-role-policies --role-name NAME` shows which), then run again.
# - **`failed: AccessDeniedException`** (AWS): your IAM identity may create but not delete. Ask for
#   `iot:UpdateAuthorizer`, `iot:DeleteAuthorizer`, `lambda:RemovePermission`, `lambda:DeleteFunction`,
#   `iam:DetachRolePolicy` and `iam:DeleteRole`.
# - **The Lambda function's log group** (`/aws/lambda/FUNCTION_NAME`) is created by Lambda, not by the
#   workbook, so it is not deleted here. On AWS, delete it with `aws logs delete-log-group
#   --log-group-name /aws/lambda/FUNCTION_NAME` if you want its log lines gone too.

# %% [markdown]
# ## Check your work
# The cell below proves the stage worked: nothing recorded remains, and every service confirms that
# its resource is gone.

# %%
assert wb.state.resources() == [], wb.state.resources()
assert not failed
assert all(verdict.startswith("gone") for verdict in checks.values()), checks
assert name not in listed
assert not any(Path(path).exists() for path in (wb.state.get("private_key_path"), wb.state.get("public_key_path")) if path)
print("✓ Clean up: nothing recorded remains, and IoT, Lambda and IAM confirm that it is gone.")

# %% [markdown]
# ## Questions
# 1. Why must the authorizer be set to `INACTIVE` before it can be deleted?
#
# <details><summary>Solution</summary>
#
# AWS refuses to delete an `ACTIVE` authorizer. Devices may be using it at this moment; requiring an
# explicit deactivation first makes deletion a deliberate two-step act, and deactivating alone
# already stops it from authorizing anything (you can check nothing broke before you delete).
# </details>
#
# 2. The clean-up runs again after a run that stopped halfway. Why does it not fail on the resources
#    the first run already deleted?
#
# <details><summary>Solution</summary>
#
# Each step treats the service's not-found answer (`ResourceNotFoundException`, `NoSuchEntity`, or
# missing key files) as "already gone" and forgets the record. Only other errors count as failures,
# and those stay recorded so that the next run retries them.
# </details>
#
# 3. Why does the workbook delete only what it recorded, instead of everything whose name starts with
#    `custom-auth-function`?
#
# <details><summary>Solution</summary>
#
# Names can be shared: another learner in the same account, or your own earlier workbook with a
# different suffix, may own resources with similar names. The record holds exactly what *this*
# workbook created, so nothing else can be deleted by mistake.
# </details>

# %% [markdown]
# ## Summary
# - Delete tutorial resources: authorizers count against a quota, and idle permissions and keys are
#   risks nobody watches.
# - An authorizer is deleted in two steps: `update-authorizer --status INACTIVE`, then
#   `delete-authorizer`; roles only once their policies are detached.
# - `cleanup(wb, dry_run=True)` previews, `cleanup(wb)` deletes what was recorded, and describe/get
#   calls answering "not found" prove it is gone.
#
# ## What's next
# That is the whole workbook. To start again from scratch, go back to
# [00 · Set up](00-set-up.ipynb); to try it on a real account, choose the `aws` target there. For
# going further, AWS's guide to [custom authentication](https://docs.aws.amazon.com/iot/latest/developerguide/custom-authentication.html)
# covers MQTT connections with a custom authorizer, which this workbook only touched in notebook 07.
