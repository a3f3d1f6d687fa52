"""The authorizer Lambda function, called directly with the event shapes AWS documents.

Event shapes follow /work/shared/reference/aws-custom-auth.md §1 (AWS IoT developer
guide, "Defining your Lambda function"); response rules follow §2.
"""
from __future__ import annotations

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


def test_response_follows_aws_rules():
    response = lambda_function.lambda_handler(http_event("?actionToken=allow"), context())
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
    assert imported <= {"json", "urllib"}
