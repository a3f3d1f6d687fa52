"""Self-check for a learner's or an instructor's machine: ``python -m helpers.doctor``.

It never lies and never crashes: it runs with only the standard library (before set-up, with
any Python 3.11+, in anyone's checkout), and says ``READY`` (exit status 0) only when the
workbook will really run here, because it checked what the workbook runs on:

- the platform (not Windows natively, not a Windows drive under WSL) and the Python;
- every installed package against the pins in ``requirements.txt`` (``requirements.lock``
  differences are noted), and that ``helpers`` is this checkout's;
- the ``python3`` Jupyter kernel the notebooks ask for: that it exists and that its Python
  has ipykernel and this checkout's ``helpers``;
- that the sandbox home and the workbook's state folder are writable by you;
- a throwaway sandbox (its own temporary home, stopped afterwards) answering one SigV4-signed
  call and one HTTPS publish through a custom authorizer running the workbook's own function.

The command-line tools the notebooks show (openssl, curl, aws, node) are looked for in the
venv first, then on PATH; none is needed for the sandbox path, so they are notes. The last line
is one verdict a helper at the back of the room can act on.

When run with a Python that is not this checkout's ``.venv`` while a ``.venv`` exists, it checks
the ``.venv`` (the notebooks' kernel runs there) by running itself again with it.

>>> c = Check("python", OK, "3.11.7")
>>> c.blocking
False
>>> Check("kernel", FAIL, "No such kernel named python3", "make venv").blocking
True
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers import REPO_ROOT
from helpers.tables import text_table

OK, FAIL, NOTE = "ok", "FAIL", "note"
MINIMUM = (3, 11)  # as scripts/venv.py: ipykernel 7.4.0 requires Python >=3.11
INSTALL_FIX = "`make venv` (online) or `make venv OFFLINE=wheels/` (from the instructor's wheelhouse)"
TOOLS = {
    "openssl": ("version", "optional: notebook 02 shows the matching openssl lines"),
    "curl": ("--version", "optional: notebooks show the curl line beside requests"),
    "aws": ("--version", "optional: the CLI lines; `make venv` installs it into .venv"),
    "node": ("--version", "optional: only for Node.js Lambda handlers"),
}


@dataclass
class Check:
    name: str
    status: str  # ok | FAIL | note
    detail: str
    fix: str = ""

    @property
    def blocking(self) -> bool:
        return self.status == FAIL


def _venv_script():
    spec = importlib.util.spec_from_file_location("_workbook_venv_script", REPO_ROOT / "scripts" / "venv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(cmd: list[str], timeout: float = 30, cwd: str | None = None) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              cwd=cwd or tempfile.gettempdir())
    except (OSError, subprocess.TimeoutExpired):
        return None


def _first_line(out: subprocess.CompletedProcess | None) -> str:
    if out is None:
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


# --- each check ------------------------------------------------------------------------------------

def check_host() -> Check:
    from helpers.host import problem
    found = problem(REPO_ROOT)
    return Check("platform", FAIL, found, "see docs/setup.md") if found else Check("platform", OK, sys.platform)


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MINIMUM:
        return Check("python", FAIL, f"{version} is too old; the workbook needs 3.11 or newer",
                     "install Python 3.12 (python.org, brew, apt), then `make venv PYTHON=python3.12`")
    where = "this checkout's .venv" if _is_own_venv() else sys.prefix
    return Check("python", OK, f"{version} ({where})")


def _is_own_venv() -> bool:
    return Path(sys.prefix).resolve() == (REPO_ROOT / ".venv").resolve()


def check_packages(script=None) -> list[Check]:
    script = script or _venv_script()
    out = _run([sys.executable, "-c", script.INSPECT])
    try:
        info = json.loads(out.stdout.strip().splitlines()[-1])
    except (AttributeError, ValueError, IndexError):
        return [Check("packages", FAIL, "could not list this Python's packages", INSTALL_FIX)]
    wrong = script.problems(info, root=str(REPO_ROOT))
    pins = script.read_pins()
    found = [Check("packages", FAIL, "; ".join(wrong), INSTALL_FIX) if wrong
             else Check("packages", OK, f"all {len(pins)} pins of requirements.txt match, and this checkout's helpers")]
    lock = REPO_ROOT / "requirements.lock"
    if lock.exists():
        have = {script.canonical(n): v for n, v in info["packages"].items()}
        drift = [f"{n} {have[script.canonical(n)]} (lock {v})" for n, v in script.read_pins(str(lock))
                 if script.canonical(n) in have and have[script.canonical(n)] != v]
        if drift:
            found.append(Check("lock", NOTE, f"{len(drift)} package(s) differ from requirements.lock: "
                               + ", ".join(drift[:5]) + (" ..." if len(drift) > 5 else ""), INSTALL_FIX))
    return found


KERNEL_PROBE = r"""
import json, sys
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
try:
    spec = KernelSpecManager().get_kernel_spec("python3")
