"""helpers.workbook: targets, clients, packaging, retries — and the whole workbook on the AWS code path."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import botocore.exceptions
import pytest

from helpers import sandbox, workbook
from helpers.errors import ConfigurationError
from helpers.state import WorkbookState

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("IOT_SANDBOX_HOME", str(tmp_path / "sandbox"))
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("WORKBOOK_TARGET", raising=False)
    yield tmp_path
    sandbox.stop(tmp_path / "sandbox")


def test_sandbox_target_starts_the_sandbox_and_reaches_it(dirs):
    wb = workbook.open_workbook()
    assert wb.target == "sandbox" and wb.sandbox is not None
    assert wb.account_id == sandbox.ACCOUNT_ID
    assert wb.data_endpoint.startswith("localhost:")
    assert wb.tls_verify == str(wb.sandbox.ca_bundle)
    assert wb.keys_dir == dirs / "state" / "keys"
    assert "suffix:" in wb.summary() and wb.state.suffix in wb.summary()


def test_choose_target_validates_and_records(dirs):
    with pytest.raises(ConfigurationError, match="must be 'sandbox' .* or 'aws'"):
        workbook.choose_target("azure")
    with pytest.raises(ConfigurationError, match="does not look like an AWS region"):
        workbook.choose_target("sandbox", region="mars-1")
    wb = workbook.choose_target("sandbox", region="eu-west-1")
    assert WorkbookState.load().region == "eu-west-1" and wb.region == "eu-west-1"


def test_aws_target_without_credentials_is_a_clear_error(dirs, no_aws_credentials):
    with pytest.raises(workbook.AwsSetupError, match="found no credentials"):
        workbook.open_workbook("aws")


def test_zip_function_packages_the_handler_at_the_root():
    names = zipfile.ZipFile(io.BytesIO(workbook.zip_function(workbook.FUNCTION_DIR))).namelist()
    assert "lambda_function.py" in names and not any("__pycache__" in n for n in names)


def test_retry_while_retries_only_the_named_error():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "InvalidParameterValueException",
                           "Message": "The role defined for the function cannot be assumed by Lambda."}}, "CreateFunction")
        return "created"

    assert workbook.retry_while(flaky, codes=("InvalidParameterValueException",), message_contains="cannot be assumed",
                                sleep=sleeps.append) == "created"
    assert len(calls) == 3 and sleeps == [2.0, 2.0]

    def other():
        raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "X")

    with pytest.raises(botocore.exceptions.ClientError):
        workbook.retry_while(other, codes=("InvalidParameterValueException",), sleep=sleeps.append)
    assert len(sleeps) == 2  # no retry for another error

    def always():
        raise botocore.exceptions.ClientError({"Error": {"Code": "InvalidParameterValueException", "Message": "m"}}, "X")

    with pytest.raises(botocore.exceptions.ClientError):
        workbook.retry_while(always, codes=("InvalidParameterValueException",), attempts=4, sleep=sleeps.append)
    assert len(sleeps) == 2 + 3  # bounded


def test_a_target_that_cannot_open_is_not_recorded(dirs, no_aws_credentials):
    with pytest.raises(workbook.AwsSetupError):
        workbook.choose_target("aws", region="eu-west-1")
    state = WorkbookState.load()
    assert state.target == "sandbox" and state.region == "us-west-2"
