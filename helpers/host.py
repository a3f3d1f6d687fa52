"""Where is this running? One clear line for the two places the workbook cannot work as is.

- **Windows, natively**: the sandbox uses POSIX process groups, signals and file locks
  (``fcntl``, ``os.killpg``, ``signal.SIGKILL``), so it cannot start; the route is WSL.
- **A Windows drive under WSL** (``/mnt/c/...``): files there report mode 0777 whatever
  ``chmod`` says, so a private key can never be owner-only and the key checks refuse it;
  the route is to clone into the Linux home (``~``).

Standard library only: ``make`` and the doctor call it before anything is installed.

>>> problem("/home/ada/iot-custom-auth-workbook", system="Linux", release="6.1.0-13-amd64") is None
True
>>> print(problem("/mnt/c/Users/ada/workbook", system="Linux", release="5.15.167.4-microsoft-standard-WSL2"))
This checkout is on a Windows drive (/mnt/c/Users/ada/workbook), where files cannot be made owner-only, so the workbook's keys would be refused. Clone it into your Linux home instead: `cd ~ && git clone <the repository URL>` (see docs/setup.md, Windows).
>>> problem("C:\\\\Users\\\\ada\\\\workbook", system="Windows").startswith("The workbook does not run natively on Windows")
True
"""
from __future__ import annotations

import os
import platform
import re

SETUP_DOC = "docs/setup.md"
_WINDOWS_DRIVE = re.compile(r"^/mnt/[a-zA-Z](/|$)")


def is_wsl(release: str | None = None) -> bool:
    """True under the Windows Subsystem for Linux (its kernel release names Microsoft)."""
    release = platform.release() if release is None else release
    return "microsoft" in release.lower()


def problem(path: str | os.PathLike, system: str | None = None, release: str | None = None) -> str | None:
    """One line saying why the workbook cannot run from ``path`` on this system, or ``None``."""
    system = platform.system() if system is None else system
    if system == "Windows":
        return ("The workbook does not run natively on Windows (the sandbox needs a POSIX system). "
                "Use WSL: in PowerShell `wsl --install -d Ubuntu`, then open Ubuntu and follow "
                f"{SETUP_DOC}, Windows.")
    text = os.fspath(path)
    if system == "Linux" and _WINDOWS_DRIVE.match(text) and (release is not None or is_wsl()):
        return (f"This checkout is on a Windows drive ({text}), where files cannot be made owner-only, so the "
                "workbook's keys would be refused. Clone it into your Linux home instead: "
                f"`cd ~ && git clone <the repository URL>` (see {SETUP_DOC}, Windows).")
    return None
