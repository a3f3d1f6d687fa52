"""Start, find and stop a sandbox from outside it: the Python API and what the CLI prints.

Usage (the same as ``eval "$(python -m helpers.sandbox start)"`` in a shell):

    from helpers import sandbox
    settings = sandbox.ensure_running()      # starts it in the background if needed
    iot = settings.client("iot")             # a boto3 client pointed at it
    sandbox.stop()

The sandbox runs detached from the terminal (its own session, output to
``sandbox.log`` in its home), so it never holds a CI pipe open.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from helpers import REPO_ROOT

from . import core, home as homes
from .app import LOG_FILE, RUNTIME_FILE, SandboxError, lock_is_held, read_runtime

START_TIMEOUT = 30.0


def default_home() -> Path:
    """``$IOT_SANDBOX_HOME``, else ``.workbook/sandbox`` in this checkout (git-ignored)."""
    env = os.environ.get("IOT_SANDBOX_HOME")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".workbook" / "sandbox"


_CLIENTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Settings:
    """How to reach a running sandbox: what the AWS CLI, boto3, curl and MQTT clients need."""

    home: Path
    pid: int
    endpoint_url: str
    data_endpoint: str
    ca_bundle: Path
    region: str = core.REGION
    account_id: str = core.ACCOUNT_ID
    #: The home's own key pair (``home.home_credentials``): nothing else is accepted. Never print the secret.
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)

    @classmethod
    def from_runtime(cls, info: dict) -> "Settings":
        home = Path(info["home"])
        try:
            credential = homes.read_credentials(home)
        except homes.HomeError as exc:
            raise SandboxError(str(exc)) from None
        if credential is None:
            raise SandboxError(f"The sandbox home {home} has no {homes.CREDENTIALS_FILE}: restart the sandbox "
                               "(python -m helpers.sandbox stop; then start).")
        return cls(
            home=home, pid=int(info["pid"]),
            endpoint_url=f"https://127.0.0.1:{info['api_port']}",
            data_endpoint=info["data_endpoint"],
            ca_bundle=Path(info["ca_bundle"]),
            access_key_id=credential.access_key_id, secret_access_key=credential.secret_access_key,
        )

    def env(self) -> dict[str, str]:
        """The standard AWS environment variables that point the CLI and boto3 at the sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_CA_BUNDLE": str(self.ca_bundle),
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def export_lines(self) -> str:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.env().items()]
        lines.append("unset AWS_SESSION_TOKEN AWS_PROFILE")
        return "\n".join(lines)

    def session(self):
        import boto3
        return boto3.session.Session(aws_access_key_id=self.access_key_id,
                                     aws_secret_access_key=self.secret_access_key, region_name=self.region)

    def watch(self, topic_filter: str, **kwargs):
        """A :class:`helpers.mqtt.MqttWatch` on this sandbox, signed with its key pair (``with`` starts it).

        The workbook's one MQTT client, as notebook 07 uses it against AWS; ``kwargs`` go to it
        (``qos``, ``on_message``, ``client_id``).
        """
        from helpers.mqtt import MqttWatch

        return MqttWatch(self.data_endpoint, self.region, (self.access_key_id, self.secret_access_key),
                         topic_filter, ca_bundle=self.ca_bundle, **kwargs)

    @cached_property
    def _clients_session(self):
        return self.session()

    def client(self, service: str, **kwargs):
        """A boto3 client for ``service`` that talks to this sandbox (``iot-data``: its data endpoint, as on AWS,
        where the iot-data client is pointed at the describe-endpoint address).

        Clients come from one session per Settings, which keeps the service models it has loaded: a client
        then costs a fifth of the CPU of one from a new session. A session is not thread-safe, so its
        clients are made one at a time; the clients themselves are."""
        endpoint = f"https://{self.data_endpoint}" if service == "iot-data" else self.endpoint_url
        with _CLIENTS_LOCK:
            return self._clients_session.client(service, endpoint_url=endpoint, verify=str(self.ca_bundle), **kwargs)


