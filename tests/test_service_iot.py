"""The sandbox's AWS IoT control plane, through real boto3 clients (tests/harness.py) and the AWS CLI v1.

Authorizer rules follow https://docs.aws.amazon.com/iot/latest/developerguide/config-custom-auth.html (keys and
signing), the API reference (https://docs.aws.amazon.com/iot/latest/apireference/API_CreateAuthorizer.html and its
siblings) and botocore's iot model; TestInvokeAuthorizer runs real Lambda handlers
(tests/fixtures/iot_handlers/handlers.py) in the sandbox's Lambda runtime.
"""
from __future__ import annotations

import base64
import io
import json
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from helpers.sandbox import core
from helpers.sandbox.runtime import LambdaRuntime
from helpers.sandbox.services import awslambda, iam, iot
from helpers.sandbox.store import Store
from tests import harness

HANDLERS = Path(__file__).resolve().parent / "fixtures" / "iot_handlers" / "handlers.py"
ACCOUNT, REGION = core.ACCOUNT_ID, core.REGION
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:custom-auth-function"


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def ctx(tmp_path):
    store = Store(tmp_path / "s.db", [iam.SCHEMA, awslambda.SCHEMA, iot.SCHEMA])
    runtime = LambdaRuntime(tmp_path / "rt")
    yield core.Context(store=store, runtime=runtime,
                       endpoints={"iot:Data-ATS": "localhost:8443", "iot:Data": "localhost:8443"})
    runtime.shutdown()
    store.close()


@pytest.fixture
def client(ctx):
    return harness.client("iot", iot, ctx)


