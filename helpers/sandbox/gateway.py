"""The sandbox's network front: both endpoints on one asyncio loop, TLS, and the data endpoint's three protocols.

::

    client ──TCP──▶ Gateway (one loop thread; TLS with SNI kept, ALPN read after the handshake)
      API endpoint  ─────────────────────────── http11 ─▶ ApiApp (SigV4, services; in the executor)
      data endpoint ├─ ALPN "mqtt" ───────────────────────────▶ MQTT session (the broker)
                    └─ no ALPN / http/1.1 ─ http11 ─┬─ POST /topics/… ─▶ dataplane (HTTPS publish)
                                                    └─ GET /mqtt + Upgrade ─▶ WebSocketStream ─▶ MQTT session

As AWS IoT Core's port 443 does, the data endpoint serves HTTPS, MQTT over TLS
when the client negotiates ALPN ``mqtt``, and MQTT over WebSocket at ``/mqtt``
(AWS IoT developer guide, "Protocols, port mappings, and authentication",
https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html). A client
that negotiated no ALPN and whose first byte cannot start an HTTP request (an
MQTT CONNECT is ``0x10``) is closed at once: AWS serves MQTT with custom
authentication only with ALPN ``mqtt``.

Blocking work (SQLite, Lambda invocations) runs in :attr:`Gateway.executor`,
never on the loop, so one slow authorizer never holds up another client.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Awaitable, Callable

import wsproto.events as ws_events
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType

from . import http11

log = logging.getLogger("helpers.sandbox")

#: Longest TLS handshake accepted.
HANDSHAKE_TIMEOUT = 10.0
#: Threads for blocking work: room for Lambda's concurrency and the API's requests at once.
EXECUTOR_THREADS = 64
#: ALPN protocols the data endpoint offers, in its order of preference.
DATA_ALPN = ["mqtt", "http/1.1"]
#: Bytes that can begin an HTTP/1.1 request line (a method is a token; every method clients use is upper case).
_HTTP_FIRST_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")

#: ``mqtt(stream, connection)`` serves one MQTT connection from its first byte to its end.
MqttServe = Callable[[object, http11.Connection, str, object], Awaitable[None]]


class SocketStream:
    """MQTT straight over the TLS connection (an ``mqtt.broker.Stream``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first_bytes: bytes = b""):
        self.reader, self.writer, self._first = reader, writer, first_bytes

    async def read(self, max_bytes: int) -> bytes:
        if self._first:
            data, self._first = self._first[:max_bytes], self._first[max_bytes:]
            return data
        try:
            return await self.reader.read(max_bytes)
        except (ConnectionError, ssl.SSLError):
            return b""

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


