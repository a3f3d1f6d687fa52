#!/usr/bin/env python3
"""Download everything the workbook installs into one folder, for a class without network.

    make wheelhouse                                   # wheels/ for this Python and platform
    make wheelhouse WHEELS=usb/wheels PYTHONS="3.11 3.12" PLATFORMS="manylinux2014_x86_64 macosx_11_0_arm64"

Then, on each machine, with the network off: ``make venv OFFLINE=usb/wheels``.

What goes in: every package of ``requirements.txt``, pinned by ``requirements.lock``
(``-c``), and the build tools (setuptools, wheel) the ``-e .`` line needs. What never goes
in: this project. The ``-e .`` line is left out of the download, so pip never zips the
working tree (with its ``.venv``, keys, CA key and state); the project is installed from
the checkout itself. A second run into the same folder keeps what is there
(``--exists-action i``), never stops at a prompt.

For another Python or platform, pip is asked for wheels only (``--only-binary=:all:``),
as it must be when the interpreter is not this one; each PLATFORMS entry is a wheel
platform tag (``manylinux2014_x86_64``, ``manylinux2014_aarch64``, ``macosx_11_0_arm64``,
``macosx_10_9_x86_64``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements.txt"
LOCK = ROOT / "requirements.lock"


def external_requirements() -> str:
    """requirements.txt without its ``-e``/local lines: only what comes from an index."""
    kept = []
    for line in REQUIREMENTS.read_text().splitlines():
        bare = line.split("#", 1)[0].strip()
        if bare.startswith(("-e", "--editable", ".", "/")) or bare.startswith("file:"):
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def download_commands(dest: Path, requirements: Path, pythons: list[str], platforms: list[str]) -> list[list[str]]:
    base = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--exists-action", "i",
            "--dest", str(dest), "-r", str(requirements), "setuptools>=64", "wheel"]
    if LOCK.exists():
        base += ["-c", str(LOCK)]
    if not pythons and not platforms:
        return [base]
    commands = []
    for python in pythons or [".".join(map(str, sys.version_info[:2]))]:
        for platform in platforms or [None]:
            command = base + ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
            if platform:
                command += ["--platform", platform]
            commands.append(command)
    return commands


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default="wheels")
    parser.add_argument("--python-versions", default="", help="e.g. '3.11 3.12' (default: this Python)")
    parser.add_argument("--platforms", default="", help="wheel platform tags (default: this platform)")
    args = parser.parse_args(argv)
    dest = Path(args.dest).expanduser()
    if not dest.is_absolute():
        dest = Path.cwd() / dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(external_requirements())
        for command in download_commands(dest, requirements, args.python_versions.split(), args.platforms.split()):
            print("+ pip download " + " ".join(command[command.index("--dest"):]).replace(str(requirements),
                                                                                             "requirements.txt"),
                  flush=True)
            if subprocess.call(command, cwd=tmp, stdin=subprocess.DEVNULL) != 0:
                print("pip download failed (see above): is the index reachable? For another Python or platform, "
                      "a package may have no wheel there.", file=sys.stderr)
                return 1
    ours = [p.name for p in dest.iterdir() if p.name.lower().startswith(("iot-custom-auth", "iot_custom_auth"))]
    if ours:  # never ship the working tree (keys, state, .venv) as a "package"
        for name in ours:
            os.remove(dest / name)
        print(f"removed {', '.join(ours)}: the project is installed from the checkout, never from the wheelhouse")
    files = sorted(p for p in dest.iterdir() if p.is_file())
    size = sum(p.stat().st_size for p in files) / 1e6
    print(f"{dest}: {len(files)} files, {size:.0f} MB. Install with the network off: make venv OFFLINE={args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
