#!/usr/bin/env python3
"""The keeper of ``.venv``: what ``make venv`` does, and what every other make target checks first.

    python3 scripts/venv.py check                 # make run/test/lab: is .venv usable? (never installs into one)
    python3 scripts/venv.py ensure [--offline W]  # make venv: create or complete .venv, online or from a wheelhouse

Rules:

- A ``.venv`` whose packages match every pin in ``requirements.txt`` (and which has this
  checkout's ``helpers`` installed) is accepted as it is, however it was made: by make, by the
  README's plain commands, from a wheelhouse, copied. Nothing is installed, nothing goes online.
- ``check`` never installs into an existing ``.venv``: when something is missing or at the
  wrong version it says what, and the two ways to fix it (``make venv`` online,
  ``make venv OFFLINE=wheels/`` from a wheelhouse). Only when there is no usable ``.venv`` at
  all (a fresh clone) does it create one, saying so in one line first.
- A ``.venv`` whose Python does not run (a failed creation, a copy from another machine) or is
  older than the supported minimum is removed and made again, with one line saying why.
- The Python that creates ``.venv`` is checked first: too old gets one line naming the
  versions that work and how to get one; no ``venv``/``ensurepip`` names the package to install.

This file runs on the Python it checks, so it uses only the standard library and syntax that an
old Python 3 can still parse, to be able to tell that Python it is too old.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

MINIMUM = (3, 11)  # ipykernel 7.4.0 and ipython 9 require Python >=3.11
#: Tried in this order when PYTHON is not given and python3 is too old.
CANDIDATES = ("python3", "python3.13", "python3.12", "python3.11", "python3.14")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
LOCK = os.path.join(ROOT, "requirements.lock")
PROJECT = "iot-custom-auth-workbook"
FIX = "Fix: `make venv` (online), or `make venv OFFLINE=wheels/` from a wheelhouse (see README, For instructors)."
HOW_TO_GET_PYTHON = ("Get one: macOS `brew install python@3.12` (or python.org); Debian/Ubuntu/WSL "
                     "`sudo apt install python3 python3-venv` (Ubuntu 22.04, whose python3 is 3.10: `sudo apt install python3.11 "
                     "python3.11-venv`); Fedora `sudo dnf install python3`; then run "
                     "`make venv PYTHON=python3.12` (the name of the one you installed).")

# Run inside a venv's Python: what it is and what it has. Kept to syntax any Python 3 parses.
INSPECT = r"""
import json, os, sys
out = {"python": list(sys.version_info[:3]), "prefix": sys.prefix, "base_prefix": sys.base_prefix,
       "packages": {}, "helpers": None}
try:
    from importlib import metadata
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out["packages"][name] = dist.version
except Exception:
    pass
try:
    import helpers
    out["helpers"] = os.path.dirname(os.path.abspath(helpers.__file__))
except Exception:
    pass
