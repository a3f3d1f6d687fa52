"""helpers.state: the JSON file the notebooks share."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from helpers import state as state_module
from helpers.errors import ConfigurationError, NotReadyError, StateFileError, WorkbookError
from helpers.state import NAME_RULES, WorkbookState


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("WORKBOOK_STATE_DIR", raising=False)
    monkeypatch.delenv("WORKBOOK_TARGET", raising=False)


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "wb" / "state.json"


def test_default_location_is_under_the_repo(monkeypatch):
    repo = Path(state_module.__file__).resolve().parent.parent
    assert (repo / "helpers").is_dir()
    assert state_module.default_path() == repo / ".workbook" / "state.json"


def test_env_var_moves_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "elsewhere"))
    state = WorkbookState.load()
    assert state.path == tmp_path / "elsewhere" / "state.json"
    assert state.path.is_file()
    assert os.stat(state.path.parent).st_mode & 0o777 == 0o700


def test_new_state_gets_a_saved_random_suffix(path):
    first = WorkbookState.load(path)
    assert re.fullmatch(r"[a-z0-9]{6}", first.suffix)
    assert path.is_file()
    assert WorkbookState.load(path).suffix == first.suffix  # stable once saved


def test_suffixes_vary():
    assert len({state_module.new_suffix() for _ in range(20)}) > 1


def test_set_get_and_dict_access(path):
    state = WorkbookState.load(path)
    state.set(function_arn="arn:aws:lambda:us-west-2:123456789012:function:f", key_dir=Path("/tmp/k"))
    assert state.get("function_arn") == "arn:aws:lambda:us-west-2:123456789012:function:f"
    assert state["key_dir"] == "/tmp/k"  # Paths are stored as strings
    assert "function_arn" in state and "nothing" not in state
    assert state.get("nothing") is None and state.get("nothing", 5) == 5
    with pytest.raises(KeyError, match="nothing"):
        state["nothing"]
    reloaded = WorkbookState.load(path)
    assert reloaded["function_arn"] == state["function_arn"]
    assert reloaded.suffix == state.suffix


def test_set_refuses_values_json_cannot_hold(path):
    state = WorkbookState.load(path)
    with pytest.raises(TypeError, match="JSON"):
        state.set(bad=object())
    assert "bad" not in WorkbookState.load(path)
    with pytest.raises(ValueError, match="suffix"):
        state.set(suffix="UPPER!")


def test_require_names_the_notebook(path):
    state = WorkbookState.load(path)
    with pytest.raises(NotReadyError, match="run notebook 03-create-authorizer first") as caught:
        state.require("authorizer_arn")
    assert isinstance(caught.value, WorkbookError)
    assert caught.value.missing == "authorizer_arn"
    with pytest.raises(NotReadyError, match="run notebook 02-lambda first"):
        state.require("function_arn", notebook="02-lambda")
    state.set(authorizer_arn="arn:aws:iot:us-west-2:123456789012:authorizer/a")
    assert state.require("authorizer_arn") == "arn:aws:iot:us-west-2:123456789012:authorizer/a"


def test_names_carry_the_suffix_and_follow_aws_rules(path):
    state = WorkbookState.load(path)
    names = state.names
    suffix = state.suffix
    assert names.function == f"custom-auth-function-{suffix}"
    assert names.role == f"custom-auth-function-role-{suffix}"
    assert names.authorizer == f"my-new-authorizer-{suffix}"
    assert names.statement_id == f"Id-{suffix}"
    for field, (pattern, limit) in NAME_RULES.items():
        value = getattr(names, field)
        assert pattern.fullmatch(value) and len(value) <= limit, field


def test_name_rules_are_the_aws_ones():
    assert NAME_RULES["authorizer"][1] == 128 and NAME_RULES["function"][1] == 64
    assert NAME_RULES["role"][1] == 64 and NAME_RULES["statement_id"][1] == 100
    assert not NAME_RULES["function"][0].fullmatch("has.dot")
    assert NAME_RULES["role"][0].fullmatch("has.dot+plus=eq,comma@at")
    assert not NAME_RULES["authorizer"][0].fullmatch("no.dots")
    assert not NAME_RULES["statement_id"][0].fullmatch("no spaces")


def test_names_match_the_botocore_models():
    from botocore.loaders import Loader

    loader = Loader()
    iot = loader.load_service_model("iot", "service-2")["shapes"]
    iam = loader.load_service_model("iam", "service-2")["shapes"]
    lam = loader.load_service_model("lambda", "service-2")["shapes"]
    assert iot["AuthorizerName"]["pattern"] == NAME_RULES["authorizer"][0].pattern
    assert iot["AuthorizerName"]["max"] == NAME_RULES["authorizer"][1]
    assert iam["roleNameType"]["pattern"] == NAME_RULES["role"][0].pattern
    assert iam["roleNameType"]["max"] == NAME_RULES["role"][1]
    assert lam["StatementId"]["pattern"] == NAME_RULES["statement_id"][0].pattern
    assert lam["StatementId"]["max"] == NAME_RULES["statement_id"][1]


def test_region_defaults_and_can_be_set(path):
    state = WorkbookState.load(path)
    assert state.region == "us-west-2"
    state.set(region="eu-west-1")
    assert WorkbookState.load(path).region == "eu-west-1"


def test_target_default_file_and_env_override(path, monkeypatch):
    state = WorkbookState.load(path)
    assert state.target == "sandbox"
    state.set(target="aws")
    assert WorkbookState.load(path).target == "aws"
    monkeypatch.setenv("WORKBOOK_TARGET", "sandbox")
    assert state.target == "sandbox"
    monkeypatch.setenv("WORKBOOK_TARGET", " AWS ")
    assert state.target == "aws"
    monkeypatch.setenv("WORKBOOK_TARGET", "cloud")
    with pytest.raises(ConfigurationError, match="WORKBOOK_TARGET"):
        state.target
    with pytest.raises(ConfigurationError, match="'sandbox'"):
        state.set(target="prod")


def test_resources_are_ordered_deduplicated_and_forgettable(path):
    state = WorkbookState.load(path)
    state.record_resource("iam-role", "role-a")
    state.record_resource("lambda-function", "fn-a")
    state.record_resource("iam-role", "role-a")
    state.record_resource("iot-authorizer", "auth-a")
    expected = [("iam-role", "role-a"), ("lambda-function", "fn-a"), ("iot-authorizer", "auth-a")]
    assert state.resources() == expected
    assert WorkbookState.load(path).resources() == expected
    assert state.forget_resource("lambda-function", "fn-a") is True
    assert state.forget_resource("lambda-function", "fn-a") is False
    assert WorkbookState.load(path).resources() == [("iam-role", "role-a"), ("iot-authorizer", "auth-a")]


def test_two_open_notebooks_see_and_keep_each_others_changes(path):
    notebook_a = WorkbookState.load(path)
    notebook_b = WorkbookState.load(path)
    notebook_a.set(function_arn="fa")
    assert notebook_b.require("function_arn") == "fa"  # B sees A's save
    notebook_b.set(authorizer_arn="aa")
    notebook_a.record_resource("iot-authorizer", "aa")
    final = WorkbookState.load(path)
    assert final["function_arn"] == "fa" and final["authorizer_arn"] == "aa"
    assert final.resources() == [("iot-authorizer", "aa")]


def test_save_is_atomic_and_leaves_no_temp_files(path, monkeypatch):
    state = WorkbookState.load(path)
    state.set(a=1)
    before = path.read_text()

    def failing_dump(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_module.json, "dump", failing_dump)
    with pytest.raises(StateFileError, match="Cannot write"):
        state.set(b=2)
    monkeypatch.undo()
    assert path.read_text() == before  # the old file is intact
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


@pytest.mark.parametrize(
    "content, detail",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"format": 1, "values": {}, "resources": []}', "suffix"),
        ('{"format": 1, "values": {"suffix": "abc123"}, "resources": [["x"]]}', "resources"),
        ('{"format": 1, "values": {"suffix": "abc123", "target": "moon"}, "resources": []}', "target"),
        ('{"format": 99, "values": {"suffix": "abc123"}, "resources": []}', "format"),
    ],
)
def test_corrupt_file_is_reported_not_replaced(path, content, detail):
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(StateFileError, match=detail) as caught:
        WorkbookState.load(path)
    message = str(caught.value)
    assert str(path) in message and "delete" in message
    assert caught.value.path == path
    assert path.read_text() == content  # untouched


def test_reset_corrupt_keeps_the_bad_file_aside(path):
    path.parent.mkdir(parents=True)
    path.write_text("{oops")
    state = WorkbookState.load(path, reset_corrupt=True)
    assert re.fullmatch(r"[a-z0-9]{6}", state.suffix)
    aside = [p for p in path.parent.iterdir() if p.name != "state.json"]
    assert len(aside) == 1
    assert re.fullmatch(r"state\.json\.bad-\d{8}T\d{6}Z(-\d+)?", aside[0].name)
    assert aside[0].read_text() == "{oops"
    assert json.loads(path.read_text())["values"]["suffix"] == state.suffix


def test_reset_corrupt_leaves_a_good_file_alone(path):
    original = WorkbookState.load(path)
    original.set(x=1)
    again = WorkbookState.load(path, reset_corrupt=True)
    assert again.suffix == original.suffix and again["x"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_file_damaged_by_another_notebook_is_reported_on_read(path):
    state = WorkbookState.load(path)
    path.write_text("{broken")
    with pytest.raises(StateFileError, match="not valid JSON"):
        state.get("anything")


def test_repr_is_short(path):
    state = WorkbookState.load(path)
    assert repr(state) == f"WorkbookState(path={str(path)!r}, suffix={state.suffix!r}, target='sandbox')"


def test_notebooks_show_workbook_errors_as_one_line(path, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from helpers.errors import show_briefly

    assert show_briefly() is None  # not inside IPython: nothing to do, nothing shown
    shell = InteractiveShell.instance()
    try:
        show_briefly(shell)
        capsys.readouterr()
        shell.user_ns["state"] = WorkbookState.load(path)
        result = shell.run_cell("state.require('authorizer_arn')")
        shown = capsys.readouterr()
        assert isinstance(result.error_in_exec, NotReadyError)  # the cell still fails
        text = re.sub(r"\x1b\[[0-9;]*m", "", shown.out + shown.err)  # drop terminal colours
        assert "NotReadyError: authorizer_arn is not recorded yet" in text
        assert "Traceback" not in text and "helpers/state.py" not in text
        result = shell.run_cell("1/0")  # other errors keep their traceback
        assert isinstance(result.error_in_exec, ZeroDivisionError)
        assert "Traceback" in "".join(capsys.readouterr())
    finally:
        InteractiveShell.clear_instance()


def test_setting_none_removes_a_value_but_never_the_suffix(tmp_path):
    from helpers.state import WorkbookState
    state = WorkbookState.load(tmp_path / "state.json")
    state.set(target="aws", function_arn="arn:aws:lambda:us-west-2:123456789012:function:f")
    state.set(target=None, function_arn=None)
    again = WorkbookState.load(tmp_path / "state.json")
    assert again.get("function_arn") is None and again.target == "sandbox"
    with pytest.raises(ValueError, match="suffix"):
        again.set(suffix=None)
