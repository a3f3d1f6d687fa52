"""Saved and committed notebooks hold each widget's "Run this cell" hint, never a widget view (helpers/lab.py)."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from helpers import device, lab, widgets

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
FUNCTION_ARN = "arn:aws:lambda:us-west-2:123456789012:function:custom-auth-function-abc123"


class ListWatch:
    messages: list = []


def all_widgets():
    return {
        "target chooser": widgets.target_chooser(),
        "Function ARN box": widgets.arn_input("Function ARN:", FUNCTION_ARN, widgets.validate_function_arn),
        "allow/deny sender": widgets.action_token_sender(lambda token: None),
        "live message view": widgets.message_view(ListWatch()),
        "device console": device.device_console(lambda client_id, password: None, "sensor-1", "devices/sensor-1/t"),
    }


@pytest.fixture(autouse=True)
def own_state(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))  # the chooser reads the recorded target


def test_every_widget_display_carries_the_hint_as_text_and_html():
    for name, widget in all_widgets().items():
        bundle = widget._repr_mimebundle_()
        hint = f"Run this cell to show the {name}."
        assert bundle["text/plain"] == hint == repr(widget)
        assert hint in bundle["text/html"] and bundle["text/html"].startswith("<div")
        assert bundle[lab.WIDGET_VIEW]["model_id"] == widget.model_id  # the live view is still there
        if hasattr(widget, "stop"):
            widget.stop()


def notebook_with(*outputs) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("display_data", data=data)
                                                        for data in outputs]),
                nbformat.v4.new_markdown_cell("text")]
    return nb


def test_hint_widget_views_drops_the_pointer_and_keeps_or_adds_text():
    view = {"model_id": "ab12", "version_major": 2, "version_minor": 0}
    nb = notebook_with({lab.WIDGET_VIEW: view, "text/plain": "Run this cell to show the box.",
                        "text/html": "<div>Run this cell to show the box.</div>"},
                       {lab.WIDGET_VIEW: dict(view)},  # a widget with no text of its own
                       {"text/plain": "42"})
    assert lab.hint_widget_views(nb) == 2
    first, second, third = (o["data"] for o in nb.cells[0].outputs)
    assert first == {"text/plain": "Run this cell to show the box.", "text/html": "<div>Run this cell to show the box.</div>"}
    assert second == {"text/plain": lab.GENERIC_HINT}
    assert third == {"text/plain": "42"}
    assert lab.hint_widget_views(nb) == 0
    nbformat.validate(nb)


def test_a_jupyter_server_save_writes_the_hints(tmp_path):
    """The hook on a real FileContentsManager, as `make lab` loads it: the file on disk holds no widget view."""
    from jupyter_server.services.contents.filemanager import FileContentsManager

    class FakeServerApp:
        contents_manager = FileContentsManager(root_dir=str(tmp_path))
        log = __import__("logging").getLogger("test")

    assert lab._jupyter_server_extension_points() == [{"module": "helpers.lab"}]
    lab._load_jupyter_server_extension(FakeServerApp)
    chooser_bundle = all_widgets()["Function ARN box"]._repr_mimebundle_()
    model = {"type": "notebook", "format": "json", "content": notebook_with(chooser_bundle)}
    FakeServerApp.contents_manager.save(model, "saved.ipynb")
    saved = json.loads((tmp_path / "saved.ipynb").read_text())
    data = saved["cells"][0]["outputs"][0]["data"]
    assert lab.WIDGET_VIEW not in data and "".join(data["text/plain"]) == "Run this cell to show the Function ARN box."
    FakeServerApp.contents_manager.save({"type": "file", "format": "text", "content": "x"}, "plain.txt")
    assert (tmp_path / "plain.txt").read_text() == "x"  # other files pass untouched


def test_make_lab_loads_the_extension_and_binder_enables_it(tmp_path):
    assert "--ServerApp.jpserver_extensions=helpers.lab=True" in (ROOT / "Makefile").read_text()
    assert "python -m helpers.lab enable" in (ROOT / "binder" / "postBuild").read_text()
    written = lab.enable(tmp_path)
    assert written == tmp_path / "etc" / "jupyter" / "jupyter_server_config.d" / "helpers.lab.json"
    assert json.loads(written.read_text()) == {"ServerApp": {"jpserver_extensions": {"helpers.lab": True}}}


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_hold_hints_not_widget_views(path):
    nb = json.loads(path.read_text())
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            assert lab.WIDGET_VIEW not in data, f"{path.name} cell {index}: a widget view (reopens as 'model not found')"
            source = "".join(cell["source"])
            if any(call in source for call in ("target_chooser(", "arn_input(", "action_token_sender(", "message_view(")):
                if "text/html" in data:
                    assert "".join(data["text/plain"]).startswith("Run this cell to show the "), (path.name, index)