@pytest.fixture
def raw_client(ctx, tmp_path, monkeypatch):
    """An iot client without botocore's client-side checks, so the server's own checks are what fails."""
    config = tmp_path / "aws-config"
    config.write_text("[default]\nparameter_validation = false\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return harness.client("iot", iot, ctx)


def _rsa_private(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _public_pem(private) -> str:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def signing_key():
    return _rsa_private()


@pytest.fixture(scope="module")
def public_pem(signing_key):
    return _public_pem(signing_key)


def sign(private, token: str) -> str:
    return base64.b64encode(private.sign(token.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def create(client, name="my-authorizer", **kw):
    kw.setdefault("authorizerFunctionArn", FUNCTION_ARN)
    if "tokenSigningPublicKeys" not in kw:
        kw.setdefault("signingDisabled", True)
    return client.create_authorizer(authorizerName=name, **kw)


def error_of(excinfo) -> tuple[str, str, int]:
    err = excinfo.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


# --- CreateAuthorizer / DescribeAuthorizer --------------------------------------------------------

def test_create_and_describe_signed_authorizer(client, public_pem):
    before = datetime.now().timestamp()
    out = client.create_authorizer(authorizerName="my-authorizer", authorizerFunctionArn=FUNCTION_ARN,
                                   tokenKeyName="tokenKeyName", tokenSigningPublicKeys={"FIRST_KEY": public_pem})
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}:authorizer/my-authorizer"
    assert (out["authorizerName"], out["authorizerArn"]) == ("my-authorizer", arn)
    desc = client.describe_authorizer(authorizerName="my-authorizer")["authorizerDescription"]
    assert desc["authorizerArn"] == arn
    assert desc["authorizerFunctionArn"] == FUNCTION_ARN  # the function need not exist (AWS doesn't check)
    assert desc["tokenKeyName"] == "tokenKeyName"
    assert desc["tokenSigningPublicKeys"] == {"FIRST_KEY": public_pem}
    assert desc["status"] == "ACTIVE"                      # default when omitted
    assert desc["signingDisabled"] is False
    assert desc["enableCachingForHttp"] is False
    assert isinstance(desc["creationDate"], datetime)
    assert desc["creationDate"].timestamp() >= before - 1
    assert desc["lastModifiedDate"] == desc["creationDate"]


def test_create_without_signing_needs_no_keys(client, ctx):
    create(client, "open", status="INACTIVE", enableCachingForHttp=True)
    desc = client.describe_authorizer(authorizerName="open")["authorizerDescription"]
    assert desc["signingDisabled"] is True and desc["status"] == "INACTIVE" and desc["enableCachingForHttp"] is True
    assert "tokenKeyName" not in desc and "tokenSigningPublicKeys" not in desc
    row = iot.get_authorizer(ctx, "open")
    assert row["public_keys"] == {} and row["signing_disabled"] is True and row["token_key_name"] is None
    assert row["arn"].endswith(":authorizer/open") and isinstance(row["creation_date"], float)
    assert iot.get_authorizer(ctx, "nope") is None


@pytest.mark.parametrize("member, value, expected", [
    ("authorizerName", "bad name!", r"[\w=,@-]+"),
    ("authorizerName", "a" * 129, "less than or equal to 128"),
    ("tokenKeyName", "token key", "[a-zA-Z0-9_-]+"),
    ("tokenKeyName", "t" * 129, "less than or equal to 128"),
    ("keyName", "key name", "[a-zA-Z0-9:_-]+"),
    ("keyValue", "x" * 5121, "less than or equal to 5120"),
    ("authorizerFunctionArn", "arn:aws:s3:::my-bucket", "arn:aws:lambda:<region>:<account-id>:function:"),
    ("authorizerFunctionArn", "custom-auth-function", "is not a Lambda function ARN"),
    ("authorizerFunctionArn", FUNCTION_ARN + "x" * 2048, "less than or equal to 2048"),
])
def test_create_rejects_values_outside_the_model(raw_client, public_pem, member, value, expected):
    kw = {"authorizerName": "ok", "authorizerFunctionArn": FUNCTION_ARN, "tokenKeyName": "tok",
          "tokenSigningPublicKeys": {"k1": public_pem}}
    if member == "keyName":
        kw["tokenSigningPublicKeys"] = {value: public_pem}
    elif member == "keyValue":
        kw["tokenSigningPublicKeys"] = {"k1": value}
    else:
        kw[member] = value
    with pytest.raises(raw_client.exceptions.InvalidRequestException) as excinfo:
        raw_client.create_authorizer(**kw)
    code, message, status = error_of(excinfo)
    assert status == 400 and expected in message
    assert raw_client.list_authorizers()["authorizers"] == []


@pytest.mark.parametrize("drop, missing", [("tokenKeyName", "tokenKeyName"),
                                            ("tokenSigningPublicKeys", "tokenSigningPublicKeys")])
def test_signing_enabled_requires_token_key_name_and_a_key(client, public_pem, drop, missing):
    kw = {"authorizerName": "signed", "authorizerFunctionArn": FUNCTION_ARN, "tokenKeyName": "tok",
          "tokenSigningPublicKeys": {"k1": public_pem}}
    del kw[drop]
    with pytest.raises(client.exceptions.InvalidRequestException, match=f"{missing} must be given"):
        client.create_authorizer(**kw)
    with pytest.raises(client.exceptions.InvalidRequestException, match="must be given"):
        client.create_authorizer(authorizerName="empty", authorizerFunctionArn=FUNCTION_ARN,
                                 tokenKeyName="tok", tokenSigningPublicKeys={})


@pytest.mark.parametrize("make_pem, expected", [
    (lambda: _public_pem(_rsa_private(1024)), "1024-bit"),
    (lambda: _public_pem(ec.generate_private_key(ec.SECP256R1())), "RSA"),
    (lambda: "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n", "could not be read"),
    (lambda: "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", "not PEM"),
])
def test_public_keys_must_be_pem_rsa_of_at_least_2048_bits(client, make_pem, expected):
    with pytest.raises(client.exceptions.InvalidRequestException) as excinfo:
        client.create_authorizer(authorizerName="a", authorizerFunctionArn=FUNCTION_ARN, tokenKeyName="tok",
                                 tokenSigningPublicKeys={"FIRST_KEY": make_pem()})
    assert "tokenSigningPublicKeys.FIRST_KEY" in error_of(excinfo)[1] and expected in error_of(excinfo)[1]


def test_private_key_is_refused_and_not_echoed(client, signing_key):
    pem = signing_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    with pytest.raises(client.exceptions.InvalidRequestException) as excinfo:
        client.create_authorizer(authorizerName="a", authorizerFunctionArn=FUNCTION_ARN, tokenKeyName="tok",
                                 tokenSigningPublicKeys={"k": pem})
    message = error_of(excinfo)[1]
    assert "PRIVATE key" in message and pem.splitlines()[1] not in message


def test_duplicate_name_is_resource_already_exists(client):
    create(client, "dup")
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException) as excinfo:
        create(client, "dup")
    body = excinfo.value.response
    assert body["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert body["resourceId"] == "dup"
    assert body["resourceArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:authorizer/dup"


def test_quota_is_limit_exceeded_410(client, monkeypatch):
    monkeypatch.setattr(iot, "AUTHORIZER_QUOTA", 2)
    create(client, "a1")
    create(client, "a2")
    with pytest.raises(client.exceptions.LimitExceededException) as excinfo:
        create(client, "a3")
    code, message, status = error_of(excinfo)
    assert status == 410 and "maximum of 2" in message
    assert [a["authorizerName"] for a in client.list_authorizers()["authorizers"]] == ["a1", "a2"]


def test_unknown_authorizer_is_resource_not_found(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="'ghost' does not exist"):
        client.describe_authorizer(authorizerName="ghost")


# --- ListAuthorizers ------------------------------------------------------------------------------

def test_list_order_paging_and_status_filter(client, raw_client):
    names = ["delta", "alpha", "echo", "charlie", "bravo"]
    for n in names:
        create(client, n, status="INACTIVE" if n in ("bravo", "echo") else "ACTIVE")

    def listed(**kw):
        return [a["authorizerName"] for a in client.list_authorizers(**kw)["authorizers"]]

    assert listed() == sorted(names)                                  # omitted: ascending alphabetical
    assert listed(ascendingOrder=True) == sorted(names)
    assert listed(ascendingOrder=False) == sorted(names, reverse=True)
    assert listed(status="INACTIVE") == ["bravo", "echo"]
    first = client.list_authorizers(pageSize=2)
    assert [a["authorizerName"] for a in first["authorizers"]] == ["alpha", "bravo"]
    second = client.list_authorizers(pageSize=2, marker=first["nextMarker"])
    assert [a["authorizerName"] for a in second["authorizers"]] == ["charlie", "delta"]
    third = client.list_authorizers(pageSize=2, marker=second["nextMarker"])
    assert [a["authorizerName"] for a in third["authorizers"]] == ["echo"] and "nextMarker" not in third
    pages = client.get_paginator("list_authorizers").paginate(
        ascendingOrder=False, PaginationConfig={"PageSize": 2})
    assert [a["authorizerName"] for page in pages for a in page["authorizers"]] == sorted(names, reverse=True)
    assert client.list_authorizers()["authorizers"][0]["authorizerArn"].endswith(":authorizer/alpha")
    for bad in ({"pageSize": 0}, {"pageSize": 251}, {"marker": "bm90IGpzb24="}, {"marker": "!!"},
                {"status": "ENABLED"}):
        with pytest.raises(raw_client.exceptions.InvalidRequestException):
            raw_client.list_authorizers(**bad)


# --- UpdateAuthorizer -----------------------------------------------------------------------------

def test_update_changes_fields_and_last_modified(client, public_pem):
    create(client, "upd", tokenKeyName="tok", tokenSigningPublicKeys={"k1": public_pem})
    created = client.describe_authorizer(authorizerName="upd")["authorizerDescription"]
    other = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:other:live"
    second_pem = _public_pem(_rsa_private())
    out = client.update_authorizer(authorizerName="upd", status="INACTIVE", authorizerFunctionArn=other,
                                   tokenKeyName="newTok", tokenSigningPublicKeys={"k2": second_pem},
                                   enableCachingForHttp=True)
    assert out["authorizerArn"] == created["authorizerArn"]
    desc = client.describe_authorizer(authorizerName="upd")["authorizerDescription"]
    assert (desc["status"], desc["authorizerFunctionArn"], desc["tokenKeyName"]) == ("INACTIVE", other, "newTok")
    assert desc["tokenSigningPublicKeys"] == {"k2": second_pem} and desc["enableCachingForHttp"] is True
    assert desc["creationDate"] == created["creationDate"]
    assert desc["lastModifiedDate"] > created["lastModifiedDate"]
    assert desc["signingDisabled"] is False


def test_update_validates_like_create(client, raw_client, ctx, public_pem):
    create(client, "upd", tokenKeyName="tok", tokenSigningPublicKeys={"k1": public_pem})
    with pytest.raises(client.exceptions.InvalidRequestException, match="tokenSigningPublicKeys must be given"):
        client.update_authorizer(authorizerName="upd", tokenSigningPublicKeys={})
    with pytest.raises(client.exceptions.InvalidRequestException, match="1024-bit"):
        client.update_authorizer(authorizerName="upd", tokenSigningPublicKeys={"k": _public_pem(_rsa_private(1024))})
    with pytest.raises(raw_client.exceptions.InvalidRequestException, match="not a Lambda function ARN"):
        raw_client.update_authorizer(authorizerName="upd", authorizerFunctionArn="arn:aws:sns:us-west-2:1:t")
    with pytest.raises(raw_client.exceptions.InvalidRequestException, match="enum value set"):
        raw_client.update_authorizer(authorizerName="upd", status="DISABLED")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.update_authorizer(authorizerName="ghost", status="INACTIVE")
    assert iot.get_authorizer(ctx, "upd")["public_keys"] == {"k1": public_pem}


def test_update_cannot_change_signing_disabled(client, ctx):
    create(client, "open")
    body = json.dumps({"signingDisabled": False}).encode()
    req = core.Request("PUT", "/authorizer/open", "", {}, body, service="iot")
    with pytest.raises(core.AwsError) as excinfo:
        iot.handle(req, ctx)
    assert excinfo.value.code == "InvalidRequestException"
    assert "signingDisabled can't be updated" in excinfo.value.message
    assert iot.get_authorizer(ctx, "open")["signing_disabled"] is True


# --- DeleteAuthorizer -----------------------------------------------------------------------------

def test_delete_requires_inactive(client):
    create(client, "del", tags=[{"Key": "team", "Value": "iot"}])
    with pytest.raises(client.exceptions.DeleteConflictException) as excinfo:
        client.delete_authorizer(authorizerName="del")
    code, message, status = error_of(excinfo)
    assert status == 409 and "update-authorizer --authorizer-name del --status INACTIVE" in message
    client.update_authorizer(authorizerName="del", status="INACTIVE")
    client.delete_authorizer(authorizerName="del")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_authorizer(authorizerName="del")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.delete_authorizer(authorizerName="del")
    create(client, "del")   # the name (and no stale tags) can be reused
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}:authorizer/del"
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == []


def test_default_authorizer_cannot_be_deleted(client):
    create(client, "dflt", status="INACTIVE")
    client.set_default_authorizer(authorizerName="dflt")
    with pytest.raises(client.exceptions.DeleteConflictException, match="clear-default-authorizer"):
        client.delete_authorizer(authorizerName="dflt")
    client.clear_default_authorizer()
    client.delete_authorizer(authorizerName="dflt")


# --- default authorizer ---------------------------------------------------------------------------

def test_default_authorizer_lifecycle(client, ctx):
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="set-default-authorizer"):
        client.describe_default_authorizer()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.clear_default_authorizer()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.set_default_authorizer(authorizerName="ghost")
    create(client, "first")
    create(client, "second")
    out = client.set_default_authorizer(authorizerName="first")
    assert out == {"authorizerName": "first", "authorizerArn": f"arn:aws:iot:{REGION}:{ACCOUNT}:authorizer/first",
                   "ResponseMetadata": out["ResponseMetadata"]}
    assert iot.default_authorizer_name(ctx) == "first"
    client.set_default_authorizer(authorizerName="second")   # replaces the default
    desc = client.describe_default_authorizer()["authorizerDescription"]
    assert desc["authorizerName"] == "second" and desc["signingDisabled"] is True
    client.clear_default_authorizer()
    assert iot.default_authorizer_name(ctx) is None
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_default_authorizer()


# --- DescribeEndpoint, tags -----------------------------------------------------------------------

def test_describe_endpoint(client, raw_client, ctx):
    ctx.endpoints["iot:Data"] = "legacy.localhost:8443"
    assert client.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] == "localhost:8443"
    assert client.describe_endpoint(endpointType="iot:Data")["endpointAddress"] == "legacy.localhost:8443"
    assert client.describe_endpoint()["endpointAddress"] == "legacy.localhost:8443"
    with pytest.raises(client.exceptions.InvalidRequestException, match="iot:Data-ATS"):
        client.describe_endpoint(endpointType="iot:Bogus")
    with pytest.raises(client.exceptions.InvalidRequestException, match="does not serve"):
        client.describe_endpoint(endpointType="iot:Jobs")
    ctx.endpoints["iot:Jobs"] = "jobs.localhost:8443"
    assert client.describe_endpoint(endpointType="iot:Jobs")["endpointAddress"] == "jobs.localhost:8443"


def test_tags(client):
    create(client, "tagged", tags=[{"Key": "team", "Value": "iot"}])
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}:authorizer/tagged"
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "team", "Value": "iot"}]
    client.tag_resource(resourceArn=arn, tags=[{"Key": "stage", "Value": "dev"}, {"Key": "team", "Value": "x"}])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "stage", "Value": "dev"},
                                                                      {"Key": "team", "Value": "x"}]
    client.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "stage", "Value": "dev"}]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.list_tags_for_resource(resourceArn=arn + "x")
    with pytest.raises(client.exceptions.InvalidRequestException, match="only tag authorizers"):
        client.list_tags_for_resource(resourceArn=f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/t")


# --- AWS CLI v1 -----------------------------------------------------------------------------------

def test_aws_cli_v1(ctx, monkeypatch, capsys, tmp_path):
    """`aws iot ...` (CLI v1) parses the sandbox's answers, errors included."""
    from urllib.parse import urlsplit

    from awscli.clidriver import create_clidriver
    from botocore.awsrequest import AWSResponse

    class Raw:
        def __init__(self, body):
            self.body = body

        def stream(self, **_kw):
            yield self.body

        def read(self, *_a, **_kw):
            return self.body

    def answer(request, **_kw):
        parts = urlsplit(request.url)
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        req = core.Request(request.method, parts.path, parts.query,
                           {k.lower(): v for k, v in request.headers.items()}, body, service="iot")
        try:
            resp = iot.handle(req, ctx)
        except core.AwsError as err:
            resp = core.error_response(err, iot.PROTOCOL, req.request_id)
        return AWSResponse(request.url, resp.status, resp.headers, Raw(resp.body))

    for name, value in {"AWS_ACCESS_KEY_ID": "SANDBOXHARNESS000000", "AWS_SECRET_ACCESS_KEY": "not-checked-here",
                        "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(name, value)

    def aws(*args):
        driver = create_clidriver()
        driver.session.register("before-send.iot", answer)
        return driver.main([*args, "--endpoint-url", "https://sandbox.invalid", "--output", "json"])

    assert aws("iot", "create-authorizer", "--authorizer-name", "cli-auth", "--authorizer-function-arn",
               FUNCTION_ARN, "--signing-disabled") == 0
    assert json.loads(capsys.readouterr().out)["authorizerName"] == "cli-auth"
    assert aws("iot", "describe-authorizer", "--authorizer-name", "cli-auth") == 0
    assert json.loads(capsys.readouterr().out)["authorizerDescription"]["status"] == "ACTIVE"
    assert aws("iot", "list-authorizers") == 0
    assert [a["authorizerName"] for a in json.loads(capsys.readouterr().out)["authorizers"]] == ["cli-auth"]
    assert aws("iot", "delete-authorizer", "--authorizer-name", "cli-auth") != 0
    assert "DeleteConflictException" in capsys.readouterr().err


# --- TestInvokeAuthorizer -------------------------------------------------------------------------

class Lab:
    """An authorizer backed by a real Lambda function running a handler from handlers.py."""

    def __init__(self, ctx, tmp_path, iot_client):
        self.ctx, self.iot = ctx, iot_client
        self.lam = harness.client("lambda", awslambda, ctx)
        self.iam = harness.client("iam", iam, ctx)
        self.events_path = tmp_path / "events.jsonl"
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"Service": "lambda.amazonaws.com"}}]}
        self.role_arn = self.iam.create_role(RoleName="authorizer-role",
                                             AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]

    def zip(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.write(HANDLERS, "handlers.py")
            zf.writestr("sidechannel.py", f"EVENTS_PATH = {str(self.events_path)!r}\n")
        return buf.getvalue()

    def function(self, handler: str, timeout: int = 3) -> str:
        return self.lam.create_function(FunctionName=f"auth-{handler.replace('_', '-')}", Runtime="python3.11",
                                        Role=self.role_arn, Handler=f"handlers.{handler}",
                                        Code={"ZipFile": self.zip()}, Timeout=timeout)["FunctionArn"]

    def authorizer(self, name: str, function_arn: str, *, permit: bool = True, **kw) -> str:
        if "tokenSigningPublicKeys" not in kw:
            kw["signingDisabled"] = True
        arn = self.iot.create_authorizer(authorizerName=name, authorizerFunctionArn=function_arn, **kw)["authorizerArn"]
        if permit:
            self.permit(function_arn, arn, sid=f"{name}-invoke")
        return arn

    def permit(self, function_arn: str, source_arn: str, sid: str) -> None:
        self.lam.add_permission(FunctionName=function_arn, StatementId=sid, Action="lambda:InvokeFunction",
                                Principal="iot.amazonaws.com", SourceArn=source_arn, SourceAccount=ACCOUNT)

    def events(self) -> list[dict]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines()]


