"""STS and IAM through unmodified boto3 clients answered in-process (tests/harness.py)."""
from __future__ import annotations

import json
import re

import pytest
from botocore.exceptions import ClientError

from helpers.sandbox import core
from helpers.sandbox.services import iam, sts
from helpers.sandbox.store import Store
from tests import harness

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "s.db"


@pytest.fixture
def ctx(db_path):
    store = Store(db_path, [iam.SCHEMA])
    yield core.Context(store=store)
    store.close()


@pytest.fixture
def client(ctx):
    return harness.client("iam", iam, ctx)


def test_get_caller_identity(ctx):
    ident = harness.client("sts", sts, ctx).get_caller_identity()
    assert ident["Account"] == "123456789012"
    assert ident["Arn"] == "arn:aws:iam::123456789012:user/sandbox-learner"
    assert re.fullmatch(r"AIDA[A-Z0-9]{17}", ident["UserId"])
    assert not re.search(r"AKIA[0-9A-Z]{16}", ident["UserId"])
    assert ident["ResponseMetadata"]["RequestId"]


def test_sts_unknown_action_is_a_clear_error(ctx):
    with pytest.raises(ClientError) as exc:
        harness.client("sts", sts, ctx).get_session_token()
    assert exc.value.response["Error"]["Code"] == "InvalidAction"
    assert "GetCallerIdentity" in exc.value.response["Error"]["Message"]


def test_create_and_get_role(client):
    role = client.create_role(RoleName="auth-fn-role", AssumeRolePolicyDocument=TRUST, Description="for the authorizer",
                              Tags=[{"Key": "project", "Value": "workbook"}])["Role"]
    assert role["Arn"] == "arn:aws:iam::123456789012:role/auth-fn-role"
    assert re.fullmatch(r"AROA[A-Z0-9]{17}", role["RoleId"])
    assert role["Path"] == "/"
    assert role["AssumeRolePolicyDocument"] == json.loads(TRUST)  # URL-encoded on the wire, decoded by boto3
    assert role["CreateDate"].year >= 2026
    got = client.get_role(RoleName="auth-fn-role")["Role"]
    assert got["RoleId"] == role["RoleId"]
    assert got["Description"] == "for the authorizer"
    assert got["MaxSessionDuration"] == 3600
    assert got["Tags"] == [{"Key": "project", "Value": "workbook"}]


def test_role_path_goes_into_arn(client):
    role = client.create_role(RoleName="r", Path="/service-role/", AssumeRolePolicyDocument=TRUST)["Role"]
    assert role["Arn"] == "arn:aws:iam::123456789012:role/service-role/r"
    with pytest.raises(ClientError) as exc:
        client.create_role(RoleName="r2", Path="no-slashes", AssumeRolePolicyDocument=TRUST)
    assert exc.value.response["Error"]["Code"] == "ValidationError"


def test_role_names_are_unique_ignoring_case(client):
    client.create_role(RoleName="MyRole", AssumeRolePolicyDocument=TRUST)
    with pytest.raises(client.exceptions.EntityAlreadyExistsException) as exc:
        client.create_role(RoleName="myrole", AssumeRolePolicyDocument=TRUST)
    assert exc.value.response["Error"]["Message"] == "Role with name myrole already exists."
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert client.get_role(RoleName="MYROLE")["Role"]["RoleName"] == "MyRole"


@pytest.mark.parametrize("name", ["has space", "x" * 65, "slash/name"])
def test_bad_role_name_is_validation_error(client, name):
    with pytest.raises(ClientError) as exc:
        client.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
    assert exc.value.response["Error"]["Code"] == "ValidationError"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "roleName" in exc.value.response["Error"]["Message"]


def test_malformed_trust_policy(client):
    with pytest.raises(client.exceptions.MalformedPolicyDocumentException) as exc:
        client.create_role(RoleName="r", AssumeRolePolicyDocument="{not json")
    assert exc.value.response["Error"]["Message"] == "This policy contains invalid Json"
    with pytest.raises(client.exceptions.MalformedPolicyDocumentException):
        client.create_role(RoleName="r", AssumeRolePolicyDocument='{"Version": "2012-10-17"}')


