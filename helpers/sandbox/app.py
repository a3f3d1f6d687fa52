"""The sandbox process: everything ``python -m helpers.sandbox serve`` runs.

:class:`Sandbox` owns one sandbox home and, while it runs, an exclusive lock on
it (``sandbox.lock``), so two sandboxes can never share a home. It starts:

- the gateway (``gateway.py``): one asyncio loop serving the API endpoint
  (``https://127.0.0.1:PORT``, every AWS service, SigV4) and the device data
  endpoint (``localhost:PORT``: HTTPS publish, MQTT over TLS with ALPN ``mqtt``,
  MQTT over WebSocket at ``/mqtt``), with the MQTT broker on the same loop;
- the Lambda runtime (worker processes, started on first invoke);

and then writes ``sandbox.json`` (pid and ports): its presence with a held lock
is what "running" means. On SIGTERM or SIGINT it stops all of them, removes
``sandbox.json`` and releases the lock. After a crash (kill -9) the kernel
releases the lock, so the next start sees the old ``sandbox.json`` is stale.
"""
from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

from . import core, gateway, sigv4, tls
from . import home as homes
from .apiapp import ApiApp
from .dataplane import DataApp
from .devices import DeviceHooks, serve_function
from .logstore import LogSink
from .mqtt.broker import Broker
from .store import Store

log = logging.getLogger("helpers.sandbox")

RUNTIME_FILE = "sandbox.json"
LOCK_FILE = "sandbox.lock"
DB_FILE = "state.sqlite3"
LOG_FILE = "sandbox.log"
#: Concurrent invocations of one function that run at once (each in its own worker process); further
#: ones wait for a free worker. AWS's new accounts start with reduced concurrency; 10 keeps a classroom
#: laptop responsive (README: limits).
LAMBDA_CONCURRENCY = 10


class SandboxError(Exception):
    """A sandbox could not start or be reached; the message says why and what to do."""


def service_modules() -> list:
    from .services import awslambda, iam, iot, logs, sts
    return [sts, iam, awslambda, iot, logs]


def acquire_lock(home: Path):
    """Take the home's exclusive lock or raise SandboxError naming the sandbox that holds it."""
    try:
        homes.secure_home(home)
        fh = open(home / LOCK_FILE, "a+")
    except homes.HomeError as exc:
        raise SandboxError(str(exc)) from None
    except OSError as exc:
        raise SandboxError(f"The sandbox home {home} cannot be written ({exc.strerror}: {exc.filename}). Make it "
                           "yours, or choose another home with --state-dir DIR or IOT_SANDBOX_HOME.") from None
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


def open_store(path: Path, schemas: list[str]) -> Store:
    """Open the state database, or raise SandboxError naming the file and what to do (never reset it)."""
    try:
        store = Store(path, schemas)
        problem = store.one("PRAGMA quick_check")[0]
        if problem != "ok":
            store.close()
            raise sqlite3.DatabaseError(problem)
        return store
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and ("readonly" in str(exc) or "unable to open" in str(exc)):
            raise SandboxError(f"The sandbox's database {path} cannot be written ({exc}). Make the home yours, or "
                               "choose another with --state-dir DIR or IOT_SANDBOX_HOME.") from None
        raise SandboxError(f"The sandbox's database {path} is damaged ({exc}). Move it aside to keep it "
                           f"(mv {path} {path}.damaged) and start again: the sandbox then starts empty.") from None


def _write_runtime(home: Path, info: dict) -> None:
    tmp = home / (RUNTIME_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, home / RUNTIME_FILE)


def _bind(address: tuple[str, int], what: str):
    try:
        return gateway.bind(*address)
    except OSError as exc:
        if exc.errno in (98, 48):  # EADDRINUSE on Linux / macOS
            raise SandboxError(f"Port {address[1]} on {address[0]} is already in use, so the sandbox's {what} "
                               "cannot listen there. Choose another with --port N, or --port 0 for any free "
                               "port.") from None
        raise SandboxError(f"The sandbox's {what} cannot listen on {address[0]}:{address[1]}: "
                           f"{exc.strerror or exc}") from None