@pytest.fixture
def lab(ctx, tmp_path, client):
    return Lab(ctx, tmp_path, client)


def _effect(answer: dict) -> str:
    (doc,) = answer["policyDocuments"]
    return json.loads(doc)["Statement"][0]["Effect"]


def test_tutorial_function_denies_cli_test_and_allows_action_token(lab, client, signing_key, public_pem):
    fn = lab.function("tutorial")
    lab.authorizer("tutorial", fn, tokenKeyName="tokenKeyName", tokenSigningPublicKeys={"FIRST_KEY": public_pem})
    token = "tokenKeyValue"
    out = client.test_invoke_authorizer(authorizerName="tutorial", token=token, tokenSignature=sign(signing_key, token))
    assert out["isAuthenticated"] is True and out["principalId"] == "TEST123"
    assert _effect(out) == "Deny"                      # no protocolData from a CLI-style test
    assert (out["refreshAfterInSeconds"], out["disconnectAfterInSeconds"]) == (300, 3600)
    out = client.test_invoke_authorizer(authorizerName="tutorial", token=token,
                                        tokenSignature=sign(signing_key, token),
                                        httpContext={"headers": {"tokenKeyName": token},
                                                     "queryString": "?actionToken=allow"},
                                        tlsContext={"serverName": "localhost"})
    assert _effect(out) == "Allow"
    first, second = lab.events()
    assert "protocolData" not in first and first["signatureVerified"] is True and first["token"] == token
    assert second["protocolData"]["http"]["queryString"] == "?actionToken=allow"
    assert second["protocolData"]["tls"] == {"serverName": "localhost"}
    assert "mqtt" not in second["protocolData"]