def test_max_session_duration_range(client):
    assert client.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST,
                              MaxSessionDuration=7200)["Role"]["MaxSessionDuration"] == 7200
    with pytest.raises(ClientError) as exc:
        client.create_role(RoleName="r2", AssumeRolePolicyDocument=TRUST, MaxSessionDuration=50000)
    assert exc.value.response["Error"]["Code"] == "ValidationError"


def test_get_missing_role(client):
    with pytest.raises(client.exceptions.NoSuchEntityException) as exc:
        client.get_role(RoleName="nobody")
    assert exc.value.response["Error"]["Message"] == "The role with name nobody cannot be found."
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_attach_detach_and_delete(client):
    client.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)
    client.attach_role_policy(RoleName="r", PolicyArn=BASIC)
    client.attach_role_policy(RoleName="r", PolicyArn=BASIC)  # attaching twice is not an error in IAM
    attached = client.list_attached_role_policies(RoleName="r")
    assert attached["AttachedPolicies"] == [{"PolicyName": "AWSLambdaBasicExecutionRole", "PolicyArn": BASIC}]
    assert attached["IsTruncated"] is False
    with pytest.raises(client.exceptions.DeleteConflictException) as exc:
        client.delete_role(RoleName="r")
    assert exc.value.response["Error"]["Message"] == "Cannot delete entity, must detach all policies first."
    client.detach_role_policy(RoleName="r", PolicyArn=BASIC)
    with pytest.raises(client.exceptions.NoSuchEntityException):
        client.detach_role_policy(RoleName="r", PolicyArn=BASIC)
    client.delete_role(RoleName="r")
    with pytest.raises(client.exceptions.NoSuchEntityException):
        client.get_role(RoleName="r")
    with pytest.raises(client.exceptions.NoSuchEntityException):
        client.delete_role(RoleName="r")


def test_policy_arn_forms(client):
    client.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)
    with pytest.raises(client.exceptions.InvalidInputException) as exc:
        client.attach_role_policy(RoleName="r", PolicyArn="arn:aws:s3:::my-bucket/key")
    assert "is not valid" in exc.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.NoSuchEntityException) as exc:
        client.attach_role_policy(RoleName="r", PolicyArn="arn:aws:iam::999999999999:policy/Theirs")
    assert "does not exist or is not attachable" in exc.value.response["Error"]["Message"]
    with pytest.raises(client.exceptions.NoSuchEntityException):
        client.attach_role_policy(RoleName="ghost", PolicyArn=BASIC)


@pytest.mark.parametrize("arn", [
    "arn:aws:iam::aws:policy/AWSLambdaBasicExecutionRole",       # the common typo: no service-role/
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRoles",
    "arn:aws:iam::aws:policy/NoSuchManagedPolicy",
    "arn:aws:iam::123456789012:policy/team/MyPolicy",              # the sandbox has no customer policies
])
def test_policies_that_do_not_exist_are_no_such_entity(client, arn):
    client.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)
    with pytest.raises(client.exceptions.NoSuchEntityException) as exc:
        client.attach_role_policy(RoleName="r", PolicyArn=arn)
    assert exc.value.response["Error"]["Message"] == f"Policy {arn} does not exist or is not attachable."
    assert client.list_attached_role_policies(RoleName="r")["AttachedPolicies"] == []


@pytest.mark.parametrize("arn", [
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/service-role/AWSIoTLogging",
    "arn:aws:iam::aws:policy/AWSIoTFullAccess",
    "arn:aws:iam::aws:policy/AWSIoTDataAccess",
    "arn:aws:iam::aws:policy/AWSLambda_FullAccess",
    "arn:aws:iam::aws:policy/CloudWatchLogsFullAccess",
])
def test_managed_policies_exist_with_their_documents(client, arn):
    policy = client.get_policy(PolicyArn=arn)["Policy"]
    assert policy["Arn"] == arn and policy["PolicyName"] == arn.rsplit("/", 1)[1]
    version = client.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    assert version["Document"]["Version"] == "2012-10-17" and version["Document"]["Statement"]
    client.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)
    client.attach_role_policy(RoleName="r", PolicyArn=arn)


