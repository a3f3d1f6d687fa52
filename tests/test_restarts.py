"""Workshop hazards: the sandbox restarted under an open notebook, and a target that is not what it says."""
from __future__ import annotations

import socket

import botocore.exceptions
import pytest

from helpers import errors, sandbox, workbook
from helpers.workbook import TargetMismatchError


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "sandbox"
    monkeypatch.setenv("IOT_SANDBOX_HOME", str(home))
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("WORKBOOK_TARGET", raising=False)
    yield home
    sandbox.stop(home)


def ports(settings) -> tuple[str, str]:
    return settings.endpoint_url, settings.data_endpoint


def test_a_restarted_sandbox_keeps_its_ports_and_open_notebooks_keep_working(home, capsys):
    wb = workbook.open_workbook()
    iot = wb.client("iot")  # what a notebook keeps in a variable
    before = ports(sandbox.status(home)), wb.data_endpoint
    sandbox.stop(home)
    assert sandbox.status(home) is None
    # The open notebook's next call starts it again, on the same ports; the old client still works.
    assert wb.client("sts").get_caller_identity()["Account"] == "123456789012"
    assert "started it again" in capsys.readouterr().out
    assert (ports(sandbox.status(home)), wb.data_endpoint) == before
    assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] == before[1]


def test_where_a_port_really_changed_the_workbook_follows_and_the_old_client_says_what_to_do(home):
    wb = workbook.open_workbook()
    old_url, old_data = wb.endpoint_url, wb.data_endpoint
    sandbox.stop(home)
    with socket.socket() as squatter:  # someone took the old API port meanwhile
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", int(old_url.rsplit(":", 1)[1])))
        squatter.listen()
        settings = sandbox.ensure_running(home)
        assert settings.endpoint_url != old_url and settings.data_endpoint == old_data
        assert wb.client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] == old_data
        assert wb.endpoint_url == settings.endpoint_url
    line = errors.one_line(botocore.exceptions.EndpointConnectionError(endpoint_url=old_url + "/authorizers/"), {})
    assert f"now answers at {settings.endpoint_url}" in line and "Run this notebook from the top" in line
    sandbox.stop(home)
    line = errors.one_line(botocore.exceptions.EndpointConnectionError(endpoint_url=old_url), {})
    assert "The sandbox is not running: start it with" in line


def test_aws_target_refuses_the_sandboxs_exported_settings(home, monkeypatch):
    settings = sandbox.ensure_running(home)
    for key, value in settings.env().items():  # what eval "$(python -m helpers.sandbox start)" exports
        monkeypatch.setenv(key, value)
    with pytest.raises(TargetMismatchError) as exc:
        workbook.open_workbook("aws")
    message = str(exc.value)
    assert "AWS_ENDPOINT_URL=" in message and "AWS_CA_BUNDLE" in message and "unset AWS_ENDPOINT_URL" in message
    assert errors.one_line(exc.value).startswith("TargetMismatchError: The target is 'aws'")
    # each one alone is refused too
    for var in ("AWS_ENDPOINT_URL", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "SANDBOX0123456789ABC")
    with pytest.raises(TargetMismatchError, match="the sandbox's key id"):
        workbook.open_workbook("aws")
    monkeypatch.setenv("AWS_ENDPOINT_URL_IOT", "https://localhost:4443")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA" + "EXAMPLEEXAMPLE12")
    with pytest.raises(TargetMismatchError, match="AWS_ENDPOINT_URL_IOT"):
        workbook.open_workbook("aws")
    # a test that means it opts in explicitly
    monkeypatch.setenv("WORKBOOK_ALLOW_SANDBOX_AS_AWS", "1")
    workbook.refuse_sandbox_settings_for_aws()


def test_sandbox_target_never_reads_a_real_profile_or_credentials(home, monkeypatch, tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text("[real]\naws_access_key_id = " + "AKIA" + "REALREALREAL1234\naws_secret_access_key = secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "real")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA" + "REALREALREAL5678")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    wb = workbook.open_workbook("sandbox")
    assert wb.session.get_credentials().access_key == sandbox.status(home).access_key_id
    assert not wb.session.get_credentials().access_key.startswith("AKIA")
    assert wb.client("sts").get_caller_identity()["Account"] == "123456789012"
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")  # would be ProfileNotFound for a plain boto3 session
    assert workbook.open_workbook("sandbox").client("sts").get_caller_identity()["Account"] == "123456789012"
