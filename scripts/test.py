#!/usr/bin/env python3
"""The whole test suite, as `make test` runs it, in three lanes at once, with the time of each phase.

    .venv/bin/python scripts/test.py [--lanes notebooks,unit,browser] [--workers N]

Lanes (independent: each has its own sandbox home and workbook state under build/):

- **notebooks**, one phase after another, on one sandbox (build/sandbox) and one workbook state:
  1. nbval over the stages in reading order, on the sandbox target, as a learner runs them;
  2. nbval over the stages again with the target set to ``aws`` and the standard AWS variables
     pointing at that same sandbox: the code path of a learner with a real account (nothing may
     start or touch ``helpers.sandbox``), and at the same time the re-run check: every stage meets
     what the first pass created and must reuse it and print the same (only the target's name is
     masked, ``notebooks/sanitize-aws-path.cfg``);
  3. the clean-up notebook, then the clean-up notebook again (safe to run twice in a row).
- **unit**: pytest over tests/, helpers/ and functions/ (doctests included), spread over N worker
  processes by pytest-xdist; the browser check is left to its own lane.
- **browser**: tests/test_browser.py, JupyterLab in a headless Chromium (skips, saying why, without
  Chromium).

Each lane writes its output to build/test-logs/<lane>.log; a failed lane's log is printed in full
at the end, a passed lane's last line. Whatever happens, every sandbox the lanes started is
stopped and every lane's process group ended, so the suite leaves no process running.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUILD = ROOT / "build"
LOGS = BUILD / "test-logs"
NBVAL = ["-m", "pytest", "--nbval", "--nbval-current-env", "-o", "addopts=-p no:cacheprovider",
         "-o", "testpaths="]
LANES = ("notebooks", "unit", "browser")


@dataclass
class Phase:
    label: str
    seconds: float = 0.0
    ok: bool | None = None  # None: not run (an earlier phase of its lane failed)


@dataclass
class Lane:
    name: str
    log: Path
    phases: list[Phase] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    stopping: bool = False

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.phases)

    def run(self, label: str, cmd: list[str], env: dict[str, str]) -> bool:
        """One phase: cmd with its output appended to the lane's log, in a process group of its own."""
        phase = Phase(label)
        self.phases.append(phase)
        if self.stopping:
            phase.ok = False
            return False
        started = time.monotonic()
        with self.log.open("a") as out:
            out.write(f"== {label}\n$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            self.procs.append(proc)
            rc = proc.wait()
        phase.seconds, phase.ok = time.monotonic() - started, rc == 0
        print(f"   {self.name}: {label}: {'passed' if phase.ok else 'FAILED'} in {phase.seconds:.0f} s", flush=True)
        return phase.ok

    def check(self, label: str, problem: str | None) -> bool:
        """A check the lane makes itself (no process): recorded as a phase, its problem in the log."""
        phase = Phase(label, ok=problem is None)
        self.phases.append(phase)
        if problem:
            with self.log.open("a") as out:
                out.write(f"== {label}\nFAILED: {problem}\n")
            print(f"   {self.name}: {label}: FAILED: {problem}", flush=True)
        return phase.ok

    def skipped(self, label: str) -> None:
        self.phases.append(Phase(label, ok=None))

    def stop(self, grace: float = 30.0) -> None:
        """End the running phase: SIGINT first, so that pytest runs its teardown (fixtures stop the sandboxes
        they started), then SIGKILL for whatever of its process group is left after `grace` seconds."""
        self.stopping = True
        running = [proc for proc in self.procs if proc.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + grace
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def base_env(home: Path, state: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(IOT_SANDBOX_HOME=str(home), WORKBOOK_STATE_DIR=str(state))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def notebook_paths() -> tuple[list[str], list[str]]:
    """(the stages in reading order, the clean-up notebook): paths relative to the repository."""
    notebooks = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    cleanup = [nb for nb in notebooks[-1:] if "cleanup" in nb]
    return [nb for nb in notebooks if nb not in cleanup], cleanup


def aws_path_sanitizer() -> Path:
    """sanitize.cfg followed by the aws-path rules, as the one file nbval takes."""
    text = "".join((ROOT / "notebooks" / name).read_text() + "\n"
                   for name in ("sanitize.cfg", "sanitize-aws-path.cfg"))
    fd, path = tempfile.mkstemp(prefix="sanitize-", suffix=".cfg", dir=BUILD)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(path)


def notebooks_lane(lane: Lane) -> None:
    from helpers import sandbox

    home, state = BUILD / "sandbox", BUILD / "workbook-state"
    unused = BUILD / "aws-path-no-sandbox"
    env = base_env(home, state)
    stages, cleanup = notebook_paths()
    sanitize = ["--nbval-sanitize-with", "notebooks/sanitize.cfg"]
    steps = ["sandbox target, in order", "its sandbox still runs", "aws code path, same state again (re-run)",
             "nothing touched the sandbox", "clean-up", "clean-up again"]
    try:
        if not stages or not lane.run(steps[0], [sys.executable, *NBVAL, *sanitize, *stages], env):
            return
        # The aws code path: boto3's own configuration from the standard variables, which point at
        # the sandbox the first pass used; a sandbox home that must never come to exist.
        settings = sandbox.status(home)
        if not lane.check(steps[1], None if settings else f"no sandbox runs in {home} after the first pass"):
            return
        shutil.rmtree(unused, ignore_errors=True)
        aws_env = dict(env, **settings.env(), WORKBOOK_TARGET="aws",
                       WORKBOOK_ALLOW_SANDBOX_AS_AWS="1", IOT_SANDBOX_HOME=str(unused))
        masked = aws_path_sanitizer()
        try:
            passed = lane.run(steps[2], [sys.executable, *NBVAL, "--nbval-sanitize-with", str(masked), *stages],
                              aws_env)
        finally:
            masked.unlink()
        problem = f"{unused} was created: the aws target started or used a sandbox" if unused.exists() else None
        if not (lane.check(steps[3], problem) and passed):
            return
        for label in steps[4:]:
            if not cleanup or not lane.run(label, [sys.executable, *NBVAL, *sanitize, *cleanup], env):
                return
    finally:
        for label in steps[len(lane.phases):]:
            lane.skipped(label)
        sandbox.stop(home)


def sandboxes_under(base: Path) -> list[Path]:
    """The homes of the running sandboxes whose home is below base (from /proc; none where there is no /proc)."""
    from helpers import processes

    homes = []
    for _, args in processes.running():
        if b"helpers.sandbox" in args and b"serve" in args and b"--state-dir" in args[:-1]:
            home = Path(os.fsdecode(args[args.index(b"--state-dir") + 1]))
            if home.is_relative_to(base):
                homes.append(home)
    return homes


def pytest_lane(lane: Lane, label: str, base: Path, args: list[str], env: dict[str, str]) -> None:
    """pytest with its temporary folders in base, then a check that its tests left no sandbox running (each
    one found is stopped: a test that died before its teardown, or an interrupted run)."""
    from helpers import sandbox

    base.mkdir(parents=True, exist_ok=True)  # pytest makes --basetemp itself, but not its parents
    try:
        lane.run(label, [sys.executable, "-m", "pytest", f"--basetemp={base / 'tmp'}", *args], env)
    finally:
        left = sandboxes_under(base)
        for home in left:
            sandbox.stop(home)
        if not lane.stopping:
            lane.check("no sandbox left running", f"{len(left)} left running, now stopped: {', '.join(map(str, left))}"
                       if left else None)


def unit_lane(lane: Lane, workers: int, notebooks_lane_too: bool) -> None:
    # Its own sandbox home and state: the notebooks lane owns build/sandbox and build/workbook-state.
    base = BUILD / "unit"
    env = base_env(base / "sandbox", base / "workbook-state")
    if notebooks_lane_too:  # tests/test_workbook_aws_path.py's whole-workbook run: the notebooks lane does it
        env["WORKBOOK_AWS_PATH_IN_NOTEBOOKS_LANE"] = "1"
    # loadfile: a module's tests stay together on one worker, so its sandbox fixture starts once
    spread = ["-n", str(workers), "--dist", "loadfile"] if workers > 1 else []
    pytest_lane(lane, f"pytest, {workers} worker(s)" if workers > 1 else "pytest", base,
                ["-q", "--durations=10", *spread, "--ignore=tests/test_browser.py"], env)


def browser_lane(lane: Lane) -> None:
    base = BUILD / "browser"
    env = base_env(base / "sandbox", base / "workbook-state")
    pytest_lane(lane, "JupyterLab in Chromium", base, ["-q", "-rs", "tests/test_browser.py"], env)


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default=",".join(LANES), help="which lanes to run (default: all)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("TEST_WORKERS", "4")),
                        help="pytest-xdist workers for the unit lane (default 4, or $TEST_WORKERS; 1: no xdist)")
    args = parser.parse_args(argv)
    chosen = [name for name in args.lanes.split(",") if name]
    unknown = sorted(set(chosen) - set(LANES))
    if unknown:
        parser.error(f"unknown lane(s) {', '.join(unknown)}: choose from {', '.join(LANES)}")
    os.chdir(ROOT)
    LOGS.mkdir(parents=True, exist_ok=True)
    lanes = {name: Lane(name, LOGS / f"{name}.log") for name in chosen}
    for lane in lanes.values():
        lane.log.write_text("")
    work = {"notebooks": notebooks_lane, "browser": browser_lane,
            "unit": lambda lane: unit_lane(lane, args.workers, "notebooks" in lanes)}
    print(f"== {len(lanes)} lane(s) at once: {', '.join(lanes)}; output in {LOGS.relative_to(ROOT)}/", flush=True)
    started = time.monotonic()
    # a CI's timeout or `kill` (SIGTERM) stops the lanes as Ctrl+C does, their sandboxes included
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    threads = [threading.Thread(target=work[name], args=(lane,), name=name, daemon=True)
               for name, lane in lanes.items()]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    except KeyboardInterrupt:
        print("== interrupted: stopping every lane", flush=True)
        stoppers = [threading.Thread(target=lane.stop) for lane in lanes.values()]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        for thread in threads:
            thread.join(60)
        return 130
    total = time.monotonic() - started

    for lane in lanes.values():
        if not lane.ok:
            print(f"\n== {lane.name}: its log ({lane.log.relative_to(ROOT)})", flush=True)
            print(lane.log.read_text(errors="replace"), flush=True)
    print("\n== time per phase (lanes ran at once)")
    for lane in lanes.values():
        for phase in lane.phases:
            status = {True: "passed", False: "FAILED", None: "not run"}[phase.ok]
            print(f"   {lane.name:<9} {phase.label:<45} {phase.seconds:6.1f} s  {status}")
        print(f"   {lane.name:<9} {'(last line of its log)':<45} {last_line(lane.log)[:90]}")
    failed = [name for name, lane in lanes.items() if not lane.ok]
    print(f"== {'FAILED: ' + ', '.join(failed) if failed else 'all passed'} in {total:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
