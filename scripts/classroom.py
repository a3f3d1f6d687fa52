#!/usr/bin/env python3
"""Classroom tools: ``make reset`` (clean up, then a fresh state).

    python scripts/classroom.py reset

Deletes everything the workbook recorded (what notebook 10 does, with the same clean-up code),
and, on a version of ``helpers.cleanup`` that can find them, the workbook resources an earlier,
lost state file left behind. Only when nothing failed is the state file removed, so that
notebook 00 starts a fresh one (a new suffix); when something failed, the state file is kept,
so that the next ``make reset`` (or notebook 10) retries it. Uses the learner's own state and
sandbox (``.workbook/``), never build/'s.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def reset() -> int:
    from helpers import cleanup
    from helpers.errors import WorkbookError
    from helpers.state import WorkbookState, default_path
    from helpers.workbook import open_workbook

    path = default_path()
    if not path.exists():
        print(f"Nothing to reset: there is no workbook state ({path}). Notebook 00 starts one.")
        return 0
    try:
        wb = open_workbook(state=WorkbookState.load())
    except WorkbookError as exc:
        print(f"Cannot reset: {exc}", file=sys.stderr)
        return 1
    adopted = 0
    adopted = cleanup.adopt(wb, cleanup.find_orphans(wb))  # what a lost state file forgot, deleted too
    steps = cleanup.cleanup(wb)
    if steps:
        print(cleanup.format_steps(steps))
    failed = [s for s in steps if s.outcome.startswith("failed")]
    if failed:
        print(f"{len(failed)} resource(s) could not be deleted (see above); the state file is kept so that "
              "`make reset` can retry. Fix the cause, then run it again.", file=sys.stderr)
        return 1
    path.unlink()
    found = f", {adopted} of them left by an earlier state file" if adopted else ""
    print(f"Reset: {len(steps)} resource(s) deleted{found}; the state file is gone, so notebook 00 starts "
          "afresh (a new suffix).")
    return 0


def main(argv: list[str]) -> int:
    if argv != ["reset"]:
        print(__doc__)
        return 2
    return reset()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
