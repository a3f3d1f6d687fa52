"""Lambda through an unmodified boto3 client answered in-process, with real worker processes."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import zipfile

import pytest
from botocore.exceptions import ClientError

from helpers.sandbox import core
from helpers.sandbox.runtime import LambdaRuntime
from helpers.sandbox.services import awslambda, iam
from helpers.sandbox.store import Store
from tests import harness

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
ROLE_ARN = "arn:aws:iam::123456789012:role/lambda-role"
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
FN_ARN = "arn:aws:lambda:us-west-2:123456789012:function:{}"
AUTHORIZER_ARN = "arn:aws:iot:us-west-2:123456789012:authorizer/my-authorizer"

HANDLER = '''
import os
def lambda_handler(event, context):
    print("hello from the handler")
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event, "greeting": os.environ.get("GREETING"), "arn": context.invoked_function_arn}
'''


def make_zip(source: str = HANDLER, name: str = "lambda_function.py") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, source)
    return buf.getvalue()


class LogsSink:
    """Stands in for the CloudWatch Logs service: records put_events calls."""

    def __init__(self):
        self.calls: list[dict] = []
        self.arrived = threading.Event()

    def put_events(self, *, group, stream, events):
        self.calls.append({"group": group, "stream": stream, "events": list(events)})
        self.arrived.set()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "s.db"


@pytest.fixture
def runtime(tmp_path):
    rt = LambdaRuntime(tmp_path / "rt")
    yield rt
    rt.shutdown()


@pytest.fixture
def ctx(db_path, runtime):
    store = Store(db_path, [iam.SCHEMA, awslambda.SCHEMA])
    yield core.Context(store=store, runtime=runtime, logs=LogsSink())
    store.close()


@pytest.fixture
def lam(ctx):
    iam_client = harness.client("iam", iam, ctx)
    iam_client.create_role(RoleName="lambda-role", AssumeRolePolicyDocument=TRUST)
    iam_client.attach_role_policy(RoleName="lambda-role", PolicyArn=BASIC_EXECUTION)
    return harness.client("lambda", awslambda, ctx)


def create(lam, name="auth-fn", **kw):
    args = dict(FunctionName=name, Runtime="python3.12", Role=ROLE_ARN, Handler="lambda_function.lambda_handler",
                Code={"ZipFile": make_zip()})
    args.update(kw)
    return lam.create_function(**args)


def error_of(exc_info) -> tuple[str, str, int]:
    resp = exc_info.value.response
    return resp["Error"]["Code"], resp["Error"]["Message"], resp["ResponseMetadata"]["HTTPStatusCode"]


# --- functions --------------------------------------------------------------------------------

def test_create_function_configuration(lam):
    code = make_zip()
    conf = create(lam, Code={"ZipFile": code}, Environment={"Variables": {"GREETING": "hi"}}, Description="d")
    assert conf["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert conf["FunctionArn"] == FN_ARN.format("auth-fn")
    assert conf["State"] == "Pending" and conf["StateReasonCode"] == "Creating"
    assert conf["Timeout"] == 3 and conf["MemorySize"] == 128
    assert conf["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode()
    assert conf["CodeSize"] == len(code)
    assert conf["Version"] == "$LATEST" and conf["PackageType"] == "Zip" and conf["Architectures"] == ["x86_64"]
    assert conf["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/auth-fn"}
    assert conf["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", conf["LastModified"])
    assert re.fullmatch(r"[0-9a-f-]{36}", conf["RevisionId"])


def test_get_function_and_waiters(lam):
    create(lam, Tags={"project": "workbook"})
    lam.get_waiter("function_exists").wait(FunctionName="auth-fn", WaiterConfig={"Delay": 0, "MaxAttempts": 1})
    lam.get_waiter("function_active_v2").wait(FunctionName="auth-fn", WaiterConfig={"Delay": 0, "MaxAttempts": 1})
    got = lam.get_function(FunctionName="auth-fn")
    assert got["Configuration"]["State"] == "Active"
    assert got["Configuration"]["LastUpdateStatus"] == "Successful"
    assert got["Code"]["RepositoryType"] == "S3" and got["Code"]["Location"].startswith("https://")
    assert got["Tags"] == {"project": "workbook"}
    assert lam.get_function_configuration(FunctionName="auth-fn")["Handler"] == "lambda_function.lambda_handler"
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["auth-fn"]


@pytest.mark.parametrize("ref", ["auth-fn", FN_ARN.format("auth-fn"), "123456789012:function:auth-fn",
                                 "auth-fn:$LATEST"])
def test_function_name_forms(lam, ref):
    create(lam)
    assert lam.get_function_configuration(FunctionName=ref)["FunctionName"] == "auth-fn"
    out = lam.invoke(FunctionName=ref, Payload=b"{}")
    assert json.loads(out["Payload"].read())["arn"] == FN_ARN.format("auth-fn")
    lam.delete_function(FunctionName=ref)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="auth-fn")


def test_unknown_function(lam):
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
        lam.get_function(FunctionName="nope")
    assert error_of(exc) == ("ResourceNotFoundException",
                             "Function not found: arn:aws:lambda:us-west-2:123456789012:function:nope", 404)
    create(lam)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="auth-fn", Qualifier="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="arn:aws:lambda:eu-west-1:123456789012:function:auth-fn")


def test_duplicate_function(lam):
    create(lam)
    with pytest.raises(lam.exceptions.ResourceConflictException) as exc:
        create(lam)
    assert error_of(exc) == ("ResourceConflictException", "Function already exist: auth-fn", 409)


@pytest.mark.parametrize("kw, code, text", [
    ({"Runtime": "python2.7"}, "InvalidParameterValueException",
     "The runtime parameter of python2.7 is no longer supported for creating or updating AWS Lambda functions."),
    ({"Runtime": "nodejs14.x"}, "InvalidParameterValueException", "is no longer supported"),
    ({"Runtime": "cobol85"}, "ValidationException", "Member must satisfy enum value set"),
    ({"Code": {"ZipFile": b"this is not a zip"}}, "InvalidParameterValueException",
     "Could not unzip uploaded file. Please check your file, then try to upload again."),
    ({"Code": {"S3Bucket": "bucket", "S3Key": "fn.zip"}}, "InvalidParameterValueException", "ZipFile"),
    ({"Role": "arn:aws:iam::123456789012:role/missing"}, "InvalidParameterValueException",
     "The role defined for the function cannot be assumed by Lambda."),
    ({"Role": "lambda-role"}, "ValidationException", "at 'role' failed to satisfy constraint"),
    ({"Handler": "has space"}, "ValidationException", "at 'handler'"),
    ({"Timeout": 901}, "ValidationException", "less than or equal to 900"),
    ({"MemorySize": 10241}, "InvalidParameterValueException", "less than or equal to 10240"),
    ({"FunctionName": "bad name"}, "ValidationException", "at 'functionName'"),
    ({"FunctionName": "x" * 65}, "ValidationException", "at 'functionName'"),
    ({"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}}, "InvalidParameterValueException",
     "Reserved keys used in this request: AWS_REGION"),
    ({"Publish": True}, "InvalidParameterValueException", "Publish"),
])
def test_create_function_errors(lam, kw, code, text):
    with pytest.raises(ClientError) as exc:
        create(lam, **kw)
    got_code, message, status = error_of(exc)
    assert (got_code, status) == (code, 400)
    assert text in message
    assert lam.list_functions()["Functions"] == []


def test_missing_runtime_or_handler(lam):
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as exc:
        lam.create_function(FunctionName="f", Role=ROLE_ARN, Code={"ZipFile": make_zip()})
    assert "Runtime and Handler are mandatory" in error_of(exc)[1]


def test_role_must_trust_lambda(ctx, lam):
    harness.client("iam", iam, ctx).create_role(RoleName="ec2-role", AssumeRolePolicyDocument=TRUST.replace(
        "lambda.amazonaws.com", "ec2.amazonaws.com"))
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as exc:
        create(lam, Role="arn:aws:iam::123456789012:role/ec2-role")
    assert error_of(exc)[1] == "The role defined for the function cannot be assumed by Lambda."


def test_zip_with_unsafe_paths_is_refused(lam):
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        create(lam, Code={"ZipFile": make_zip(name="../escape.py")})


def test_update_function_code(ctx, lam):
    before = create(lam)
    lam.invoke(FunctionName="auth-fn", Payload=b"{}")  # leaves a warm worker with the old code
    new_code = make_zip("def lambda_handler(event, context):\n    return 'v2'\n")
    after = lam.update_function_code(FunctionName="auth-fn", ZipFile=new_code)
    assert after["CodeSha256"] == base64.b64encode(hashlib.sha256(new_code).digest()).decode()
    assert after["RevisionId"] != before["RevisionId"]
    assert after["LastUpdateStatus"] == "InProgress"
    lam.get_waiter("function_updated_v2").wait(FunctionName="auth-fn", WaiterConfig={"Delay": 0, "MaxAttempts": 1})
    assert lam.invoke(FunctionName="auth-fn")["Payload"].read() == b'"v2"'
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_code(FunctionName="auth-fn", ZipFile=b"nope")


def test_state_survives_reopening_the_store(db_path, runtime, lam):
    create(lam)
    lam.add_permission(FunctionName="auth-fn", StatementId="iot", Action="lambda:InvokeFunction",
                       Principal="iot.amazonaws.com", SourceArn=AUTHORIZER_ARN)
    store = Store(db_path, [iam.SCHEMA, awslambda.SCHEMA])
    try:
        again = harness.client("lambda", awslambda, core.Context(store=store, runtime=runtime))
        assert again.get_function(FunctionName="auth-fn")["Configuration"]["CodeSha256"] == \
            lam.get_function(FunctionName="auth-fn")["Configuration"]["CodeSha256"]
        assert json.loads(again.get_policy(FunctionName="auth-fn")["Policy"])["Statement"][0]["Sid"] == "iot"
        out = again.invoke(FunctionName="auth-fn", Payload=b'{"k": 1}')
        assert json.loads(out["Payload"].read())["echo"] == {"k": 1}
    finally:
        store.close()


# --- invoke -------------------------------------------------------------------------------------

def test_invoke_with_log_tail(ctx, lam):
    create(lam, Environment={"Variables": {"GREETING": "hi"}})
    out = lam.invoke(FunctionName="auth-fn", Payload=json.dumps({"token": "allow"}), LogType="Tail")
    assert out["StatusCode"] == 200
    assert out["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in out
    body = json.loads(out["Payload"].read())
    assert body["echo"] == {"token": "allow"} and body["greeting"] == "hi"
    tail = base64.b64decode(out["LogResult"]).decode()
    assert tail.startswith("START RequestId: ") and "hello from the handler" in tail
    assert "\nEND RequestId: " in tail and "\nREPORT RequestId: " in tail
    # the same log went to CloudWatch Logs, one event per line
    call = ctx.logs.calls[-1]
    assert call["group"] == "/aws/lambda/auth-fn"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", call["stream"])
    lines = [line for _, line in call["events"] if not line.startswith("[sandbox] ")]  # interpreter note
    assert lines[0].startswith("START RequestId") and lines[-1].startswith("REPORT RequestId")
    assert "hello from the handler" in lines
    assert all(isinstance(ts, int) and ts > 1_700_000_000_000 for ts, _ in call["events"])


def test_log_tail_is_last_4kb(lam):
    create(lam, Code={"ZipFile": make_zip("def lambda_handler(e, c):\n    print('x' * 10000)\n    return 1\n")})
    tail = base64.b64decode(lam.invoke(FunctionName="auth-fn", LogType="Tail")["LogResult"])
    assert len(tail) == 4096 and b"REPORT RequestId" in tail and b"START RequestId" not in tail


def test_invoke_handler_error_is_unhandled(lam):
    create(lam)
    out = lam.invoke(FunctionName="auth-fn", Payload=b'{"fail": true}')
    assert out["StatusCode"] == 200
    assert out["FunctionError"] == "Unhandled"
    doc = json.loads(out["Payload"].read())
    assert doc["errorType"] == "ValueError" and doc["errorMessage"] == "asked to fail"


def test_invoke_dry_run_and_event(ctx, lam):
    create(lam)
    assert lam.invoke(FunctionName="auth-fn", InvocationType="DryRun")["StatusCode"] == 204
    assert ctx.logs.calls == []
    out = lam.invoke(FunctionName="auth-fn", InvocationType="Event", Payload=b'{"async": 1}')
    assert out["StatusCode"] == 202 and out["Payload"].read() == b""
    assert ctx.logs.arrived.wait(15), "the Event invocation never ran"
    assert "hello from the handler" in [line for _, line in ctx.logs.calls[0]["events"]]


def test_invoke_bad_payload(lam):
    create(lam)
    with pytest.raises(lam.exceptions.InvalidRequestContentException) as exc:
        lam.invoke(FunctionName="auth-fn", Payload=b"not json")
    assert error_of(exc)[1].startswith("Could not parse request body into json")


def test_invoke_runtime_the_sandbox_cannot_run(monkeypatch, ctx, lam):
    create(lam, FunctionName="java-fn", Runtime="java21", Handler="example.Handler::handleRequest")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # a 502 is retried by botocore; once is enough here
    client = harness.client("lambda", awslambda, ctx)
    with pytest.raises(client.exceptions.InvalidRuntimeException) as exc:
        client.invoke(FunctionName="java-fn")
    code, message, status = error_of(exc)
    assert status == 502 and "java21" in message


# --- resource policy ----------------------------------------------------------------------------

def test_add_permission_statement_shape(lam):
    rev = create(lam)["RevisionId"]
    out = lam.add_permission(FunctionName="auth-fn", StatementId="Id-123", Action="lambda:InvokeFunction",
                             Principal="iot.amazonaws.com", SourceArn=AUTHORIZER_ARN, SourceAccount="123456789012")
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    expected = {"Sid": "Id-123", "Effect": "Allow", "Principal": {"Service": "iot.amazonaws.com"},
                "Action": "lambda:InvokeFunction", "Resource": FN_ARN.format("auth-fn"),
                "Condition": {"ArnLike": {"AWS:SourceArn": AUTHORIZER_ARN},
                              "StringEquals": {"AWS:SourceAccount": "123456789012"}}}
    assert json.loads(out["Statement"]) == expected
    assert list(json.loads(out["Statement"])) == list(expected)  # AWS's member order
    policy = lam.get_policy(FunctionName="auth-fn")
    assert json.loads(policy["Policy"]) == {"Version": "2012-10-17", "Id": "default", "Statement": [expected]}
    assert policy["RevisionId"] != rev


def test_add_permission_for_an_account(lam):
    create(lam)
    out = lam.add_permission(FunctionName=FN_ARN.format("auth-fn"), StatementId="acct",
                             Action="lambda:InvokeFunction", Principal="123456789012")
    statement = json.loads(out["Statement"])
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert "Condition" not in statement


def test_permission_errors(lam):
    create(lam)
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
        lam.get_policy(FunctionName="auth-fn")
    assert error_of(exc) == ("ResourceNotFoundException", "No policy is associated with the given resource.", 404)
    lam.add_permission(FunctionName="auth-fn", StatementId="Id-1", Action="lambda:InvokeFunction",
                       Principal="iot.amazonaws.com")
    with pytest.raises(lam.exceptions.ResourceConflictException) as exc:
        lam.add_permission(FunctionName="auth-fn", StatementId="Id-1", Action="lambda:InvokeFunction",
                           Principal="iot.amazonaws.com")
    assert error_of(exc) == ("ResourceConflictException", "The statement id (Id-1) provided already exists. Please "
                             "provide a new statement id, or remove the existing statement.", 409)
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
        lam.remove_permission(FunctionName="auth-fn", StatementId="other")
    assert error_of(exc)[1] == "Statement other is not found in resource policy."
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.add_permission(FunctionName="auth-fn", StatementId="Id-2", Action="lambda:InvokeFunction",
                           Principal="iot.amazonaws.com", RevisionId="stale")
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName="auth-fn", StatementId="bad sid", Action="lambda:InvokeFunction",
                           Principal="iot.amazonaws.com")
    assert error_of(exc)[0] == "ValidationException"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.add_permission(FunctionName="ghost", StatementId="x", Action="lambda:InvokeFunction",
                           Principal="iot.amazonaws.com")


def test_remove_permission_and_delete_removes_policy(lam):
    create(lam)
    lam.add_permission(FunctionName="auth-fn", StatementId="a", Action="lambda:InvokeFunction",
                       Principal="iot.amazonaws.com")
    lam.add_permission(FunctionName="auth-fn", StatementId="b", Action="lambda:InvokeFunction",
                       Principal="iot.amazonaws.com")
    assert lam.remove_permission(FunctionName="auth-fn", StatementId="a")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert [s["Sid"] for s in json.loads(lam.get_policy(FunctionName="auth-fn")["Policy"])["Statement"]] == ["b"]
    assert lam.delete_function(FunctionName="auth-fn")["ResponseMetadata"]["HTTPStatusCode"] == 204
    create(lam)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_policy(FunctionName="auth-fn")


# --- helpers for the IoT service -----------------------------------------------------------------

def test_permission_allows(ctx, lam):
    create(lam)
    assert not awslambda.permission_allows(ctx, "auth-fn", principal="iot.amazonaws.com", source_arn=AUTHORIZER_ARN)
    lam.add_permission(FunctionName="auth-fn", StatementId="iot", Action="lambda:InvokeFunction",
                       Principal="iot.amazonaws.com", SourceArn=AUTHORIZER_ARN, SourceAccount="123456789012")
    allows = lambda **kw: awslambda.permission_allows(ctx, kw.pop("fn", "auth-fn"), **kw)  # noqa: E731
    assert allows(principal="iot.amazonaws.com", source_arn=AUTHORIZER_ARN)
    assert allows(fn=FN_ARN.format("auth-fn"), principal="iot.amazonaws.com", source_arn=AUTHORIZER_ARN,
                  source_account="123456789012")
    assert not allows(principal="s3.amazonaws.com", source_arn=AUTHORIZER_ARN)
    assert not allows(principal="iot.amazonaws.com", source_arn=AUTHORIZER_ARN + "-other")
    assert not allows(principal="iot.amazonaws.com", source_arn=None)
    assert not allows(principal="iot.amazonaws.com", source_arn=AUTHORIZER_ARN, source_account="999999999999")
    assert not allows(principal="iot.amazonaws.com", source_arn=AUTHORIZER_ARN, action="lambda:GetFunction")


def test_permission_allows_wildcards(ctx, lam):
    create(lam)
    lam.add_permission(FunctionName="auth-fn", StatementId="any-authorizer", Action="lambda:*",
                       Principal="iot.amazonaws.com", SourceArn="arn:aws:iot:us-west-2:123456789012:authorizer/my-*")
    assert awslambda.permission_allows(ctx, "auth-fn", principal="iot.amazonaws.com", source_arn=AUTHORIZER_ARN)
    assert not awslambda.permission_allows(ctx, "auth-fn", principal="iot.amazonaws.com",
                                           source_arn="arn:aws:iot:us-west-2:123456789012:authorizer/your-auth")
    assert awslambda.arn_like("arn:aws:iot:*:123456789012:authorizer/a?", "arn:aws:iot:us-west-2:123456789012:authorizer/a1")
    assert not awslambda.arn_like("arn:aws:iot:*:123456789012:authorizer/a?", "arn:aws:iot:us-west-2:123456789012:authorizer/a12")
    with pytest.raises(core.AwsError) as exc:
        awslambda.permission_allows(ctx, "ghost", principal="iot.amazonaws.com", source_arn=AUTHORIZER_ARN)
    assert exc.value.code == "ResourceNotFoundException"


def test_function_spec_and_invoke_function(ctx, lam):
    create(lam, Timeout=5, Environment={"Variables": {"GREETING": "hey"}})
    spec = awslambda.function_spec(ctx, FN_ARN.format("auth-fn"))
    assert (spec.name, spec.arn, spec.timeout, spec.environment) == ("auth-fn", FN_ARN.format("auth-fn"), 5.0,
                                                                     {"GREETING": "hey"})
    assert zipfile.ZipFile(io.BytesIO(spec.code_zip)).namelist() == ["lambda_function.py"]
    result = awslambda.invoke_function(ctx, spec, b'{"token": "t"}', timeout=5)
    assert json.loads(result.payload)["greeting"] == "hey" and result.function_error is None
    assert ctx.logs.calls[-1]["group"] == "/aws/lambda/auth-fn"
    with pytest.raises(core.AwsError) as exc:
        awslambda.function_spec(ctx, "ghost")
    assert (exc.value.code, exc.value.status) == ("ResourceNotFoundException", 404)


def test_logs_are_written_only_when_the_role_allows_it(ctx, lam):
    """As on AWS: a role without logs:CreateLogGroup/CreateLogStream/PutLogEvents gets no logs (Tail still works)."""
    client = harness.client("iam", iam, ctx)
    client.create_role(RoleName="mute-role", AssumeRolePolicyDocument=TRUST)
    lam.create_function(FunctionName="mute-fn", Runtime="python3.12", Role="arn:aws:iam::123456789012:role/mute-role",
                        Handler="lambda_function.lambda_handler", Code={"ZipFile": make_zip()})
    before = len(ctx.logs.calls)
    out = lam.invoke(FunctionName="mute-fn", Payload=b"{}", LogType="Tail")
    assert "START RequestId" in base64.b64decode(out["LogResult"]).decode()
    assert len(ctx.logs.calls) == before
    client.attach_role_policy(RoleName="mute-role", PolicyArn=BASIC_EXECUTION)
    lam.invoke(FunctionName="mute-fn", Payload=b"{}")
    assert ctx.logs.calls[-1]["group"] == "/aws/lambda/mute-fn"
