"""The sandbox process: everything ``python -m helpers.sandbox serve`` runs.

:class:`Sandbox` owns one sandbox home and, while it runs, an exclusive lock on
it (``sandbox.lock``), so two sandboxes can never share a home. It starts:

- the API endpoint (``https://127.0.0.1:PORT``, every AWS service, SigV4);
- the device data endpoint (``https://localhost:PORT``, custom auth);
- the MQTT broker (``127.0.0.1:PORT``);
- the Lambda runtime (worker processes, started on first invoke);

and then writes ``sandbox.json`` (pid and ports): its presence with a held lock
is what "running" means. On SIGTERM or SIGINT it stops all of them, removes
``sandbox.json`` and releases the lock. After a crash (kill -9) the kernel
releases the lock, so the next start sees the old ``sandbox.json`` is stale.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from . import core, tls
from .apiapp import ApiApp
from .broker import Broker
from .dataplane import DataApp
from .server import HttpsServer
from .services.logs import LogSink
from .store import Store

log = logging.getLogger("helpers.sandbox")

RUNTIME_FILE = "sandbox.json"
LOCK_FILE = "sandbox.lock"
DB_FILE = "state.sqlite3"
LOG_FILE = "sandbox.log"


class SandboxError(Exception):
    """A sandbox could not start or be reached; the message says why and what to do."""


def service_modules() -> list:
    from .services import awslambda, iam, iot, logs, sts
    return [sts, iam, awslambda, iot, logs]


def acquire_lock(home: Path):
    """Take the home's exclusive lock or raise SandboxError naming the sandbox that holds it."""
    home.mkdir(parents=True, exist_ok=True)
    fh = open(home / LOCK_FILE, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        info = read_runtime(home) or {}
        raise SandboxError(f"A sandbox is already running for {home} (pid {info.get('pid', '?')}). "
                           "Use it (python -m helpers.sandbox env), or stop it first "
                           "(python -m helpers.sandbox stop), or pick another --state-dir.") from None
    return fh


def lock_is_held(home: Path) -> bool:
    path = home / LOCK_FILE
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def read_runtime(home: Path) -> dict | None:
    try:
        return json.loads((home / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_runtime(home: Path, info: dict) -> None:
    tmp = home / (RUNTIME_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, home / RUNTIME_FILE)


def _bind(address: tuple[str, int], app, ssl_context, what: str) -> HttpsServer:
    try:
        return HttpsServer(address, app, ssl_context)
    except OSError as exc:
        if exc.errno in (98, 48):  # EADDRINUSE on Linux / macOS
            raise SandboxError(f"Port {address[1]} on {address[0]} is already in use, so the sandbox's {what} "
                               "cannot listen there. Choose another with --port N, or --port 0 for any free "
                               "port.") from None
        raise


class Sandbox:
    def __init__(self, home: Path, port: int | None = None, data_port: int = 0, mqtt_port: int = 0):
        self.home = Path(home).resolve()
        self.requested_port = port
        self.data_port = data_port
        self.mqtt_port = mqtt_port
        self._stopped = threading.Event()
        self._servers: list[HttpsServer] = []
        self._lock = None
        self.broker = None
        self.runtime = None
        self.store = None
        self.ctx: core.Context | None = None

    def start(self) -> dict:
        from .runtime import LambdaRuntime

        self._lock = acquire_lock(self.home)
        try:
            (self.home / RUNTIME_FILE).unlink(missing_ok=True)  # stale from a crashed run
            certs = tls.ensure_certificates(self.home)
            ssl_context = tls.server_context(certs)
            modules = service_modules()
            self.store = Store(self.home / DB_FILE, [m.SCHEMA for m in modules if getattr(m, "SCHEMA", "")])
            port = self.requested_port
            if port is None:  # reuse the last port when free, so exported settings stay valid
                last = int(self.store.get_setting("api_port", "0"))
                port = last if last and _port_free(last) else 0
            # the data endpoint and the broker keep their ports too (open notebooks keep working after a restart)
            self.data_port = self.data_port or _last_free_port(self.store, "data_port")
            self.mqtt_port = self.mqtt_port or _last_free_port(self.store, "mqtt_port")
            self.runtime = LambdaRuntime(self.home / "lambda")
            ctx = core.Context(store=self.store, runtime=self.runtime, home=self.home)
            self._log_store = Store(self.home / DB_FILE)  # its own connection: log writes never hold up API reads
            ctx.logs = LogSink(self._log_store)
            self.ctx = ctx
            self.broker = self._start_broker()
            data_server = _bind(("127.0.0.1", self.data_port), DataApp(ctx, self.broker), ssl_context,
                                "data endpoint")
            api_server = _bind(("127.0.0.1", port), ApiApp(ctx, modules), ssl_context, "API endpoint")
            self._servers = [api_server, data_server]
            data_address = f"localhost:{data_server.port}"
            ctx.endpoints.update({"iot:Data-ATS": data_address, "iot:Data": data_address})
            for server in self._servers:
                server.serve_in_thread()
            self.store.set_setting("api_port", str(api_server.port))
            self.store.set_setting("data_port", str(data_server.port))
            self.store.set_setting("mqtt_port", str(self.broker.port))
            info = {
                "pid": os.getpid(),
                "home": str(self.home),
                "api_port": api_server.port,
                "data_port": data_server.port,
                "data_endpoint": data_address,
                "mqtt_port": self.broker.port,
                "ca_bundle": str(certs.ca_cert),
                "started_at": time.time(),
            }
            _write_runtime(self.home, info)
            log.info("sandbox ready: %s", info)
            return info
        except BaseException:
            self.stop()
            raise

    def _start_broker(self) -> Broker:
        broker = Broker("127.0.0.1", self.mqtt_port)
        try:
            broker.start()
        except OSError as exc:
            raise SandboxError(f"The MQTT broker could not listen on 127.0.0.1:{self.mqtt_port}: {exc}") from None
        return broker

    def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`stop`), then shut everything down."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopped.set())
        self._stopped.wait()
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []
        if self.runtime is not None:
            self.runtime.shutdown()
            self.runtime = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.ctx is not None and self.ctx.logs is not None:
            self.ctx.logs.close()
            self._log_store.close()
            self.ctx.logs = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._lock is not None:
            if (read_runtime(self.home) or {}).get("pid") == os.getpid():
                (self.home / RUNTIME_FILE).unlink(missing_ok=True)
            self._lock.close()
            self._lock = None


def _last_free_port(store, setting: str) -> int:
    """The port this home last used for ``setting`` when it is free now, else 0 (any free port)."""
    last = int(store.get_setting(setting, "0") or 0)
    return last if last and _port_free(last) else 0


def _port_free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        # as the servers bind: a port whose old connections linger in TIME_WAIT is free to listen on
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
