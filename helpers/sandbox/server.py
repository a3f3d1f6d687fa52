"""The sandbox's HTTPS stack: a threaded HTTP/1.1 server with TLS and keep-alive.

One class serves both of the sandbox's endpoints; what differs is the ``app``
it calls with each :class:`~helpers.sandbox.core.Request`:

- the API endpoint (``apiapp.ApiApp``): SigV4 check, then the service named in
  the credential scope;
- the device data endpoint (issue 3): custom authentication, then the broker.

The TLS handshake runs in the connection's own thread, never in the accept
loop, so a slow or broken client cannot stall other clients. The SNI host name
a client sent reaches the app as ``Request.server_name``; each TCP connection
gets an id (``Request.connection_id``) that stays the same across keep-alive
requests.
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

from .core import Request, Response

log = logging.getLogger("helpers.sandbox")

#: Largest request body accepted (AWS's largest here is a 50 MB zipped Lambda upload, base64 in JSON).
MAX_BODY = 70 * 1024 * 1024
#: Idle keep-alive connections are closed after this many seconds.
IDLE_TIMEOUT = 60.0

App = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "iot-custom-auth-sandbox"
    sys_version = ""
    server: "HttpsServer"

    def setup(self) -> None:
        super().setup()
        self.connection_id = str(uuid.uuid4())

    def log_message(self, fmt: str, *args) -> None:  # BaseHTTPRequestHandler writes to stderr by default
        log.debug("%s %s", self.address_string(), fmt % args)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self._send(Response.json({"message": "Malformed request body"}, 400))
            return
        if body is None:
            self.close_connection = True
            self._send(Response.json({"message": "Request entity too large"}, 413))
            return
        parts = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        req = Request(
            method=self.command,
            path=parts.path or "/",
            raw_query=parts.query,
            headers=headers,
            body=body,
            server_name=getattr(self.connection, "sni", None),
            client_address=self.client_address[:2],
            connection_id=self.connection_id,
        )
        try:
            resp = self.server.app(req)
        except Exception:  # the app's own bug: answer like AWS's InternalFailure, keep serving
            log.exception("unhandled error serving %s %s", self.command, self.path)
            resp = Response.json({"message": "Internal server error in the sandbox; see its log"}, 500,
                                 {"x-amzn-ErrorType": "InternalFailureException"})
        resp.headers.setdefault("x-amzn-RequestId", req.request_id)
        self._send(resp)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if resp.upgrade is not None:
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            self.connection.settimeout(None)
            resp.upgrade(self.rfile, self.wfile)
            return
        self.send_header("Content-Length", str(len(resp.body)))
        # head and body in one write: one TLS record, no Nagle/delayed-ACK stall between them
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(resp.body)
        self.flush_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class HttpsServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` speaking TLS; ``app(request) -> response`` answers every request."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, ssl_context: ssl.SSLContext):
        self.app = app
        self.ssl_context = ssl_context
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def finish_request(self, request: socket.socket, client_address) -> None:
        request.settimeout(10.0)  # bounded handshake
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        tls.settimeout(IDLE_TIMEOUT)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:  # connection resets etc.: not worth a traceback
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                             name=f"https-{self.port}", daemon=True)
        t.start()
        return t