def _pid_alive(pid: int) -> bool:
    """True while the process runs; an exited process waiting to be reaped (a zombie) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all we know


def status(state_dir: Path | str | None = None) -> Settings | None:
    """The running sandbox's settings for this home, or None when none runs."""
    home = Path(state_dir).resolve() if state_dir else default_home()
    info = read_runtime(home)
    if not info or not lock_is_held(home) or not _pid_alive(int(info.get("pid", 0))):
        return None
    return Settings.from_runtime(info)


def _clean_stale(home: Path) -> str | None:
    info = read_runtime(home)
    if info and not lock_is_held(home):
        (home / RUNTIME_FILE).unlink(missing_ok=True)
        return f"cleaned up after a sandbox that stopped without shutting down (pid {info.get('pid')})"
    return None


def ensure_running(state_dir: Path | str | None = None, port: int | None = None,
                   notes: list[str] | None = None) -> Settings:
    """Start the sandbox for this home in the background unless it already runs; return its settings."""
    home = Path(state_dir).resolve() if state_dir else default_home()
    try:
        homes.secure_home(home)
    except homes.HomeError as exc:
        raise SandboxError(str(exc)) from None
    current = status(home)
    if current is not None:
        if port not in (None, 0) and f":{port}" not in current.endpoint_url:
            raise SandboxError(f"A sandbox already runs for {home} at {current.endpoint_url}, not on port {port}. "
                               "Stop it first (python -m helpers.sandbox stop) to change its port.")
        return current
    note = _clean_stale(home)
    if note and notes is not None:
        notes.append(note)
    try:
        log_fd = os.open(home / LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SandboxError(f"The sandbox home {home} cannot be written ({exc.strerror}: {exc.filename}). Make it "
                           "yours, or choose another home with --state-dir DIR or IOT_SANDBOX_HOME.") from None
    log_start = os.fstat(log_fd).st_size
    cmd = [sys.executable, "-m", "helpers.sandbox", "serve", "--state-dir", str(home)]
    if port is not None:
        cmd += ["--port", str(port)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_fd,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    finally:
        os.close(log_fd)
    threading.Thread(target=proc.wait, daemon=True).start()  # reaps it whenever it exits
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        info = read_runtime(home)
        if info and info.get("pid") == proc.pid:
            return Settings.from_runtime(info)
        if proc.poll() is not None:
            return _after_early_exit(home, proc, log_start, deadline)
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise SandboxError(f"The sandbox did not become ready within {START_TIMEOUT:.0f} s; see {home / LOG_FILE}.")


def _after_early_exit(home: Path, proc: subprocess.Popen, log_start: int, deadline: float) -> Settings:
    """Our ``serve`` ended before it was ready: another start won the race (use its sandbox), or say why, in one line."""
    while time.monotonic() < deadline and lock_is_held(home):
        current = status(home)
        if current is not None:  # a concurrent start got the home first: same home, same settings
            return current
        time.sleep(0.05)
    current = status(home)
    if current is not None:
        return current
    reason = _start_error(home, log_start)
    if reason:
        raise SandboxError(reason)
    raise SandboxError(f"The sandbox exited while starting (exit code {proc.returncode}); see {home / LOG_FILE}.")


def _start_error(home: Path, log_start: int) -> str | None:
    """The ``error: ...`` line ``serve`` printed in this run, if any (see ``__main__.main``)."""
    try:
        with open(home / LOG_FILE, "rb") as fh:
            fh.seek(log_start)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    errors = [line[len("error: "):] for line in text.splitlines() if line.startswith("error: ")]
    return errors[-1] if errors else None


def stop(state_dir: Path | str | None = None, timeout: float = 10.0) -> bool:
    """Stop the sandbox for this home; True if one was running."""
    home = Path(state_dir).resolve() if state_dir else default_home()
    info = read_runtime(home)
    if not info or not lock_is_held(home):
        _clean_stale(home)
        return False
    pid = int(info["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and lock_is_held(home):
        time.sleep(0.05)
    if lock_is_held(home):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        while lock_is_held(home) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
    # the lock goes first; wait for the process itself to finish exiting, so "stopped" means gone
    while _pid_alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.02)
    (home / RUNTIME_FILE).unlink(missing_ok=True)
    return True
