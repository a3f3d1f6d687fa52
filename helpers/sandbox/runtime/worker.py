"""One Lambda worker process: its protocol socket, its log pipe, and how it is killed and reaped.

The engine (``engine.py``) starts each worker inside its jail (``jail.py``) and
talks to it over a socketpair: a JSON header line plus raw bytes each way. The
worker's stdout and stderr share one pipe, which is the function's log; marker
lines written by the worker around each invocation cut it into exactly that
invocation's output (:meth:`Worker.cut_log`).
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from . import jail

#: How long to wait for the rest of a dead worker's output after killing its process group.
_DRAIN_SECONDS = 1.0


# --- process helpers -------------------------------------------------------------------------

if sys.platform.startswith("linux"):
    _LIBC = ctypes.CDLL(None, use_errno=True)

    def pdeathsig() -> None:  # runs in the child between fork and exec (node workers only)
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
else:  # pragma: no cover - the sandbox targets Linux; elsewhere workers exit on socket EOF
    pdeathsig = None

#: Go's names for signals, as Lambda's "Runtime exited with error: signal: killed".
_SIGNAL_NAMES = {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
                 signal.SIGTERM: "terminated", signal.SIGBUS: "bus error", signal.SIGFPE: "floating point exception",
                 signal.SIGILL: "illegal instruction", signal.SIGINT: "interrupt", signal.SIGPIPE: "broken pipe",
                 signal.SIGHUP: "hangup", signal.SIGQUIT: "quit"}


def exit_reason(returncode: int) -> str:
    """Lambda's words for how a worker ended, from its exit code (negative: the signal that killed it)."""
    if returncode == 0:
        return "Runtime exited without providing a reason"
    if returncode < 0:
        sig = -returncode
        try:
            name = _SIGNAL_NAMES.get(signal.Signals(sig)) or signal.strsignal(sig).lower()
        except ValueError:
            name = f"signal {sig}"
        return f"Runtime exited with error: signal: {name}"
    return f"Runtime exited with error: exit status {returncode}"


def wait_readable(fd: int, seconds: float) -> bool:
    """True when ``fd`` becomes readable within ``seconds``."""
    poller = select.poll()  # not select.select: it fails for descriptors >= 1024
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(seconds * 1000))))


class Worker:
    """One worker process, its protocol socket and its log pipe. Used by one invoke at a time."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket, nonce: str, generation: int):
        self.proc, self.sock, self.generation = proc, sock, generation
        self.marker = b"\0" + nonce.encode() + b":"
        self.log_fd = proc.stdout.fileno()
        self.sock_fd = sock.fileno()
        self.log = bytearray()
        self.inbox = bytearray()
        self.log_eof = False
        self.cold = True
        self.lock = threading.Lock()
        self.reaped = False
        self.peak_mb = 0  # Max Memory Used, as last reported
        self.credentials_expire: float | None = None  # when the role credentials in its environment expire
        self.note: str | None = None  # one line for the first invocation's log (e.g. a substituted interpreter)
        self.poller = select.poll()
        self.poller.register(self.sock_fd, select.POLLIN)
        self.poller.register(self.log_fd, select.POLLIN)
        try:
            self.pidfd = os.pidfd_open(proc.pid)
            self.poller.register(self.pidfd, select.POLLIN)
        except (AttributeError, OSError):  # no pidfd (old kernel): socket EOF tells us instead
            self.pidfd = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        """True once the process has ended (without reaping it, so its group can still be killed)."""
        if self.reaped:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def wait_exit(self, seconds: float) -> None:
        """Give a worker that closed its socket a moment to exit by itself (for its true exit status)."""
        if self.pidfd is not None:
            wait_readable(self.pidfd, seconds)
            return
        deadline = time.monotonic() + seconds
        while not self.exited() and time.monotonic() < deadline:
            time.sleep(0.005)

    def signal_kill(self) -> None:
        """SIGKILL the worker and everything it started, whatever session or group it moved to.

        Safe from any thread. Its jail (``jail.py``) is PID 1's parent in a PID namespace
        (killing it ends the namespace) or, without namespaces, a child subreaper that
        keeps every orphan in its tree: the tree is killed first, then the group.
        """
        with self.lock:
            if not self.reaped:
                jail.kill_descendants(self.pid, rounds=20)
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    return  # the whole group is already gone

    def read_log(self) -> None:
        data = os.read(self.log_fd, 65536)
        if data:
            self.log += data
        else:
            self.log_eof = True
            self.poller.unregister(self.log_fd)

    def read_sock(self) -> bool:
        """Read what the worker sent; False at end-of-file."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        if data:
            self.inbox += data
            return True
        self.poller.unregister(self.sock_fd)
        return False

    def drain_sock(self) -> None:
        """Read whatever the (dead) worker sent before it went away."""
        self.sock.setblocking(False)
        try:
            while data := self.sock.recv(65536):
                self.inbox += data
        except OSError:  # nothing more without blocking (a grandchild may still hold the socket)
            return

    def take_response(self) -> tuple[dict, bytes] | None:
        newline = self.inbox.find(b"\n")
        if newline < 0:
            return None
        header = json.loads(self.inbox[:newline])
        end = newline + 1 + header["len"]
        if len(self.inbox) < end:
            return None
        body = bytes(self.inbox[newline + 1:end])
        del self.inbox[:end]
        return header, body

    def finish(self) -> int:
        """Kill the process group, collect the remaining output, reap, close. Returns the exit code."""
        if self.reaped:
            return self.proc.returncode
        self.signal_kill()
        deadline = time.monotonic() + _DRAIN_SECONDS
        while not self.log_eof and time.monotonic() < deadline:
            if wait_readable(self.log_fd, deadline - time.monotonic()):
                self.read_log()
        with self.lock:
            _, status, usage = os.wait4(self.pid, 0)
            self.proc.returncode = returncode = os.waitstatus_to_exitcode(status)
            self.reaped = True
        self.peak_mb = max(self.peak_mb, -(-usage.ru_maxrss // 1024))
        self.sock.close()
        self.proc.stdout.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        return returncode

    def cut_log(self, request_id: str) -> tuple[str, str]:
        """Split off (output before the invocation, output of the invocation) from the log buffer."""
        start = self.marker + b"START:" + request_id.encode() + b"\n"
        end = self.marker + b"END:" + request_id.encode() + b"\n"
        s = self.log.find(start)
        if s < 0:
            before, during = bytes(self.log), b""
            self.log.clear()
        else:
            e = self.log.find(end, s)
            before = bytes(self.log[:s])
            during = bytes(self.log[s + len(start):] if e < 0 else self.log[s + len(start):e])
            del self.log[:len(self.log) if e < 0 else e + len(end)]
        return before.decode("utf-8", "replace"), during.decode("utf-8", "replace")

    def has_end_marker(self, request_id: str) -> bool:
        return self.log.find(self.marker + b"END:" + request_id.encode() + b"\n") >= 0
