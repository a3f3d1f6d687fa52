"""Self-check for a learner's or an instructor's machine: ``python -m helpers.doctor``.

Prints what the workbook needs and whether this machine has it: Python and the
pinned packages, the command-line tools the notebooks show (openssl, curl, the
AWS CLI, node for Node.js handlers), the workbook's state (target, region,
suffix) and whether the sandbox runs and answers a signed request. Exit status
0 when everything the default (sandbox) path needs is there, 1 otherwise.

Usage:

>>> report = checks()
>>> [c.name for c in report][:2]
['python', 'boto3']
>>> all(c.status in ("ok", "missing", "note") for c in report)
True
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

PACKAGES = ("boto3", "botocore", "cryptography", "requests", "paho-mqtt", "ipywidgets", "jupyterlab", "nbval",
            "nbclient")
#: Tools the notebooks show or use; node is optional (only Node.js handlers need it).
TOOLS = {"openssl": True, "curl": False, "aws": False, "node": False}


@dataclass
class Check:
    name: str
    status: str  # ok | missing | note
    detail: str
    required: bool = True


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not run: {exc}"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def checks(probe_sandbox: bool = False) -> list[Check]:
    found = [Check("python", "ok" if sys.version_info >= (3, 10) else "missing",
                   f"{sys.version.split()[0]} ({sys.executable})")]
    for name in PACKAGES:
        try:
            found.append(Check(name, "ok", metadata.version(name)))
        except metadata.PackageNotFoundError:
            found.append(Check(name, "missing", "not installed: run `make venv` (or pip install -r requirements.txt)"))
    for tool, required in TOOLS.items():
        path = shutil.which(tool)
        if path:
            flag = "--version" if tool != "openssl" else "version"
            found.append(Check(tool, "ok", _version([path, flag]), required))
        else:
            why = {"node": "only needed for Node.js Lambda handlers", "aws": "the notebooks show CLI lines; "
                   "`pip install awscli` (in requirements.txt) provides it", "curl": "only for the curl lines",
                   "openssl": "the key-pair notebook runs its checks"}[tool]
            found.append(Check(tool, "missing" if required else "note", f"not found ({why})", required))
    from .state import WorkbookState, default_path
    if not default_path().exists():  # the doctor only looks: it never creates the state file
        found.append(Check("workbook state", "note", f"none yet ({default_path()}); notebook 00 creates it",
                           required=False))
    else:
        try:
            state = WorkbookState.load()
            found.append(Check("workbook state", "ok", f"target {state.target}, region {state.region}, "
                               f"suffix {state.suffix} ({state.path})"))
        except Exception as exc:  # a damaged state file is reported, not raised
            found.append(Check("workbook state", "missing", str(exc)))
    from . import sandbox
    settings = sandbox.status()
    if settings is None:
        found.append(Check("sandbox", "note", f"not running (home {sandbox.default_home()}); notebook 00 starts it",
                           required=False))
    else:
        detail = f"running, pid {settings.pid}, {settings.endpoint_url}"
        if probe_sandbox:
            try:
                settings.client("sts").get_caller_identity()
                detail += ", answered a signed request"
            except Exception as exc:
                found.append(Check("sandbox", "missing", f"{detail}, but a signed request failed: {exc}"))
                return found
        found.append(Check("sandbox", "ok", detail, required=False))
    return found


def main() -> int:
    report = checks(probe_sandbox=True)
    width = max(len(c.name) for c in report)
    for c in report:
        mark = {"ok": "ok ", "missing": "!! ", "note": "-- "}[c.status]
        print(f"{mark} {c.name:<{width}}  {c.detail}")
    problems = [c for c in report if c.status == "missing" and c.required]
    print("\nEverything the sandbox path needs is here." if not problems
          else f"\n{len(problems)} problem(s): fix the lines marked !! above.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