print(json.dumps(out))
"""


def say(line):
    print(line, flush=True)


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path=REQUIREMENTS):
    """``[(name, version)]`` for every ``name==version`` line (comments, options and markers aside)."""
    pins = []
    with open(path) as handle:
        for raw in handle:
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
            if match:
                pins.append((match.group(1), match.group(3)))
    return pins


def venv_dir():
    return os.environ.get("WORKBOOK_VENV") or os.path.join(ROOT, ".venv")


def venv_python(venv):
    if os.name == "nt":
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def inspect(venv):
    """What the venv's Python reports, or ``None`` when it does not run."""
    python = venv_python(venv)
    if not os.path.exists(python):
        return None
    try:
        # Run from a neutral folder so `import helpers` finds the installed one, not the cwd's.
        out = subprocess.run([python, "-c", INSPECT], cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        return json.loads(out.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def problems(info, pins=None, root=ROOT):
    """Why this venv cannot run the workbook: one short phrase per problem (empty when it can)."""
    pins = read_pins() if pins is None else pins
    have = {canonical(name): version for name, version in info["packages"].items()}
    found = []
    for name, version in pins:
        installed = have.get(canonical(name))
        if installed is None:
            found.append("%s missing (pinned %s)" % (name, version))
        elif installed != version:
            found.append("%s %s installed, %s pinned" % (name, installed, version))
    if canonical(PROJECT) not in have:
        found.append("this project (the `-e .` line) is not installed")
    elif info.get("helpers") is None:
        found.append("`import helpers` fails")
    elif os.path.realpath(info["helpers"]) != os.path.realpath(os.path.join(root, "helpers")):
        found.append("`helpers` is imported from another checkout (%s)" % info["helpers"])
    return found


def too_old(info):
    return tuple(info["python"][:2]) < MINIMUM


def python_version(python):
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return tuple(int(part) for part in out.stdout.decode().strip().split("."))


def choose_python(requested):
    """The interpreter to create .venv with, or exit with one line saying what to install."""
    minimum = "%d.%d" % MINIMUM
    if requested:
        path = shutil.which(requested) or (requested if os.path.exists(requested) else None)
        if path is None:
            sys.exit("`%s` is not on this machine: the workbook needs Python %s or newer. %s"
                     % (requested, minimum, HOW_TO_GET_PYTHON))
        version = python_version(path)
        if version is None:
            sys.exit("`%s` does not run. %s" % (requested, HOW_TO_GET_PYTHON))
        if version[:2] < MINIMUM:
            sys.exit("Python %s (%s) is too old: the workbook needs Python %s or newer. %s"
                     % (".".join(map(str, version)), requested, minimum, HOW_TO_GET_PYTHON))
        return path, version
    seen = []
    for name in CANDIDATES:
        path = shutil.which(name)
        version = python_version(path) if path else None
        if version is None:
            continue
        if version[:2] >= MINIMUM:
            if seen:
                say("Python %s (%s) is too old for the workbook; using %s (Python %s) instead."
                    % (seen[0][1], seen[0][0], name, ".".join(map(str, version))))
            return path, version
        seen.append((name, ".".join(map(str, version))))
    if seen:
        sys.exit("Python %s (%s) is too old: the workbook needs Python %s or newer. %s"
                 % (seen[0][1], seen[0][0], minimum, HOW_TO_GET_PYTHON))
    sys.exit("No python3 on this machine: the workbook needs Python %s or newer. %s" % (minimum, HOW_TO_GET_PYTHON))


def check_can_make_venvs(python, version):
    """venv and ensurepip are separate packages on Debian/Ubuntu; say which one is missing."""
    for module in ("venv", "ensurepip"):
        out = subprocess.run([python, "-c", "import %s" % module], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if out.returncode != 0:
            minor = "python%d.%d" % version[:2]
            sys.exit("Python %s has no `%s` module, so it cannot make .venv. Install it: Debian/Ubuntu/WSL "
                     "`sudo apt install %s-venv`; elsewhere install Python from python.org or your package "
                     "manager (it includes ensurepip)." % (".".join(map(str, version)), module, minor))


def host_problem():
    """Windows natively, or a Windows drive under WSL: one line, before anything else happens."""
    sys.path.insert(0, ROOT)
    try:
        from helpers.host import problem
    except Exception:  # an old Python cannot import it; the version check then speaks
        return None
    finally:
        sys.path.pop(0)
    return problem(ROOT)


def remove_venv(venv, why):
    say("Replacing .venv: %s." % why)
    shutil.rmtree(venv, ignore_errors=True)
    if os.path.exists(venv):
        sys.exit("Could not remove %s: delete it by hand, then run `make venv` again." % venv)


def create(venv, python_request):
    python, version = choose_python(python_request)
    check_can_make_venvs(python, version)
    out = subprocess.run([python, "-m", "venv", venv], stdin=subprocess.DEVNULL)
    if out.returncode != 0 or inspect(venv) is None:
        shutil.rmtree(venv, ignore_errors=True)  # never leave a half-made .venv behind to confuse the next run
        sys.exit("Creating .venv with %s failed (see above); nothing was left behind." % python)


def pip_install(venv, offline, use_lock):
    """Install the build tools, then requirements.txt, from the index or only from a wheelhouse."""
    python = venv_python(venv)
    source = []
    if offline:
        wheels = os.path.abspath(offline)
        if not os.path.isdir(wheels) or not any(name.endswith(".whl") for name in os.listdir(wheels)):
            sys.exit("%s holds no wheels: build one with `make wheelhouse` on a machine with the network." % offline)
        source = ["--no-index", "--find-links", wheels]
    constraints = ["-c", LOCK] if use_lock and os.path.exists(LOCK) else []
    # setuptools 64 is the first to build an editable `-e .` without a setup.py; the lock pins the exact ones.
    tools = ["setuptools>=64", "wheel"]
    base = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"] + source + constraints
    # The build tools first, so that `-e .` is built with them (no build isolation, which would fetch
    # setuptools from the index every time).
    steps = [base + tools, base + ["--no-build-isolation", "-r", REQUIREMENTS]]
    for step in steps:
        if subprocess.run(step, cwd=ROOT, stdin=subprocess.DEVNULL).returncode != 0:
            where = ("the wheelhouse %s lacks something (rebuild it with `make wheelhouse` for this Python)" % offline
                     if offline else "pip could not install (no network? then `make venv OFFLINE=wheels/`)")
            sys.exit("Installing into .venv failed: %s." % where)


def usable_or_replace(venv):
    """Info of a venv that runs a supported Python; removes (with a line) one that does not."""
    if not os.path.exists(venv):
        return None
    info = inspect(venv)
    if info is None:
        remove_venv(venv, "its Python does not run (a failed creation, or copied from another machine)")
        return None
    if too_old(info):
        remove_venv(venv, "it was made with Python %s, and the workbook needs %d.%d or newer"
                    % (".".join(map(str, info["python"])), MINIMUM[0], MINIMUM[1]))
        return None
    return info


def ensure(venv, python_request, offline, use_lock=True):
    problem = host_problem()
    if problem:
        sys.exit(problem)
    info = usable_or_replace(venv)
    if info is None:
        create(venv, python_request)
        info = inspect(venv)
    missing = problems(info)
    if not missing:
        say(".venv matches requirements.txt (Python %s)." % ".".join(map(str, info["python"])))
        return 0
    if os.path.exists(venv) and info["packages"] and canonical(PROJECT) in map(canonical, info["packages"]):
        say(".venv needs: %s." % "; ".join(missing))
    pip_install(venv, offline, use_lock)
    still = problems(inspect(venv))
    if still:
        sys.exit(".venv still does not match requirements.txt: %s." % "; ".join(still))
    say(".venv is ready (%s)." % ("installed from %s, offline" % offline if offline else "installed from the index"))
    return 0


def check(venv, python_request, offline):
    problem = host_problem()
    if problem:
        sys.exit(problem)
    info = usable_or_replace(venv)
    if info is None:
        say("No usable .venv yet: creating it now (%s)." % (
            "from %s, offline" % offline if offline else
            "from the index, so this once it needs the network; offline: `make venv OFFLINE=wheels/`"))
        return ensure(venv, python_request, offline)
    missing = problems(info)
    if missing:
        sys.exit(".venv does not match requirements.txt: %s. %s" % ("; ".join(missing), FIX))
    return 0


def main(argv):
    if not argv or argv[0] not in ("check", "ensure"):
        print(__doc__)
        return 2
    options = {"--python": "", "--offline": ""}
    rest = argv[1:]
    use_lock = "--no-lock" not in rest
    rest = [arg for arg in rest if arg != "--no-lock"]
    while rest:
        key = rest.pop(0)
        if key not in options or not rest:
            print(__doc__)
            return 2
        options[key] = rest.pop(0)
    venv = venv_dir()
    if argv[0] == "check":
        return check(venv, options["--python"], options["--offline"])
    return ensure(venv, options["--python"], options["--offline"], use_lock)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