class WebSocketStream:
    """MQTT in WebSocket binary messages (MQTT 3.1.1 §6, MQTT 5 §6), framed by wsproto.

    Text messages end the connection with close code 1003 (MQTT is binary), a
    frame that breaks RFC 6455 with wsproto's code (1002 mostly); pings are
    answered; a close from the client is answered and reads as end of stream.
    Size is bounded by the MQTT layer, which refuses a packet larger than AWS
    IoT's limit from its fixed header.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, leftover: bytes = b""):
        self.reader, self.writer = reader, writer
        self.ws = WsConnection(ConnectionType.SERVER)
        self._pending: collections.deque[bytes] = collections.deque()
        self._eof = False
        if leftover:
            self.ws.receive_data(leftover)

    async def read(self, max_bytes: int) -> bytes:
        while not self._pending and not self._eof:
            self._take_events()
            if self._pending or self._eof:
                break
            try:
                data = await self.reader.read(65536)
            except (ConnectionError, ssl.SSLError):
                data = b""
            self.ws.receive_data(data or None)
        if not self._pending:
            return b""
        data = self._pending.popleft()
        if len(data) > max_bytes:
            self._pending.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        return data

    def _take_events(self) -> None:
        for event in self.ws.events():
            if self._eof:
                break
            if isinstance(event, ws_events.BytesMessage):
                if event.data:
                    self._pending.append(bytes(event.data))
            elif isinstance(event, ws_events.TextMessage):
                self._send(ws_events.CloseConnection(code=1003, reason="MQTT is carried in binary messages"))
                self._eof = True
            elif isinstance(event, ws_events.Ping):
                self._send(event.response())
            elif isinstance(event, ws_events.CloseConnection):
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self._send(event.response())
                else:  # wsproto's report of a frame that breaks RFC 6455: tell the client with its code
                    self._send(ws_events.CloseConnection(code=event.code, reason=event.reason or ""))
                self._eof = True

    def _send(self, event) -> None:
        try:
            data = self.ws.send(event)
        except Exception:  # noqa: BLE001 - connection already closing
            return
        if not self.writer.is_closing():
            self.writer.write(data)

    def write(self, data: bytes) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self._send(ws_events.BytesMessage(data=data))

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        if self.ws.state is ConnectionState.OPEN:
            self._send(ws_events.CloseConnection(code=1000))
        self.writer.close()


@dataclass
class Listener:
    name: str
    port: int
    server: asyncio.AbstractServer


class Gateway:
    """One event loop, on its own thread, serving the sandbox's TLS endpoints."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.executor = concurrent.futures.ThreadPoolExecutor(EXECUTOR_THREADS, thread_name_prefix="sandbox-work")
        self._thread = threading.Thread(target=self._run, name="sandbox-gateway", daemon=True)
        self._listeners: list[Listener] = []
        self._connections: set[asyncio.Task] = set()
        self._started = False

    # --- lifecycle (any thread) ----------------------------------------------------------------------
    def start(self) -> None:
        self.loop.set_default_executor(self.executor)
        self._thread.start()
        self._started = True

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro, timeout: float = 10.0):
        """Run a coroutine on the loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def listen_api(self, sock: socket.socket, ssl_context: ssl.SSLContext, app: http11.App,
                   limits: http11.Limits | None = None) -> int:
        async def on_client(reader, writer):
            await self._track(http11.serve(reader, writer, app, http11.new_connection(writer), limits=limits))
        return self._listen("api", sock, ssl_context, on_client)

    def listen_data(self, sock: socket.socket, ssl_context: ssl.SSLContext, app: http11.App, mqtt: MqttServe,
                    limits: http11.Limits | None = None) -> int:
        async def on_client(reader, writer):
            await self._track(self._serve_data(reader, writer, app, mqtt, limits or http11.Limits()))
        return self._listen("data", sock, ssl_context, on_client)

    def _listen(self, name: str, sock: socket.socket, ssl_context: ssl.SSLContext, on_client) -> int:
        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(on_client, sock=sock, ssl=ssl_context,
                                              ssl_handshake_timeout=HANDSHAKE_TIMEOUT, limit=256 * 1024)
        server = self.call(start())
        port = sock.getsockname()[1]
        self._listeners.append(Listener(name, port, server))
        return port

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False

        async def shutdown() -> None:
            for listener in self._listeners:
                listener.server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
        try:
            self.call(shutdown(), timeout=10)
        except Exception:  # noqa: BLE001 - stopping must go on
            log.debug("gateway shutdown was not clean", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.loop.close()
        self._listeners = []

    # --- per connection (loop thread) ----------------------------------------------------------------
    async def _track(self, coro) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            await coro
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - one connection's failure never ends the others
            log.exception("connection handler failed")
        finally:
            self._connections.discard(task)

    async def _serve_data(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: http11.App,
                          mqtt: MqttServe, limits: http11.Limits) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = http11.new_connection(writer)
        ssl_object = writer.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "mqtt":
            await mqtt(SocketStream(reader, writer), conn, "mqtt", None)
            return
        try:
            first = await asyncio.wait_for(reader.read(65536), limits.idle_timeout)
        except (asyncio.TimeoutError, TimeoutError, ConnectionError, ssl.SSLError):
            first = b""
        if not first or first[0] not in _HTTP_FIRST_BYTES:
            if first:
                log.info("closed a data-endpoint connection from %s that sent non-HTTP bytes without ALPN "
                         "(MQTT needs ALPN 'mqtt' on this port)", conn.client_address[0])
            writer.close()
            return
        await http11.serve(reader, writer, app, conn, limits=limits, first_bytes=first)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; OSError (errno EADDRINUSE) when the port is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart on the same port despite TIME_WAIT
    try:
        sock.bind((host, port))
        sock.listen(256)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