def test_basic_execution_document_and_role_allows(ctx_and_client=None):
    from helpers.sandbox import core
    from helpers.sandbox.services import iam
    from helpers.sandbox.store import Store
    doc = iam.managed_policy("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")["Document"]
    assert doc["Statement"][0]["Action"] == ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    ctx = core.Context(store=Store(":memory:", [iam.SCHEMA]))
    with ctx.store.tx() as db:
        db.execute("INSERT INTO iam_roles VALUES ('r', 'AROA', '/', 'arn:aws:iam::123456789012:role/r', '{}', NULL, "
                   "3600, '[]', 'now')")
    arn = "arn:aws:iam::123456789012:role/r"
    stream = "arn:aws:logs:us-west-2:123456789012:log-group:/aws/lambda/f:log-stream:s"
    assert not iam.role_allows(ctx, arn, "logs:PutLogEvents", stream)
    with ctx.store.tx() as db:
        db.execute("INSERT INTO iam_role_policies (role_name, policy_arn) VALUES "
                   "('r', 'arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole')")
    assert iam.role_allows(ctx, arn, "logs:PutLogEvents", stream)
    assert not iam.role_allows(ctx, arn, "iot:Publish", "arn:aws:iot:us-west-2:123456789012:topic/t")


def test_list_attached_pagination_and_path_prefix(client):
    client.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)
    arns = [BASIC, "arn:aws:iam::aws:policy/AWSIoTDataAccess", "arn:aws:iam::aws:policy/AWSIoTFullAccess"]
    for arn in arns:
        client.attach_role_policy(RoleName="r", PolicyArn=arn)
    first = client.list_attached_role_policies(RoleName="r", MaxItems=2)
    assert first["IsTruncated"] is True and len(first["AttachedPolicies"]) == 2
    second = client.list_attached_role_policies(RoleName="r", MaxItems=2, Marker=first["Marker"])
    assert second["IsTruncated"] is False
    assert [p["PolicyArn"] for p in first["AttachedPolicies"] + second["AttachedPolicies"]] == arns
    pages = client.get_paginator("list_attached_role_policies").paginate(RoleName="r", PaginationConfig={"PageSize": 1})
    assert [p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]] == arns
    only = client.list_attached_role_policies(RoleName="r", PathPrefix="/service-role/")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in only] == [BASIC]


def test_role_exists_waiter(client):
    client.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)
    client.get_waiter("role_exists").wait(RoleName="r", WaiterConfig={"Delay": 0, "MaxAttempts": 1})


def test_unserved_action(client):
    with pytest.raises(ClientError) as exc:
        client.list_roles()
    assert exc.value.response["Error"]["Code"] == "InvalidAction"


def test_state_survives_reopening(db_path, client):
    client.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)
    client.attach_role_policy(RoleName="r", PolicyArn=BASIC)
    store = Store(db_path, [iam.SCHEMA])
    try:
        again = harness.client("iam", iam, core.Context(store=store))
        assert again.get_role(RoleName="r")["Role"]["Arn"] == "arn:aws:iam::123456789012:role/r"
        assert again.list_attached_role_policies(RoleName="r")["AttachedPolicies"][0]["PolicyArn"] == BASIC
    finally:
        store.close()


def test_role_by_arn_for_other_services(ctx, client):
    arn = client.create_role(RoleName="r", Path="/x/", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    found = iam.role_by_arn(ctx, arn)
    assert found["RoleName"] == "r" and json.loads(found["AssumeRolePolicyDocument"]) == json.loads(TRUST)
    assert iam.role_by_arn(ctx, "arn:aws:iam::123456789012:role/r") is None
