"""Shared fixtures: a real sandbox process per test module, and deploying handlers into it."""
from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from helpers import sandbox

ROOT = Path(__file__).resolve().parents[1]
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
TRUST_LAMBDA = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
TRUST_IOT = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "iot.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


#: The modules that take longest (wall time, measured with --durations), run first, so that when make test
#: spreads the suite over worker processes (pytest-xdist, --dist loadfile) they overlap with the rest instead
#: of starting last. The order of everything else is unchanged.
SLOWEST_FIRST = ("test_wheelhouse.py", "test_workbook_aws_path.py", "test_service_lambda.py",
                 "test_cli_walkthrough.py", "test_custom_auth.py", "test_sandbox_process.py", "test_classroom.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def enable_iot_logging(settings, level: str = "DEBUG") -> str:
    """Turn AWS IoT logging on as on AWS: a role trusted by iot.amazonaws.com, then SetV2LoggingOptions."""
    name = f"iot-logging-{uuid.uuid4().hex[:8]}"
    arn = settings.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_IOT)["Role"]["Arn"]
    settings.client("iot").set_v2_logging_options(roleArn=arn, defaultLogLevel=level)
    return arn


def zip_source(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@pytest.fixture(scope="module")
def sandbox_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("sandbox-home")
    sandbox.ensure_running(home)
    yield home
    sandbox.stop(home)


@pytest.fixture(scope="module")
def settings(sandbox_home):
    return sandbox.status(sandbox_home)


@pytest.fixture(scope="module")
def rsa_key():
    """An RSA 2048 key pair (the minimum AWS accepts; fast to make)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, public_pem


class Deployer:
    """Creates roles, functions, authorizers and permissions in a running sandbox, with unique names."""

    def __init__(self, settings):
        self.settings = settings
        self.iam = settings.client("iam")
        self.awslambda = settings.client("lambda")
        self.iot = settings.client("iot")
        self.role_arn = None

    def role(self) -> str:
        if self.role_arn is None:
            name = f"role-{uuid.uuid4().hex[:8]}"
            self.role_arn = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_LAMBDA)["Role"]["Arn"]
            # as on AWS, the function's logs are written only when its role allows it
            self.iam.attach_role_policy(RoleName=name, PolicyArn=BASIC_EXECUTION)
        return self.role_arn

    def function(self, source: str, runtime: str = "python3.12", timeout: int = 3,
                 filename: str = "lambda_function.py", handler: str = "lambda_function.lambda_handler",
                 environment: dict[str, str] | None = None) -> str:
        name = f"fn-{uuid.uuid4().hex[:8]}"
        arn = self.awslambda.create_function(
            FunctionName=name, Runtime=runtime, Role=self.role(), Handler=handler, Timeout=timeout,
            Environment={"Variables": environment or {}},
            Code={"ZipFile": zip_source({filename: source})})["FunctionArn"]
        self.awslambda.get_waiter("function_active_v2").wait(FunctionName=name)
        return arn

    def authorizer(self, function_arn: str, public_pem: str | None, *, permit: bool = True, caching: bool = False,
                   status: str = "ACTIVE", token_key: str = "tokenKeyName") -> tuple[str, str]:
        name = f"auth-{uuid.uuid4().hex[:8]}"
        kwargs = dict(authorizerName=name, authorizerFunctionArn=function_arn, status=status,
                      enableCachingForHttp=caching)
        if public_pem is None:
            kwargs["signingDisabled"] = True
        else:
            kwargs.update(tokenKeyName=token_key, tokenSigningPublicKeys={"FirstKey": public_pem},
                          signingDisabled=False)
        arn = self.iot.create_authorizer(**kwargs)["authorizerArn"]
        if permit:
            self.awslambda.add_permission(FunctionName=function_arn, StatementId=f"iot-{name}",
                                          Action="lambda:InvokeFunction", Principal="iot.amazonaws.com",
                                          SourceArn=arn)
        return name, arn


@pytest.fixture(scope="module")
def iot_logging(settings):
    """AWS IoT logging on at DEBUG in the module's sandbox (nothing reaches AWSIotLogsV2 otherwise)."""
    return enable_iot_logging(settings)


@pytest.fixture(scope="module")
def deployer(settings):
    return Deployer(settings)


@pytest.fixture
def wb(sandbox_home, tmp_path, monkeypatch):
    """A real Workbook with a fresh state (fresh suffix, fresh names) on the module's running sandbox."""
    from helpers.workbook import open_workbook

    monkeypatch.setenv("IOT_SANDBOX_HOME", str(sandbox_home))
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("WORKBOOK_TARGET", raising=False)
    return open_workbook()


@pytest.fixture
def no_aws_credentials(tmp_path, monkeypatch):
    """An environment where boto3 finds no AWS credentials anywhere (env, files, instance metadata)."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
