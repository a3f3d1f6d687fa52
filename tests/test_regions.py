"""Regions: each resource lives in the region of the request's credential scope."""
from __future__ import annotations

import uuid

import botocore.exceptions
import pytest

from helpers.sandbox import core
from helpers.sandbox.services import iot


def in_region(settings, service, region):
    return settings.session().client(service, region_name=region, endpoint_url=settings.endpoint_url,
                                     verify=str(settings.ca_bundle))


def test_an_authorizer_is_seen_only_in_its_region(deployer, settings, rsa_key):
    fn = deployer.function("def lambda_handler(e, c):\n    return {}\n")
    name, arn = deployer.authorizer(fn, rsa_key[1])
    assert ":us-west-2:" in arn
    west, europe = in_region(settings, "iot", "us-west-2"), in_region(settings, "iot", "eu-west-1")
    assert west.describe_authorizer(authorizerName=name)["authorizerDescription"]["authorizerArn"] == arn
    with pytest.raises(europe.exceptions.ResourceNotFoundException, match="region eu-west-1"):
        europe.describe_authorizer(authorizerName=name)
    assert name not in [a["authorizerName"] for a in europe.list_authorizers()["authorizers"]]
    # the same name is free in another region, and its ARN carries that region
    made = europe.create_authorizer(authorizerName=name, authorizerFunctionArn=fn.replace("us-west-2", "eu-west-1"),
                                    signingDisabled=True)
    assert made["authorizerArn"] == arn.replace(":us-west-2:", ":eu-west-1:")
    europe.update_authorizer(authorizerName=name, status="INACTIVE")
    europe.delete_authorizer(authorizerName=name)
    assert west.describe_authorizer(authorizerName=name)["authorizerDescription"]["status"] == "ACTIVE"


def test_functions_and_logs_are_regional_iam_is_global(deployer, settings):
    fn = deployer.function("def lambda_handler(e, c):\n    print('hi')\n")
    europe = in_region(settings, "lambda", "eu-west-1")
    with pytest.raises(europe.exceptions.ResourceNotFoundException):
        europe.get_function(FunctionName=fn.rsplit(":", 1)[1])
    name = f"eu-{uuid.uuid4().hex[:8]}"
    from conftest import zip_source
    made = europe.create_function(FunctionName=name, Runtime="python3.12", Role=deployer.role(),  # IAM: global
                                  Handler="lambda_function.lambda_handler",
                                  Code={"ZipFile": zip_source({"lambda_function.py":
                                                               "def lambda_handler(e, c):\n    print('hola')\n"})})
    assert made["FunctionArn"].startswith("arn:aws:lambda:eu-west-1:")
    europe.invoke(FunctionName=name)
    logs_eu = in_region(settings, "logs", "eu-west-1")
    assert [g["logGroupName"] for g in logs_eu.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")[
        "logGroups"]] == [f"/aws/lambda/{name}"]
    assert in_region(settings, "logs", "us-west-2").describe_log_groups(
        logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"] == []
    europe.delete_function(FunctionName=name)


def test_a_scope_naming_no_aws_region_is_refused(settings):
    bogus = in_region(settings, "iot", "us-nowhere-1")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        bogus.list_authorizers()
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "Credential should be scoped to a valid region, not 'us-nowhere-1'" in info.value.response["Error"]["Message"]


def test_describe_endpoint_names_the_region_and_the_data_endpoint_knows_it(settings):
    west = in_region(settings, "iot", "us-west-2").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    europe = in_region(settings, "iot", "eu-west-1").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert west.startswith("localhost:") and europe == "eu-west-1." + west
    ctx = core.Context(store=None)
    assert iot.data_endpoint_region(ctx, "localhost") == "us-west-2"
    assert iot.data_endpoint_region(ctx, None) == "us-west-2"
    assert iot.data_endpoint_region(ctx, europe.split(":")[0]) == "eu-west-1"
    assert iot.data_endpoint_region(ctx, "evil.localhost") == "us-west-2"


def test_regional_databases_are_owner_only(settings, sandbox_home):
    in_region(settings, "iot", "ap-south-1").list_authorizers()
    path = sandbox_home / "state-ap-south-1.sqlite3"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_regional_data_endpoint_names_are_in_the_certificate(settings):
    import socket
    import ssl
    port = int(settings.data_endpoint.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(settings.ca_bundle))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="eu-west-1.localhost") as tls:
            assert tls.version()  # the handshake verified the name
