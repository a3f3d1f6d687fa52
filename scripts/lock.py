#!/usr/bin/env python3
"""Write requirements.lock: every package requirements.txt pulls in, at the version installed in .venv.

    make lock        # = make venv (ignoring the old lock), then .venv/bin/python scripts/lock.py

The lock is the tested ``.venv`` frozen, restricted to what ``requirements.txt`` needs: the
dependency graph is walked from its top-level pins through each installed package's
``Requires-Dist`` (extras and environment markers evaluated for this interpreter), plus the
build tools the ``-e .`` line needs (setuptools, wheel). Nothing else in ``.venv`` gets in,
and the project itself is never listed. It needs no network: ``make venv`` installs from the
pip cache, the index or ``OFFLINE=wheels/``, and the freeze reads only ``.venv``.

``make venv`` and ``make wheelhouse`` use the lock as constraints (``-c``), so every package
on this platform is pinned; a package only another platform needs (``appnope`` on macOS,
``pywin32``) is resolved there, within the pins.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
BUILD_TOOLS = ("setuptools", "wheel")
spec = importlib.util.spec_from_file_location("venv_script", ROOT / "scripts" / "venv.py")
venv_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(venv_script)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, metadata.Distribution]:
    return {canonical(d.metadata["Name"]): d for d in metadata.distributions() if d.metadata["Name"]}


def closure(roots: list[str], dists: dict[str, metadata.Distribution]) -> dict[str, str]:
    """``{name: version}`` of ``roots`` and everything they require here, as installed."""
    env = default_environment()
    found: dict[str, str] = {}
    todo = [(canonical(name), frozenset()) for name in roots]
    seen = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        dist = dists.get(name)
        if dist is None:
            raise SystemExit(f"{name} is required but not installed in this Python: run `make venv` first.")
        found[dist.metadata["Name"]] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not any(
                    req.marker.evaluate(dict(env, extra=extra)) for extra in (extras or {""})):
                continue
            todo.append((canonical(req.name), frozenset(req.extras)))
    return found


def oldest_supported() -> list[Version]:
    """The first release of each supported Python, 3.11.0 up to this one (Debian 12 has 3.11.2, not 3.11.7)."""
    low = venv_script.MINIMUM
    return [Version(f"3.{minor}.0") for minor in range(low[1], sys.version_info[1] + 1)]


def too_new(pins: dict[str, str], dists: dict[str, metadata.Distribution]) -> dict[str, str]:
    """Locked packages whose Requires-Python shuts out an early patch release of a supported Python."""
    found = {}
    for name in pins:
        needed = dists[canonical(name)].metadata.get("Requires-Python")
        if needed and not all(v in SpecifierSet(needed) for v in oldest_supported()):
            found[name] = needed
    return found


def replace_too_new(offenders: dict[str, str]) -> None:
    """Put into .venv the newest release of each that still installs on the oldest supported Python (pip picks it)."""
    minimum = ".".join(map(str, venv_script.MINIMUM))
    for name, needed in offenders.items():
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--no-deps",
                                  "--ignore-installed", "--only-binary=:all:", "--python-version", minimum,
                                  "--target", str(Path(tmp) / "t"), "--report", str(report), name],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{name} needs Python {needed}, and pip could not find a release for Python "
                                 f"{minimum} (offline? run `make lock` once with the network).")
            version = json.loads(report.read_text())["install"][0]["metadata"]["version"]
        print(f"{name}: installed release needs Python {needed}; locking {version}, which supports {minimum}+")
        if subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", f"{name}=={version}"],
                           stdin=subprocess.DEVNULL) != 0:
            raise SystemExit(f"Installing {name}=={version} failed (see above).")
    if subprocess.call([sys.executable, "-m", "pip", "check"], stdin=subprocess.DEVNULL) != 0:
        raise SystemExit("After that change the packages conflict (see above): fix requirements.txt, then make lock.")


def main() -> int:
    info = {"python": list(sys.version_info[:3]), "packages": {d.metadata["Name"]: d.version
                                                               for d in metadata.distributions()}}
    try:
        import helpers
        info["helpers"] = str(Path(helpers.__file__).parent)
    except ImportError:
        info["helpers"] = None
    wrong = venv_script.problems(info)
    if wrong:
        raise SystemExit(f"This Python does not match requirements.txt ({'; '.join(wrong)}): run `make venv` first.")
    dists = installed()
    roots = [name for name, _ in venv_script.read_pins()] + [t for t in BUILD_TOOLS if t in dists]
    pins = closure(roots, dists)
    pins.pop(venv_script.PROJECT, None)
    offenders = too_new(pins, dists)
    if offenders:
        replace_too_new(offenders)
        dists = installed()
        pins = closure(roots, dists)
        pins.pop(venv_script.PROJECT, None)
    python = ".".join(map(str, sys.version_info[:3]))
    lines = ["# requirements.lock: generated by `make lock` (scripts/lock.py) from requirements.txt; do not edit.",
             f"# Frozen from a .venv that matched requirements.txt, on Python {python} ({sys.platform}); every",
             f"# package here installs on Python {'.'.join(map(str, venv_script.MINIMUM))}.0 and later (Requires-Python checked).",
             "# Used as constraints (-c) by `make venv` and `make wheelhouse`."]
    lines += [f"{name}=={version}" for name, version in sorted(pins.items(), key=lambda kv: canonical(kv[0]))]
    LOCK.write_text("\n".join(lines) + "\n")
    print(f"wrote {LOCK.relative_to(ROOT)}: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
