"""One-line errors in the notebooks' kernels: AWS, HTTP, the workbook's own, and kernel restarts."""
from __future__ import annotations

import re

import botocore.exceptions
import pytest
import requests

from helpers import errors


@pytest.fixture
def shell(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        yield shell
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()


def shown(capsys) -> str:
    out = capsys.readouterr()
    return re.sub(r"\x1b\[[0-9;]*m", "", out.out + out.err)


def client_error(code="ResourceNotFoundException", message="The authorizer x does not exist."):
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, "DescribeAuthorizer")


def test_aws_error_is_one_line_with_code_and_fix(shell, capsys):
    errors.load_ipython_extension(shell)
    shell.user_ns["boom"] = client_error
    result = shell.run_cell("raise boom()")
    text = shown(capsys)
    assert isinstance(result.error_in_exec, botocore.exceptions.ClientError)
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("AWS error ResourceNotFoundException (DescribeAuthorizer): The authorizer x does not")
    assert "fix: check the name or ARN and the region" in lines[0] and "%tb" in lines[0]
    # The full traceback is one command away.
    shell.run_cell("%tb")
    assert "Traceback" in shown(capsys)


def test_unknown_aws_code_still_gets_one_line(shell, capsys):
    errors.load_ipython_extension(shell)
    shell.user_ns["boom"] = lambda: client_error("SomethingNew", "odd")
    shell.run_cell("raise boom()")
    assert "AWS error SomethingNew (DescribeAuthorizer): odd -> fix: read AWS's message" in shown(capsys)


def test_http_errors_are_one_line(shell, capsys):
    errors.load_ipython_extension(shell)
    result = shell.run_cell("import requests\nrequests.get('https://127.0.0.1:9/x?secret=1', timeout=2)")
    text = shown(capsys)
    assert isinstance(result.error_in_exec, requests.exceptions.ConnectionError)
    assert "ConnectionError: could not reach https://127.0.0.1:9/x." in text and "secret" not in text
    assert "Traceback" not in text


def test_name_error_after_a_kernel_restart_says_run_from_the_top(shell, capsys):
    errors.load_ipython_extension(shell)  # what the kernel hook does before any cell
    shell.run_cell("wb.client('iot')")
    text = shown(capsys)
    assert "the kernel was restarted" in text and "run this notebook from the top" in text
    assert "Traceback" not in text
    errors.show_briefly(shell)  # the set-up cell ran: a NameError now is a skipped cell or a typo
    shell.run_cell("tamper")
    text = shown(capsys)
    assert "a cell above that defines it has not run" in text and "kernel was restarted" not in text


def test_other_errors_keep_their_traceback(shell, capsys):
    errors.load_ipython_extension(shell)
    shell.run_cell("1/0")
    assert "Traceback" in shown(capsys)


def test_kernel_hook_is_written_once_and_never_over_someone_elses(tmp_path):
    path = errors.install_kernel_hook(str(tmp_path))
    assert path == tmp_path / "etc" / "ipython" / "ipython_kernel_config.py"
    assert 'extensions = ["helpers.errors"]' in path.read_text()
    assert errors.install_kernel_hook(str(tmp_path)) == path
    path.write_text("c = get_config()\n# mine\n")
    assert errors.install_kernel_hook(str(tmp_path)) is None and "mine" in path.read_text()