class Sandbox:
    def __init__(self, home: Path, port: int | None = None, data_port: int = 0):
        self.home = Path(home).resolve()
        self.requested_port = port
        self.data_port = data_port
        self._stopped = threading.Event()
        self.gateway: gateway.Gateway | None = None
        self._lock = None
        self.broker = None
        self.runtime = None
        self.store = None
        self.ctx: core.Context | None = None

    def start(self) -> dict:
        from .runtime import LambdaRuntime

        os.umask(0o077)  # everything the sandbox writes is owner-only (database, WAL, logs, keys)
        self._lock = acquire_lock(self.home)
        try:
            (self.home / RUNTIME_FILE).unlink(missing_ok=True)  # stale from a crashed run
            try:
                credentials = homes.home_credentials(self.home)
            except homes.HomeError as exc:
                raise SandboxError(str(exc)) from None
            certs = tls.ensure_certificates(self.home)
            modules = service_modules()
            self.store = open_store(self.home / DB_FILE, [m.SCHEMA for m in modules if m.SCHEMA])
            port = self.requested_port
            if port is None:  # reuse the last port when free, so exported settings stay valid
                last = int(self.store.get_setting("api_port", "0"))
                port = last if last and _port_free(last) else 0
            # the data endpoint keeps its port too (open notebooks keep working after a restart)
            self.data_port = self.data_port or _last_free_port(self.store, "data_port")
            try:
                work_dir = homes.runtime_dir(self.home)
            except homes.HomeError as exc:
                raise SandboxError(str(exc)) from None
            self.runtime = LambdaRuntime(work_dir, hide=(self.home,), max_workers_per_function=LAMBDA_CONCURRENCY)
            shutil.copyfile(certs.ca_cert, work_dir / "ca.pem")  # public: lets handlers' SDKs trust the sandbox
            ctx = core.Context(store=self.store, runtime=self.runtime, home=self.home,
                               credentials=sigv4.CredentialStore(credentials))
            self._log_store = Store(self.home / DB_FILE)  # its own connection: log writes never hold up API reads
            ctx.logs = LogSink(self._log_store)
            ctx.iam_store = self.store
            ctx.regions = RegionContexts(self.home, ctx, [m.SCHEMA for m in modules if m.SCHEMA])
            self.ctx = ctx
            api_sock = _bind(("127.0.0.1", port), "API endpoint")
            data_sock = _bind(("127.0.0.1", self.data_port), "data endpoint")
            self.gateway = gateway.Gateway()
            self.gateway.start()
            hooks = DeviceHooks(ctx)
            self.broker = Broker(hooks)
            data_app = DataApp(ctx, self.broker, serve_function(self.broker, hooks), hooks.authorization)
            api_port = self.gateway.listen_api(api_sock, tls.server_context(certs, alpn=["http/1.1"]),
                                               ApiApp(ctx, modules))
            data_port = self.gateway.listen_data(data_sock, tls.server_context(certs, alpn=gateway.DATA_ALPN),
                                                 data_app, serve_function(self.broker, hooks))
            data_address = f"localhost:{data_port}"
            ctx.endpoints.update({"iot:Data-ATS": data_address, "iot:Data": data_address})
            from .services import awslambda
            sdk = {"AWS_ENDPOINT_URL": f"https://127.0.0.1:{api_port}", "AWS_CA_BUNDLE": str(work_dir / "ca.pem")}
            self.runtime.credential_issuer = lambda spec: awslambda.execution_credentials(ctx, spec, sdk)
            self.store.set_setting("api_port", str(api_port))
            self.store.set_setting("data_port", str(data_port))
            info = {
                "pid": os.getpid(),
                "home": str(self.home),
                "api_port": api_port,
                "data_port": data_port,
                "data_endpoint": data_address,
                "ca_bundle": str(certs.ca_cert),
                "started_at": time.time(),
            }
            gc.collect()
            gc.freeze()  # start-up's objects leave the collector's sight: no long pauses on the request path
            _write_runtime(self.home, info)
            log.info("sandbox ready: %s", info)
            return info
        except BaseException:
            self.stop()
            raise

    def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`stop`), then shut everything down."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopped.set())
        self._stopped.wait()
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        if self.gateway is not None:
            if self.broker is not None:
                try:
                    self.gateway.call(self.broker.close())
                except Exception:  # noqa: BLE001 - stopping goes on
                    log.debug("broker close failed", exc_info=True)
            self.gateway.stop()
            self.gateway = None
        self.broker = None
        if self.runtime is not None:
            self.runtime.shutdown()
            self.runtime = None
        if self.ctx is not None and self.ctx.regions is not None:
            self.ctx.regions.close()
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


class RegionContexts:
    """The sandbox's other regions: each its own database (``state-REGION.sqlite3``) and log writer,
    sharing IAM (global), the credentials, the Lambda runtime and the endpoints. Made on first use."""

    def __init__(self, home: Path, base: core.Context, schemas: list[str]):
        self.home, self.base, self.schemas = home, base, schemas
        self._lock = threading.Lock()
        self._contexts: dict[str, core.Context] = {}
        self._stores: list[Store] = []

    def get(self, region: str) -> core.Context:
        if region == self.base.region:
            return self.base
        if region not in core.REGIONS:
            raise core.AwsError("UnrecognizedClientException", f"{region!r} is not an AWS region.", 403)
        with self._lock:
            ctx = self._contexts.get(region)
            if ctx is None:
                path = self.home / f"state-{region}.sqlite3"
                store = open_store(path, self.schemas)
                log_store = Store(path)
                self._stores += [store, log_store]
                b = self.base
                ctx = core.Context(store=store, runtime=b.runtime, account_id=b.account_id, region=region,
                                   endpoints=b.endpoints, home=b.home, logs=LogSink(log_store),
                                   credentials=b.credentials, iam_store=b.iam_store or b.store, regions=self)
                self._contexts[region] = ctx
            return ctx

    def close(self) -> None:
        with self._lock:
            for ctx in self._contexts.values():
                ctx.logs.close()
            for store in self._stores:
                store.close()
            self._contexts, self._stores = {}, []