except NoSuchKernel:
    print(json.dumps({"error": "No such kernel named python3"})); sys.exit(0)
argv0 = spec.argv[0]
if argv0 in ("python", "python%i" % sys.version_info[0], "python%i.%i" % sys.version_info[:2]):
    argv0 = sys.executable  # jupyter_client does the same substitution
print(json.dumps({"python": argv0, "dir": spec.resource_dir}))
"""


def check_kernel() -> Check:
    out = _run([sys.executable, "-c", KERNEL_PROBE])
    if out is None or out.returncode != 0:
        return Check("kernel", FAIL, "jupyter_client is missing, so no notebook can start a kernel", INSTALL_FIX)
    try:
        spec = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Check("kernel", FAIL, f"could not read the kernel list: {_first_line(out)}", INSTALL_FIX)
    if "error" in spec:
        return Check("kernel", FAIL, spec["error"] + " (ipykernel is not installed here)", INSTALL_FIX)
    probe = _run([spec["python"], "-c", "import ipykernel, os, helpers; print(os.path.dirname(helpers.__file__))"])
    if probe is None or probe.returncode != 0:
        return Check("kernel", FAIL, f"the python3 kernel ({spec['dir']}) runs {spec['python']}, which lacks "
                     "ipykernel or the workbook's helpers",
                     f"remove that kernel (`jupyter kernelspec remove python3`), then {INSTALL_FIX}")
    if Path(probe.stdout.strip()).resolve() != (REPO_ROOT / "helpers").resolve():
        return Check("kernel", FAIL, f"the python3 kernel imports helpers from another checkout "
                     f"({probe.stdout.strip()})", f"run {INSTALL_FIX} in this checkout")
    return Check("kernel", OK, f"python3 runs {spec['python']}")


def _writable(path: Path) -> str | None:
    """Why ``path`` (a folder, existing or to be made) is not usable by this user, or None."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return f"no part of {path} exists"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if hasattr(os, "getuid") and probe == path and probe.stat().st_uid != os.getuid():
        return f"{path} belongs to another user"
    try:
        made = tempfile.mkdtemp(prefix=".doctor-", dir=probe)
        os.rmdir(made)
    except OSError as exc:
        return f"{probe} is not writable by you ({exc.strerror or exc})"
    return None


def check_homes() -> list[Check]:
    from helpers.state import default_path
    env_home = os.environ.get("IOT_SANDBOX_HOME")
    sandbox_home = Path(env_home).expanduser() if env_home else REPO_ROOT / ".workbook" / "sandbox"
    state_dir = default_path().parent
    found = []
    for name, path, variable in (("sandbox home", sandbox_home, "IOT_SANDBOX_HOME"),
                                 ("state folder", state_dir, "WORKBOOK_STATE_DIR")):
        why = _writable(path)
        if why:
            found.append(Check(name, FAIL, why, f"use your own clone (`git clone` into your home), or point "
                               f"{variable} at a folder of yours"))
        else:
            found.append(Check(name, OK, f"{path} is yours and writable"))
    return found


