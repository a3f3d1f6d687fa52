"""This machine's processes and their command lines, read from Linux's ``/proc`` (standard library only).

The one reader for every place that looks for processes by what they run: the test runner's check
that no sandbox was left running (``scripts/test.py``), the browser check's clean-up
(``scripts/browser_check.py``) and the Lambda isolation tests. (The jail's process-tree killer,
``helpers/sandbox/runtime/jail.py``, reads parents rather than command lines, and must run with no
imports from this package.)

>>> import os
>>> os.getpid() in dict(running()) or not os.path.isdir("/proc")
True
"""
from __future__ import annotations

import os


def running() -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of every process that has not exited (zombies left out); [] where there is no /proc."""
    if not os.path.isdir("/proc"):
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except (OSError, IndexError):
            continue  # it exited meanwhile
        if state != b"Z":
            found.append((int(entry), argv[:-1] if argv and argv[-1] == b"" else argv))
    return found
