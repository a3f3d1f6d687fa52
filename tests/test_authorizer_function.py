"""The authorizer Lambda function, called directly with the event shapes AWS documents.

Event shapes and response rules follow the AWS IoT developer guide's "Defining your Lambda
function": https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth-lambda.html
"""
from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

FUNCTION_FILE = Path(__file__).resolve().parent.parent / "functions" / "custom_auth" / "lambda_function.py"
_spec = importlib.util.spec_from_file_location("custom_auth_lambda_function", FUNCTION_FILE)
lambda_function = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lambda_function)

ARN = "arn:aws:lambda:us-west-2:123456789012:function:custom-auth-function-abc123"
OTHER_ARN = "arn:aws:lambda:eu-central-1:210987654321:function:another-name"


def context(arn: str = ARN) -> SimpleNamespace:
    """The attribute of Lambda's context object that the function reads."""
    return SimpleNamespace(invoked_function_arn=arn, function_name=arn.split(":")[-1])


def http_event(query_string: str | None, **extra) -> dict:
    http = {"headers": {"tokenKeyName": "tokenKeyValue"}}
    if query_string is not None:
        http["queryString"] = query_string
    return {
        "token": "tokenKeyValue",
        "signatureVerified": True,
        "protocols": ["tls", "http"],
        "protocolData": {"tls": {"serverName": "example-ats.iot.us-west-2.amazonaws.com"}, "http": http},
        "connectionMetadata": {"id": "e56f08c3-c559-490f-aa9f-7e8427d0f57b"},
        **extra,
    }


def effect_of(response: dict) -> str:
    (policy,) = response["policyDocuments"]
    (statement,) = policy["Statement"]
    return statement["Effect"]


def test_test_invoke_event_without_protocol_data_is_denied():
    response = lambda_function.lambda_handler({"token": "tokenKeyValue", "signatureVerified": True}, context())
    assert effect_of(response) == "Deny"
    assert response["isAuthenticated"] is True


@pytest.mark.parametrize(
    "query_string, expected",
    [
        ("?actionToken=allow", "Allow"),
        ("actionToken=ALLOW", "Allow"),
        ("?qos=0&actionToken=allow", "Allow"),
        ("?actionToken=AlLoW&qos=1", "Allow"),
        ("?actionToken=deny", "Deny"),
        ("?actionToken=allowed", "Deny"),
        ("?qos=0", "Deny"),
        ("?actionToken=", "Deny"),
        ("?actionToken=deny&actionToken=allow", "Deny"),  # first value counts, as URLSearchParams.get
        ("", "Deny"),
        ("?", "Deny"),
        (None, "Deny"),
    ],
)
def test_http_query_string_decides_the_effect(query_string, expected):
    assert effect_of(lambda_function.lambda_handler(http_event(query_string), context())) == expected


def mqtt_event(username, password: bytes | str | None, client_id="sensor-1") -> dict:
    mqtt = {"username": username, "clientId": client_id}
    if password is not None:
        mqtt["password"] = password if isinstance(password, str) else base64.b64encode(password).decode()
    return {
        "token": "tokenKeyValue",
        "signatureVerified": True,
        "protocols": ["tls", "mqtt"],
        "protocolData": {"tls": {"serverName": "example-ats.iot.us-west-2.amazonaws.com"}, "mqtt": mqtt},
        "connectionMetadata": {"id": "e56f08c3-c559-490f-aa9f-7e8427d0f57b"},
    }


SDK_USERNAME = ("sensor-1?SDK=Python&Version=1.0&x-amz-customauthorizer-name=my-authorizer"
                "&x-amz-customauthorizer-signature=abc%2B%3D&tokenKeyName=tokenKeyValue")
GOOD = lambda_function.DEVICE_PASSWORD.encode()


def test_mqtt_device_with_the_right_password_gets_a_least_privilege_policy():
    response = lambda_function.lambda_handler(mqtt_event(SDK_USERNAME, GOOD), context())
    arn = "arn:aws:iot:us-west-2:123456789012"
    assert response["isAuthenticated"] is True
    assert response["policyDocuments"] == [{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{arn}:client/sensor-1"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": f"{arn}:topic/devices/sensor-1/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{arn}:topicfilter/devices/sensor-1/*"},
    ]}]
    statements = response["policyDocuments"][0]["Statement"]
    assert all("*" not in s["Action"] and not s["Resource"].endswith(":*") for s in statements)  # nothing broad


@pytest.mark.parametrize("username, password", [
    (SDK_USERNAME, b"wrong-password"),
    (SDK_USERNAME, GOOD.upper()),
    (SDK_USERNAME, None),                      # no password in the CONNECT
    (SDK_USERNAME, "not base64!"),             # AWS always base64-encodes; anything else is refused, not a crash
    (SDK_USERNAME, base64.b64encode(b"\xff\xfe").decode()),  # not UTF-8
    ("?x-amz-customauthorizer-name=a", GOOD),  # no device id before the query string
    ("*?x-amz-customauthorizer-name=a", GOOD),  # a wildcard would grant client/* and topic/devices/*/*
    ("sensor+1", GOOD),
    ("a/b", GOOD),
    ("x" * 65, GOOD),
    (None, GOOD),
])
def test_mqtt_device_is_denied_without_the_password_or_a_plain_device_id(username, password):
    response = lambda_function.lambda_handler(mqtt_event(username, password), context())
    assert effect_of(response) == "Deny"
    assert response["policyDocuments"][0]["Statement"][0]["Action"] == "iot:*"