def check_tools() -> list[Check]:
    found = []
    venv_bin = Path(sys.executable).parent
    for tool, (flag, why) in TOOLS.items():
        candidate = venv_bin / tool
        path = str(candidate) if candidate.exists() else shutil.which(tool)
        if path:
            found.append(Check(tool, OK, f"{_first_line(_run([path, flag], timeout=20))} ({path})"))
        else:
            found.append(Check(tool, NOTE, f"not found ({why})"))
    return found


def check_state() -> Check:
    from helpers.state import WorkbookState, default_path
    if not default_path().exists():  # the doctor only looks: it never creates the state file
        return Check("workbook state", NOTE, f"none yet ({default_path()}); notebook 00 creates it")
    try:
        state = WorkbookState.load()
    except Exception as exc:  # a damaged state file is reported, not raised
        return Check("workbook state", FAIL, str(exc), "see the message")
    return Check("workbook state", OK, f"target {state.target}, region {state.region}, suffix {state.suffix}")


def check_learner_sandbox() -> Check:
    from helpers import sandbox
    settings = sandbox.status()
    if settings is None:
        return Check("your sandbox", NOTE, f"not running (home {sandbox.default_home()}); notebook 00 starts it")
    return Check("your sandbox", OK, f"running, pid {settings.pid}, {settings.endpoint_url}")


def check_orphans() -> Check:
    """Workbook resources a lost state file no longer lists (:func:`helpers.cleanup.find_orphans`)."""
    import contextlib
    import io

    from helpers import sandbox
    from helpers.cleanup import find_orphans
    from helpers.state import WorkbookState, default_path
    if not default_path().exists():
        return Check("orphans", NOTE, "not looked for (no state file yet)")
    state = WorkbookState.load()
    if state.target != "sandbox" or sandbox.status() is None:
        return Check("orphans", NOTE, "not looked for (only in a running sandbox; notebook 10 looks on AWS)")
    from helpers.workbook import open_workbook
    with contextlib.redirect_stdout(io.StringIO()):
        orphans = find_orphans(open_workbook(state=state))
    if orphans.resources:
        return Check("orphans", NOTE, orphans.summary(), "run notebooks/10-cleanup.ipynb")
    return Check("orphans", OK, "none: every workbook resource in your sandbox is recorded")


def check_throwaway_sandbox() -> Check:
    """A sandbox in a temporary home: one signed call, one HTTPS publish through a custom authorizer."""
    import requests

    from helpers import sandbox
    from helpers.workbook import FUNCTION_DIR, zip_function
    home = Path(tempfile.mkdtemp(prefix="workbook-doctor-"))
    failed = True
    try:
        settings = sandbox.ensure_running(home / "home")
        account = settings.client("sts").get_caller_identity()["Account"]
        iam, awslambda, iot = settings.client("iam"), settings.client("lambda"), settings.client("iot")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"Service": "lambda.amazonaws.com"}}]}
        role = iam.create_role(RoleName="doctor-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        function = awslambda.create_function(
            FunctionName="doctor-function", Runtime="python3.12", Role=role, Handler="lambda_function.lambda_handler",
            Code={"ZipFile": zip_function(FUNCTION_DIR)})["FunctionArn"]
        awslambda.get_waiter("function_active_v2").wait(FunctionName="doctor-function")
        authorizer = iot.create_authorizer(authorizerName="doctor-authorizer", authorizerFunctionArn=function,
                                           signingDisabled=True, status="ACTIVE")["authorizerArn"]
        awslambda.add_permission(FunctionName="doctor-function", StatementId="doctor", Action="lambda:InvokeFunction",
                                 Principal="iot.amazonaws.com", SourceArn=authorizer)
        answer = requests.post(f"https://{settings.data_endpoint}/topics/doctor/check?actionToken=allow",
                               data=b"{}", headers={"x-amz-customauthorizer-name": "doctor-authorizer"},
                               verify=str(settings.ca_bundle), timeout=60)
        if answer.status_code != 200:
            return Check("sandbox", FAIL, f"a signed call worked but the HTTPS publish answered {answer.status_code} "
                         f"{answer.text[:120]}", "tell the instructor: this is a bug, with the line above")
        failed = False
        return Check("sandbox", OK, f"a throwaway sandbox answered a signed call (account {account}) and an "
                     "HTTPS publish through a custom authorizer")
    except Exception as exc:  # anything at all: reported in one line, never raised
        return Check("sandbox", FAIL, f"a throwaway sandbox failed: {type(exc).__name__}: {str(exc)[:200]}",
                     f"see {home / 'home' / 'sandbox.log'}; if packages are wrong, {INSTALL_FIX}")
    finally:
        try:
            sandbox.stop(home / "home")
        finally:
            if not failed:  # a failed one keeps its home, so that its sandbox.log can be read
                shutil.rmtree(home, ignore_errors=True)


