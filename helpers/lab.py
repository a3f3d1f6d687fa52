"""Saved notebooks carry each widget's "Run this cell" hint, never a widget view whose model is gone.

A widget's output in a notebook file is a pointer (``application/vnd.jupyter.widget-view+json``,
a model id) to an object that lives in the kernel. Reopen the file with another kernel (after a
restart, the next day, on another machine) and JupyterLab's widget renderer, which always wins
over the text beside it, finds no such model and shows "Error displaying widget: model not
found" (``@jupyter-widgets/jupyterlab-manager``'s ``WidgetRenderer.renderModel``). Saving the
widget state in the notebook does not help in JupyterLab 4
(https://github.com/jupyterlab/jupyterlab/issues/15361).

So a saved file keeps the text the workbook's widgets put beside the pointer (``text/plain``
and ``text/html``: "Run this cell to show the target chooser.", see ``helpers/widgets.py``) and
drops the pointer. Two places do it:

- :func:`pre_save_hook`, a Jupyter server pre-save hook: JupyterLab's saves and autosaves
  (every 2 minutes). The open notebook keeps its live widgets; the file holds the hints.
  ``make lab`` enables it as a server extension (``--ServerApp.jpserver_extensions``);
  ``python -m helpers.lab enable`` enables it in the environment's own Jupyter config, for a plain
  ``jupyter lab`` (Binder's ``postBuild`` does this).
- ``scripts/nb.py``'s ``clean()``: the committed notebooks.

Usage:

>>> cell = {"cell_type": "code", "outputs": [{"output_type": "display_data", "metadata": {}, "data": {
...     "application/vnd.jupyter.widget-view+json": {"model_id": "ab12", "version_major": 2, "version_minor": 0},
...     "text/plain": "Run this cell to show the target chooser."}}]}
>>> hint_widget_views({"cells": [cell]})
1
>>> cell["outputs"][0]["data"]
{'text/plain': 'Run this cell to show the target chooser.'}
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["GENERIC_HINT", "WIDGET_VIEW", "hint_widget_views", "pre_save_hook"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: For a widget that brings no text of its own (a plain ipywidgets.Button, say).
GENERIC_HINT = "Run this cell to show the widget."


def hint_widget_views(notebook: dict[str, Any]) -> int:
    """Drop every widget-view pointer from the notebook's outputs, keeping (or adding) the text hint.

    ``notebook`` is the notebook's JSON (a dict or an nbformat node), changed in place. Returns how
    many outputs were changed. A widget view closed before the save (model id ``""``) was hidden in
    JupyterLab and stays as the text beside it.
    """
    changed = 0
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not isinstance(data, dict) or WIDGET_VIEW not in data:
                continue
            del data[WIDGET_VIEW]
            if not any(key in data for key in ("text/plain", "text/html")):
                data["text/plain"] = GENERIC_HINT
            changed += 1
    return changed


def pre_save_hook(model: dict[str, Any], **kwargs: Any) -> None:
    """Jupyter server pre-save hook (``ContentsManager.register_pre_save_hook``): hint, don't point."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        hint_widget_views(model["content"])


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "helpers.lab"}]


def _load_jupyter_server_extension(serverapp) -> None:
    serverapp.contents_manager.register_pre_save_hook(pre_save_hook)
    serverapp.log.info("helpers.lab: saved notebooks keep the widgets' 'Run this cell' hints, not dead widget views")


def enable(prefix: str | Path = sys.prefix) -> Path:
    """Enable the extension for every Jupyter server of the environment at ``prefix``; returns the file written.

    The same file a packaged server extension installs: ``PREFIX/etc/jupyter/jupyter_server_config.d/``.
    """
    path = Path(prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "helpers.lab.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ServerApp": {"jpserver_extensions": {"helpers.lab": True}}}, indent=2) + "\n")
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["enable"]:
        sys.exit("usage: python -m helpers.lab enable   (saved notebooks keep the widgets' hints; make lab needs no set-up)")
    print(f"helpers.lab enabled for this environment's Jupyter servers: {enable()}")
