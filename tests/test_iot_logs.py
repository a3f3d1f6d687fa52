"""AWS IoT logging in the sandbox: SetV2LoggingOptions/GetV2LoggingOptions and the gate on AWSIotLogsV2."""
from __future__ import annotations

import json
import time
import uuid

import botocore.exceptions
import pytest
import requests

from tests.conftest import TRUST_IOT, TRUST_LAMBDA, enable_iot_logging

TUTORIAL_HANDLER = '''
def lambda_handler(event, context):
    return {"isAuthenticated": True, "principalId": "tester", "disconnectAfterInSeconds": 3600,
            "refreshAfterInSeconds": 300, "policyDocuments": [{"Version": "2012-10-17", "Statement": [
                {"Action": "iot:Publish", "Effect": "Allow", "Resource": "*"}]}]}
'''


def code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


def publish(settings, name: str, topic: str) -> requests.Response:
    return requests.post(f"https://{settings.data_endpoint}/topics/{topic}?qos=0", data=b"{}",
                         headers={"x-amz-customauthorizer-name": name}, verify=str(settings.ca_bundle),
                         timeout=30)


def iot_entries(settings, trace_id: str, wait: float = 0.0) -> list[dict]:
    logs = settings.client("logs")
    deadline = time.monotonic() + wait
    while True:
        try:
            events = logs.filter_log_events(logGroupName="AWSIotLogsV2", filterPattern=f'"{trace_id}"')["events"]
        except logs.exceptions.ResourceNotFoundException:
            events = []
        if events or time.monotonic() >= deadline:
            return [json.loads(e["message"]) for e in events]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def open_authorizer(deployer):
    fn = deployer.function(TUTORIAL_HANDLER)
    name, _ = deployer.authorizer(fn, None)
    return name


def test_nothing_is_logged_until_logging_is_set(settings, open_authorizer):
    iot, logs = settings.client("iot"), settings.client("logs")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iot.get_v2_logging_options()
    assert code(exc) == "NotConfiguredException"
    resp = publish(settings, open_authorizer, "logs/before")
    assert resp.status_code == 200
    # AWS: the group does not exist until AWS IoT writes to it.
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.filter_log_events(logGroupName="AWSIotLogsV2")


@pytest.mark.parametrize("role, expected", [
    ("missing", "does not exist"),
    ("lambda-trusted", "iot.amazonaws.com"),
])
def test_role_must_exist_and_trust_iot(settings, role, expected):
    iam, iot = settings.client("iam"), settings.client("iot")
    arn = f"arn:aws:iam::{settings.account_id}:role/nope-{uuid.uuid4().hex[:6]}"
    if role == "lambda-trusted":
        arn = iam.create_role(RoleName=f"l-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=TRUST_LAMBDA)["Role"]["Arn"]
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iot.set_v2_logging_options(roleArn=arn, defaultLogLevel="INFO")
    assert code(exc) == "InvalidRequestException" and expected in str(exc.value)


def test_first_set_needs_a_role_and_levels_are_checked(settings):
    iot = settings.client("iot")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iot.set_v2_logging_options(defaultLogLevel="INFO")
    assert code(exc) == "InvalidRequestException" and "roleArn is required" in str(exc.value)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iot.set_v2_logging_options(roleArn="x", defaultLogLevel="LOUD")
    assert code(exc) == "InvalidRequestException" and "DEBUG, INFO, WARN, ERROR, DISABLED" in str(exc.value)


def test_levels_gate_the_entries(settings, open_authorizer, deployer, rsa_key):
    iot = settings.client("iot")
    role = enable_iot_logging(settings, "ERROR")
    got = iot.get_v2_logging_options()
    got.pop("ResponseMetadata")
    assert got == {"roleArn": role, "defaultLogLevel": "ERROR", "disableAllLogs": False}
    # At ERROR a success (INFO) is not logged, a failure (ERROR) is.
    ok = publish(settings, open_authorizer, "logs/ok")
    assert ok.status_code == 200 and iot_entries(settings, ok.json()["traceId"], ) == []
    fn = deployer.function(TUTORIAL_HANDLER)
    signed, _ = deployer.authorizer(fn, rsa_key[1])
    bad = requests.post(f"https://{settings.data_endpoint}/topics/logs/bad?qos=0", data=b"{}", timeout=30,
                        headers={"x-amz-customauthorizer-name": signed, "tokenKeyName": "t",
                                 "x-amz-customauthorizer-signature": "AAAA"}, verify=str(settings.ca_bundle))
    assert bad.status_code == 403
    [entry] = iot_entries(settings, bad.json()["traceId"], wait=10)
    assert (entry["logLevel"], entry["status"], entry["eventType"]) == ("ERROR", "Failure", "Publish-In")
    assert list(entry)[:2] == ["timestamp", "logLevel"]

    # INFO logs successes, at INFO.
    iot.set_v2_logging_options(roleArn=role, defaultLogLevel="INFO")
    ok = publish(settings, open_authorizer, "logs/ok")
    [entry] = iot_entries(settings, ok.json()["traceId"], wait=10)
    assert (entry["logLevel"], entry["status"]) == ("INFO", "Success")

    # disableAllLogs and DISABLED both stop everything.
    iot.set_v2_logging_options(roleArn=role, defaultLogLevel="INFO", disableAllLogs=True)
    ok = publish(settings, open_authorizer, "logs/ok")
    assert iot_entries(settings, ok.json()["traceId"], ) == []
    iot.set_v2_logging_options(roleArn=role, defaultLogLevel="DISABLED")
    ok = publish(settings, open_authorizer, "logs/ok")
    assert iot_entries(settings, ok.json()["traceId"], ) == []


def test_deleting_the_role_stops_logging(settings, open_authorizer):
    iam, iot = settings.client("iam"), settings.client("iot")
    name = f"iot-logging-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_IOT)["Role"]["Arn"]
    iot.set_v2_logging_options(roleArn=arn, defaultLogLevel="DEBUG")
    ok = publish(settings, open_authorizer, "logs/role")
    assert len(iot_entries(settings, ok.json()["traceId"], wait=10)) == 1
    iam.delete_role(RoleName=name)
    ok = publish(settings, open_authorizer, "logs/role")
    assert iot_entries(settings, ok.json()["traceId"], ) == []
