"""Start one Lambda worker in its own Linux namespaces, so it cannot outlive its worker nor see the home.

Run by :class:`helpers.sandbox.runtime.LambdaRuntime` (``python -S -E jail.py``) as::

    jail.py <sandbox-pid> <namespaces 1|0> <hide-path>... -- <worker command> <args> <parent-pid>

The last argument of the worker command is the parent pid the worker watches
(it exits when its parent changes); the jail replaces it with the pid the worker
will really see as its parent.

With unprivileged user namespaces (most Linux distributions), the jail:

1. enters a new user namespace (mapping only the caller's own uid/gid), mount
   namespace and PID namespace;
2. mounts an empty, read-only tmpfs over each ``hide-path`` (the sandbox home with its
   CA and server keys, database and credentials) and a fresh ``/proc`` that shows
   only the namespace's own processes (so ``/proc/<sandbox pid>/cwd`` leads nowhere);
3. forks the worker as PID 1 of the namespace. When PID 1 exits, the kernel kills
   every process left in the namespace, whatever session or process group it put
   itself in (``setsid``, double fork); the worker dies with this jail
   (``PR_SET_PDEATHSIG``) and the jail with the sandbox.

Without namespaces (other platforms, or a kernel that forbids them) the jail is a
child subreaper instead: orphaned descendants are re-parented to it, and it kills
all of them when the worker exits, when it is asked to stop (SIGTERM) and when the
sandbox dies (its death signal). The home is then still reachable by absolute
path (the README says so). The jail exits as the worker did (same code or signal).
"""
import ctypes
import os
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mount(source: str, target: str, fstype, flags: int, data) -> None:
    if _libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                   flags, data.encode() if data else None) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def enter_namespaces(hide: list) -> bool:
    """Unshare user, mount and PID namespaces and hide ``hide``; False when the platform does not allow it."""
    if _libc is None:
        return False
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) != 0:
        return False
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
        _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
        for path in hide:
            if os.path.isdir(path):
                _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0500")
    except OSError as exc:  # user namespace without mount rights: hiding failed, so say so and go on without
        sys.stderr.write(f"sandbox jail: namespaces unavailable ({exc}); the worker runs unjailed\n")
        return False
    return True


def descendants(root: int) -> list:
    """Pids of every process below ``root`` (from /proc; empty where there is no /proc)."""
    if not os.path.isdir("/proc"):
        return []
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants(root: "int | None" = None, rounds: int = 50) -> None:
    """SIGKILL every descendant of ``root`` (default: this process), until none is left (they may be forking
    meanwhile); the ones that are this process's own children are reaped."""
    root = os.getpid() if root is None else root
    for _ in range(rounds):
        pids = descendants(root)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:  # reap the ones re-parented to us
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass  # not our child


def _exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def main() -> None:
    sandbox_pid = int(sys.argv[1])
    split = sys.argv.index("--")
    use_namespaces, hide, command = sys.argv[2] == "1", sys.argv[3:split], sys.argv[split + 1:]
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != sandbox_pid:
        os._exit(1)
    jailed = use_namespaces and enter_namespaces(hide)
    if not jailed and _libc is not None:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # catchable: clean up the tree, then go
        signal.signal(signal.SIGTERM, lambda *_: (kill_descendants(), os._exit(1)))
        if os.getppid() != sandbox_pid:
            os._exit(1)
    jail_pid = os.getpid()
    child = os.fork()
    if child == 0:
        if jailed:
            try:
                _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
            except OSError as exc:
                sys.stderr.write(f"sandbox jail: could not mount a private /proc ({exc})\n")
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        parent = os.getppid()  # 0 in a new PID namespace
        if parent != (0 if jailed else jail_pid):
            os._exit(1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        command[-1] = str(parent)
        try:
            os.execv(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"sandbox jail: cannot run {command[0]}: {exc}\n")
            os._exit(127)
    while True:
        try:
            pid, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if not jailed:
        kill_descendants()
    _exit_like(status)


if __name__ == "__main__":
    main()
