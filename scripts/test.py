#!/usr/bin/env python3
"""The whole test suite, as `make test` runs it: unit tests, then nbval over every notebook in order.

Notebooks run in reading order (their two-digit prefixes), in one pytest
session, so each one sees the state the ones before it left. Whatever happens,
the sandbox the notebooks started is stopped at the end, so the suite leaves no
process running.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    os.chdir(ROOT)
    env = dict(os.environ)
    env.setdefault("IOT_SANDBOX_HOME", str(ROOT / "build" / "sandbox"))
    env.setdefault("WORKBOOK_STATE_DIR", str(ROOT / "build" / "workbook-state"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    os.environ.update(env)
    from helpers import sandbox

    failed = False
    try:
        print("== unit tests", flush=True)
        failed |= subprocess.call([sys.executable, "-m", "pytest"], env=env) != 0
        notebooks = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
        if notebooks:
            cleanup = [nb for nb in notebooks[-1:] if "cleanup" in nb]
            stages = [nb for nb in notebooks if nb not in cleanup]
            # In order, as a learner runs them; then every stage again (re-running must reuse what exists and
            # print the same); then the clean-up notebook twice (safe to run twice in a row).
            passes = [("nbval, in order", stages), ("nbval, every stage again", stages),
                      ("nbval, clean-up", cleanup), ("nbval, clean-up again", cleanup)]
            passes = [(label, paths) for label, paths in passes if paths]
            for label, paths in passes:
                print(f"== {label}: {len(paths)} notebook(s)", flush=True)
                cmd = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
                       "--sanitize-with", "notebooks/sanitize.cfg", "-o", "addopts=-p no:cacheprovider",
                       "-o", "testpaths=", *paths]
                if subprocess.call(cmd, env=env) != 0:
                    failed = True
                    break
    finally:
        sandbox.stop(env["IOT_SANDBOX_HOME"])
    print("== FAILED" if failed else "== all passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