def test_bad_signature_never_invokes_the_function(lab, client, public_pem):
    fn = lab.function("tutorial")
    lab.authorizer("signed", fn, tokenKeyName="tok", tokenSigningPublicKeys={"FIRST_KEY": public_pem})
    other_key = _rsa_private()
    with pytest.raises(client.exceptions.InvalidRequestException, match="signature is invalid.*not invoked"):
        client.test_invoke_authorizer(authorizerName="signed", token="t", tokenSignature=sign(other_key, "t"))
    with pytest.raises(client.exceptions.InvalidRequestException, match="token and tokenSignature are required"):
        client.test_invoke_authorizer(authorizerName="signed", token="t")
    with pytest.raises(client.exceptions.InvalidRequestException, match="openssl base64 -A"):
        client.test_invoke_authorizer(authorizerName="signed", token="t",
                                      tokenSignature="abcd\nefgh")
    assert lab.events() == []


def test_missing_permission_names_the_fix(lab, client):
    fn = lab.function("tutorial")
    arn = lab.authorizer("noperm", fn, permit=False)
    with pytest.raises(client.exceptions.InvalidRequestException) as excinfo:
        client.test_invoke_authorizer(authorizerName="noperm")
    message = error_of(excinfo)[1]
    assert "aws lambda add-permission" in message and f"--source-arn {arn}" in message
    assert "--principal iot.amazonaws.com" in message
    # a permission for another authorizer's ARN does not count
    lab.permit(fn, arn.replace("noperm", "someone-else"), sid="other")
    with pytest.raises(client.exceptions.InvalidRequestException, match="add-permission"):
        client.test_invoke_authorizer(authorizerName="noperm")
    assert lab.events() == []
    lab.permit(fn, arn, sid="right")
    assert client.test_invoke_authorizer(authorizerName="noperm")["principalId"] == "TEST123"