# --- putting it together -----------------------------------------------------------------------------

def _guarded(name: str, check) -> list[Check]:
    try:
        result = check()
    except Exception as exc:  # the doctor reports; it never crashes
        return [Check(name, FAIL, f"could not check: {type(exc).__name__}: {exc}", INSTALL_FIX)]
    return result if isinstance(result, list) else [result]


def checks(probe_sandbox: bool = True) -> list[Check]:
    report = _guarded("platform", check_host) + _guarded("python", check_python)
    if report[-1].blocking:
        return report
    report += _guarded("packages", check_packages)
    packages_ok = not any(c.blocking for c in report)
    report += _guarded("kernel", check_kernel) + _guarded("homes", check_homes) + _guarded("tools", check_tools)
    report += _guarded("workbook state", check_state)
    if not packages_ok:
        report.append(Check("sandbox", FAIL, "not tried: the packages above are missing or wrong", INSTALL_FIX))
        return report
    report += _guarded("your sandbox", check_learner_sandbox) + _guarded("orphans", check_orphans)
    if probe_sandbox and not any(c.blocking for c in report):
        report += _guarded("sandbox", check_throwaway_sandbox)
    elif probe_sandbox:
        report.append(Check("sandbox", NOTE, "not tried until the problems above are fixed"))
    return report


def verdict(report: list[Check]) -> str:
    problems = [c for c in report if c.blocking]
    if not problems and not any(c.name == "sandbox" for c in report):
        return "READY, except that no sandbox was tried (--quick): run without --quick to be sure."
    if not problems:
        return "READY: the workbook will run here (sandbox path)."
    first = problems[0]
    more = f" (+{len(problems) - 1} more above)" if len(problems) > 1 else ""
    return f"NOT READY: {first.name}: {first.detail}. Fix: {first.fix}{more}"


def main(argv: list[str] | None = None) -> int:
    own_venv = REPO_ROOT / ".venv" / "bin" / "python"
    if (own_venv.exists() and not _is_own_venv() and os.environ.get("WORKBOOK_DOCTOR_HERE") != "1"
            and os.environ.get("WORKBOOK_VENV") is None):
        print(f"(checking this checkout's .venv: running the doctor with {own_venv.relative_to(REPO_ROOT)})", flush=True)
        env = dict(os.environ, WORKBOOK_DOCTOR_HERE="1")
        return subprocess.call([str(own_venv), "-m", "helpers.doctor", *(argv or [])], cwd=REPO_ROOT, env=env)
    report = checks(probe_sandbox="--quick" not in (argv or []))
    marks = {OK: "ok  ", FAIL: "!!  ", NOTE: "--  "}
    print(text_table((marks[c.status] + c.name, c.detail + (f"  [fix: {c.fix}]" if c.blocking else ""))
                     for c in report))
    print(verdict(report))
    return 1 if any(c.blocking for c in report) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
