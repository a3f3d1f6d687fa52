"""AWS IoT logging for notebook 08, the same way on both targets, and undone by notebook 10.

AWS IoT writes nothing to the ``AWSIotLogsV2`` log group until the account turns logging on with
``SetV2LoggingOptions``: a role AWS IoT may assume (trusted by ``iot.amazonaws.com``, allowed to write
CloudWatch Logs, here with AWS's managed policy ``service-role/AWSIoTLogging``) and a default level.
Successful publishes are logged at ``INFO`` and failures at ``ERROR``
(https://docs.aws.amazon.com/iot/latest/developerguide/cwl-format.html), so a level of ``INFO`` is
needed to see both.

Logging options are one setting per account and region. Before changing them, the workbook records
what was there (``iot-logging`` in the state file), and clean-up puts exactly that back (or turns
logging off if it was never configured), before it deletes the role.

Usage (notebook 08):

    role_arn = logging_role(wb)              # create (or reuse) the role; records it for clean-up
    iot.set_v2_logging_options(roleArn=role_arn, defaultLogLevel="INFO")
"""
from __future__ import annotations

import json

import botocore.exceptions

from helpers.workbook import error_code

LOGGING_POLICY = "arn:aws:iam::aws:policy/service-role/AWSIoTLogging"
TRUST_IOT = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "iot.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
KIND = "iot-logging"
NEVER_CONFIGURED = "never-configured"


def previous_options(wb) -> str:
    """The account's logging options now, as the record clean-up restores (``never-configured`` if none)."""
    try:
        options = wb.client("iot").get_v2_logging_options()
    except botocore.exceptions.ClientError as error:
        if error_code(error) != "NotConfiguredException":
            raise
        return NEVER_CONFIGURED
    options.pop("ResponseMetadata", None)
    return json.dumps(options, sort_keys=True)


def logging_role(wb) -> str:
    """Create (or reuse) the role AWS IoT writes logs with, remember the current logging options; its ARN."""
    iam, name = wb.client("iam"), wb.names.logging_role
    if not any(kind == KIND for kind, _ in wb.state.resources()):
        wb.record(KIND, previous_options(wb))  # first, so clean-up can restore it even if a later step fails
    try:
        # CLI: aws iam get-role --role-name NAME
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except botocore.exceptions.ClientError as error:
        if error_code(error) != "NoSuchEntity":
            raise
        # CLI: aws iam create-role --role-name NAME --assume-role-policy-document file://trust-iot.json
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST_IOT),
                              Description="AWS IoT writes AWSIotLogsV2 with this role (iot-custom-auth-workbook)",
                              Tags=[{"Key": k, "Value": v} for k, v in wb.tags().items()])["Role"]["Arn"]
    wb.record("iam-role", name)
    # CLI: aws iam attach-role-policy --role-name NAME --policy-arn arn:aws:iam::aws:policy/service-role/AWSIoTLogging
    iam.attach_role_policy(RoleName=name, PolicyArn=LOGGING_POLICY)
    wb.record("iam-role-policy", f"{name}/{LOGGING_POLICY}")
    return arn


def restore(wb, previous: str) -> None:
    """Put the logging options back as they were before the workbook changed them (clean-up)."""
    iot = wb.client("iot")
    if previous == NEVER_CONFIGURED:
        try:
            current = iot.get_v2_logging_options()
        except botocore.exceptions.ClientError as error:
            if error_code(error) == "NotConfiguredException":
                return
            raise
        # CLI: aws iot set-v2-logging-options --role-arn ROLE_ARN --default-log-level DISABLED --disable-all-logs
        iot.set_v2_logging_options(roleArn=current["roleArn"], defaultLogLevel="DISABLED", disableAllLogs=True)
        return
    options = json.loads(previous)
    iot.set_v2_logging_options(**{k: options[k] for k in ("roleArn", "defaultLogLevel", "disableAllLogs")
                                  if k in options})