def test_missing_function_and_inactive_authorizer(lab, client):
    lab.authorizer("nofn", FUNCTION_ARN, permit=False)
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="custom-auth-function does not exist"):
        client.test_invoke_authorizer(authorizerName="nofn")
    client.update_authorizer(authorizerName="nofn", status="INACTIVE")
    with pytest.raises(client.exceptions.InvalidRequestException, match="--status ACTIVE"):
        client.test_invoke_authorizer(authorizerName="nofn")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.test_invoke_authorizer(authorizerName="ghost")


@pytest.mark.parametrize("handler, timeout, expected", [
    ("raises", 3, "boom: raised on purpose"),
    ("sleeps", 1, "timed out"),
    ("exits", 3, "exited"),
])
def test_function_failures_are_invalid_response(lab, client, handler, timeout, expected):
    fn = lab.function(handler, timeout=timeout)
    lab.authorizer("failing", fn)
    with pytest.raises(client.exceptions.InvalidResponseException) as excinfo:
        client.test_invoke_authorizer(authorizerName="failing", token="t")
    code, message, status = error_of(excinfo)
    assert status == 400 and expected in message and fn in message
    assert f"/aws/lambda/auth-{handler}" in message
    assert len(lab.events()) == 1                      # it was invoked, once


@pytest.mark.parametrize("handler, expected", [
    ("symbol_principal", "principalId"),
    ("eleven_policies", "11 documents"),
    ("refresh_ten", "refreshAfterInSeconds"),
])
def test_malformed_responses_are_invalid_response(lab, client, handler, expected):
    lab.authorizer("malformed", lab.function(handler))
    with pytest.raises(client.exceptions.InvalidResponseException, match=expected):
        client.test_invoke_authorizer(authorizerName="malformed")


def test_mqtt_password_round_trips_as_base64_and_unsigned_event(lab, client):
    lab.authorizer("mqtt", lab.function("tutorial"))
    password = b"p\x00ss\xffword"
    client.test_invoke_authorizer(authorizerName="mqtt", token="abc", tokenSignature="bm90IGNoZWNrZWQ=",
                                  mqttContext={"username": "user?x=1", "password": password, "clientId": "dev1"})
    (event,) = lab.events()
    assert event["signatureVerified"] is False          # signing disabled: nothing was verified
    assert event["token"] == "abc"
    assert event["protocols"] == ["tls", "mqtt"]
    mqtt = event["protocolData"]["mqtt"]
    assert base64.b64decode(mqtt["password"]) == password
    assert (mqtt["username"], mqtt["clientId"]) == ("user?x=1", "dev1")
