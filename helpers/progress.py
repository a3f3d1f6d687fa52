"""Which stages a checkout has completed, in one line: ``python -m helpers.progress [STATE_FILE ...]``.

For an instructor walking the room (or, on a shared lab machine, reading every learner's state
file at once: ``python -m helpers.progress /home/*/iot-custom-auth-workbook/.workbook/state.json``).
It only reads: it never creates or changes a state file.

A stage counts as done when the state file says so, in either of two ways:

- its mark in the ``stages_done`` value (``{"06-publish-https": "2026-12-01T10:02:00Z", ...}``),
  written by :func:`mark_done` (``make catch-up`` marks each notebook it ran; a notebook's
  final check cell can call ``helpers.progress.mark_done(wb.state, "06-publish-https")``);
- or the value that stage saves for the next ones (notebook 01 saves ``function_arn``, 03
  ``authorizer_arn``, ...): :data:`EVIDENCE`.

The notebooks are the files ``notebooks/NN-*.ipynb``, whatever their number.

>>> import tempfile, pathlib
>>> from helpers.state import WorkbookState
>>> tmp = tempfile.TemporaryDirectory()
>>> state = WorkbookState.load(pathlib.Path(tmp.name) / "state.json")
>>> names = ["00-set-up", "01-authorizer-function", "02-key-pair", "03-create-authorizer"]
>>> state.set(target="sandbox", function_arn="arn:aws:lambda:us-west-2:123456789012:function:f")
>>> done_stages(state, names)
['00-set-up', '01-authorizer-function']
>>> mark_done(state, "02-key-pair")
>>> line(state, names).split(": ")[-1]
'done 00 01 02; next 03-create-authorizer (3/4)'
>>> tmp.cleanup()
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from helpers.errors import StateFileError
from helpers import REPO_ROOT
from helpers.state import WorkbookState, _read, default_path

MARKS = "stages_done"
#: A value saved by a stage, by notebook name without its number (survives renumbering).
EVIDENCE = {
    "set-up": "target",
    "authorizer-function": "function_arn",
    "key-pair": "private_key_path",
    "create-authorizer": "authorizer_arn",
    "grant-permission": "statement_id",
    "test-invoke": "token",
}


def notebook_names(root: Path = REPO_ROOT) -> list[str]:
    """The workbook's notebooks, in order, from the files (``NN-name``)."""
    return sorted(p.stem for p in (root / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def _topic(name: str) -> str:
    return name.split("-", 1)[1] if "-" in name else name


def mark_done(state: WorkbookState, notebook: str) -> None:
    """Record that ``notebook`` (``NN-name``) ran to its end."""
    marks = dict(state.get(MARKS) or {})
    marks[notebook] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    state.set(**{MARKS: marks})


def done_stages(state: WorkbookState, names: list[str]) -> list[str]:
    marks = state.get(MARKS) or {}
    topics_marked = {_topic(name) for name in marks}
    done = []
    for name in names:
        key = EVIDENCE.get(_topic(name))
        if name in marks or _topic(name) in topics_marked or (key is not None and state.get(key) is not None):
            done.append(name)
    return done


def line(state: WorkbookState, names: list[str]) -> str:
    done = done_stages(state, names)
    who = f"{state.path}: target {state.target}, suffix {state.suffix}"
    pending = [n for n in names if n not in done]
    numbers = " ".join(n.split("-", 1)[0] for n in done) or "nothing"
    if not pending:
        return f"{who}: done {numbers}; every notebook done ({len(done)}/{len(names)})"
    return f"{who}: done {numbers}; next {pending[0]} ({len(done)}/{len(names)})"


def report(path: Path, names: list[str]) -> str:
    if not path.exists():
        return f"{path}: no state file yet: nothing done; next {names[0] if names else '00'} (0/{len(names)})"
    try:
        data = _read(path)  # read-only: WorkbookState.load() would create a missing file
        if data is None:
            raise StateFileError(f"{path} disappeared", path=path)
        return line(WorkbookState(path, data), names)
    except (StateFileError, OSError, ValueError) as exc:
        return f"{path}: cannot read it ({str(exc).splitlines()[0]})"


def main(argv: list[str]) -> int:
    names = notebook_names()
    paths = [Path(a) for a in argv] or [default_path()]
    lines = [report(path, names) for path in paths]
    print("\n".join(lines))
    return 0 if all("cannot read" not in text for text in lines) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