def test_the_device_id_comes_from_the_user_name_not_the_client_id():
    """The client id is the device's claim; the policy's client/ resource is the authenticated id."""
    response = lambda_function.lambda_handler(mqtt_event("sensor-1", GOOD, client_id="sensor-2"), context())
    connect = response["policyDocuments"][0]["Statement"][0]
    assert connect["Resource"].endswith(":client/sensor-1")


def test_mqtt_over_websocket_with_both_contexts_uses_the_mqtt_branch():
    event = mqtt_event(SDK_USERNAME, GOOD)
    event["protocolData"]["http"] = {"headers": {}, "queryString": "?actionToken=allow"}
    statements = lambda_function.lambda_handler(event, context())["policyDocuments"][0]["Statement"]
    assert [s["Action"] for s in statements] == ["iot:Connect", ["iot:Publish", "iot:Receive"], "iot:Subscribe"]


def test_mqtt_policy_uses_the_functions_partition_region_and_account():
    arn = "arn:aws-cn:lambda:cn-north-1:111122223333:function:f"
    response = lambda_function.lambda_handler(mqtt_event("dev_9", GOOD, client_id="dev_9"), context(arn))
    resources = [s["Resource"] for s in response["policyDocuments"][0]["Statement"]]
    assert resources == ["arn:aws-cn:iot:cn-north-1:111122223333:client/dev_9",
                         "arn:aws-cn:iot:cn-north-1:111122223333:topic/devices/dev_9/*",
                         "arn:aws-cn:iot:cn-north-1:111122223333:topicfilter/devices/dev_9/*"]


def test_mqtt_only_connection_is_denied():
    event = {
        "token": "tokenKeyValue",
        "signatureVerified": True,
        "protocols": ["tls", "mqtt"],
        "protocolData": {
            "tls": {"serverName": "example-ats.iot.us-west-2.amazonaws.com"},
            "mqtt": {"username": "user?actionToken=allow", "password": "c2VjcmV0", "clientId": "device1"},
        },
        "connectionMetadata": {"id": "e56f08c3-c559-490f-aa9f-7e8427d0f57b"},
    }
    assert effect_of(lambda_function.lambda_handler(event, context())) == "Deny"


def test_protocol_data_null_is_treated_as_absent():
    assert effect_of(lambda_function.lambda_handler({"protocolData": None}, context())) == "Deny"


@pytest.mark.parametrize(
    "arn, resource",
    [
        (ARN, "arn:aws:iot:us-west-2:123456789012:*"),
        (OTHER_ARN, "arn:aws:iot:eu-central-1:210987654321:*"),
        ("arn:aws-cn:lambda:cn-north-1:111122223333:function:f:live", "arn:aws-cn:iot:cn-north-1:111122223333:*"),
    ],
)
def test_region_and_account_come_from_the_function_arn(arn, resource):
    response = lambda_function.lambda_handler(http_event("?actionToken=allow"), context(arn))
    assert response["policyDocuments"] == [
        {
            "Version": "2012-10-17",
            "Statement": [{"Action": "iot:*", "Effect": "Allow", "Resource": resource}],
        }
    ]


@pytest.mark.parametrize("event", [http_event("?actionToken=allow"), mqtt_event(SDK_USERNAME, GOOD)],
                         ids=["http", "mqtt"])
def test_response_follows_aws_rules(event):
    response = lambda_function.lambda_handler(event, context())
    assert set(response) == {
        "isAuthenticated",
        "principalId",
        "policyDocuments",
        "disconnectAfterInSeconds",
        "refreshAfterInSeconds",
    }
    assert re.fullmatch(r"[a-zA-Z0-9]{1,128}", response["principalId"])
    assert response["disconnectAfterInSeconds"] == 3600
    assert response["refreshAfterInSeconds"] == 600
    for key in ("disconnectAfterInSeconds", "refreshAfterInSeconds"):
        assert isinstance(response[key], int) and 300 <= response[key] <= 86400
    assert 1 <= len(response["policyDocuments"]) <= 10
    for policy in response["policyDocuments"]:
        assert len(json.dumps(policy)) <= 2048
    assert json.loads(json.dumps(response)) == response


def test_malformed_function_arn_is_a_clear_error():
    with pytest.raises(ValueError, match="not a Lambda function ARN"):
        lambda_function.lambda_handler(http_event("?actionToken=allow"), context("not-an-arn"))


def test_event_and_answer_are_logged_without_the_mqtt_password(capsys):
    event = {
        "token": "tokenKeyValue",
        "protocolData": {"mqtt": {"username": "user", "password": "c2VjcmV0LXBhc3N3b3Jk"}},
    }
    lambda_function.lambda_handler(event, context())
    logged = capsys.readouterr().out
    assert "tokenKeyValue" in logged  # the event is logged ...
    assert "c2VjcmV0LXBhc3N3b3Jk" not in logged  # ... with the password masked
    assert '"Effect": "Deny"' in logged  # and so is the answer
    assert event["protocolData"]["mqtt"]["password"] == "c2VjcmV0LXBhc3N3b3Jk"  # caller's event untouched


def test_handler_uses_only_the_standard_library():
    source = FUNCTION_FILE.read_text()
    imported = set(re.findall(r"^(?:from|import) (\w+)", source, flags=re.MULTILINE))
    assert imported <= {"base64", "binascii", "hmac", "json", "re", "urllib"}
