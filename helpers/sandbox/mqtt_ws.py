"""MQTT over WebSocket on the data endpoint: ``GET /mqtt`` with a SigV4-presigned URL.

AWS IoT Core lets a client holding IAM credentials use MQTT over a secure
WebSocket: ``wss://<iot:Data-ATS endpoint>/mqtt?X-Amz-Algorithm=...`` signed
with Signature Version 4 for the service ``iotdevicegateway`` (signed header
``host``, empty payload), ``X-Amz-Security-Token`` appended *after* signing
when the credentials have a session token, WebSocket subprotocol ``mqtt``.
Sources: AWS IoT Developer Guide, "MQTT over the WebSocket protocol"
(https://docs.aws.amazon.com/iot/latest/developerguide/mqtt-ws.html) and the
AWS IoT Device SDK for Python v1, ``SigV4Core.createWebsocketEndpoint``
(aws/aws-iot-device-sdk-python, AWSIoTPythonSDK/core/protocol/connection/cores.py).

:func:`websocket_upgrade` answers the HTTP upgrade request, in this order:

1. ``405`` for a method other than GET;
2. ``400`` when it is not a WebSocket opening handshake (RFC 6455 §4.2.1:
   ``Upgrade: websocket``, ``Connection: Upgrade``, a 16-byte base64
   ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version: 13``; and, when the client
   offers subprotocols, ``mqtt`` among them);
3. ``403 {"message": "Forbidden"}`` when the presigned signature does not
   verify (the reason goes to the sandbox log and to ``AWSIotLogsV2``);
4. ``101 Switching Protocols``, after which the connection is relayed to the
   sandbox's MQTT broker: WebSocket binary frames from the client become raw
   bytes to the broker, bytes from the broker become binary frames to the
   client (MQTT 3.1.1 §6: "MQTT Control Packets MUST be sent in WebSocket
   binary data frames").

The relay is one thread with ``select``: one TLS socket must not be read and
written from two threads at once (python/cpython#76714; the race shows up as
spurious disconnects, e.g. miguelgrinberg/python-engineio#461). Client
frames larger than :data:`MAX_FRAME_PAYLOAD` are answered with close code
1009; protocol violations with 1002; text frames with 1003.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import select
import socket
import ssl
import struct
import time
import uuid

from . import core, sigv4
from .core import Request, Response

log = logging.getLogger("helpers.sandbox")

SERVICE = "iotdevicegateway"
SUBPROTOCOL = "mqtt"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
#: Largest client frame payload accepted: AWS IoT's 128 KB MQTT payload limit, with room to spare.
MAX_FRAME_PAYLOAD = 256 * 1024
#: A relay with no traffic either way for this long is closed (AWS IoT's longest keep-alive is 1200 s, x 1.5).
IDLE_LIMIT = 1800.0
#: A client that does not take our bytes within this many seconds is dropped.
WRITE_TIMEOUT = 30.0
LOG_GROUP = "AWSIotLogsV2"

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_UNSUPPORTED_DATA = 1000, 1002, 1003
CLOSE_TOO_BIG, CLOSE_INTERNAL_ERROR = 1009, 1011


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2).

    >>> accept_key("dGhlIHNhbXBsZSBub25jZQ==")   # the RFC's own example
    's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324 (RFC 6455)


def _tokens(value: str | None) -> list[str]:
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def handshake_problem(headers: dict[str, str]) -> str | None:
    """Why these (lower-case) request headers are not a WebSocket opening handshake, or None."""
    if "websocket" not in _tokens(headers.get("upgrade")):
        return ("This is the MQTT over WebSocket endpoint: the request needs 'Upgrade: websocket' and "
                "'Connection: Upgrade' headers (use an MQTT client with WebSocket transport).")
    if "upgrade" not in _tokens(headers.get("connection")):
        return "A WebSocket opening handshake needs a 'Connection: Upgrade' header."
    if headers.get("sec-websocket-version", "").strip() != "13":
        return "Only WebSocket version 13 (RFC 6455) is supported: send 'Sec-WebSocket-Version: 13'."
    key = headers.get("sec-websocket-key", "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        return "The 'Sec-WebSocket-Key' header must be 16 random bytes in base64 (RFC 6455 section 4.1)."
    offered = headers.get("sec-websocket-protocol")
    if offered is not None and SUBPROTOCOL not in _tokens(offered):
        return f"The WebSocket subprotocol must be '{SUBPROTOCOL}' (MQTT 3.1.1 section 6), not {offered!r}."
    return None


def websocket_upgrade(req: Request, ctx: core.Context, broker) -> Response:
    """Answer ``GET /mqtt``: check the handshake and the presigned SigV4 query, then relay to the broker."""
    if req.method != "GET":
        return Response.json({"message": f"The method {req.method} is not allowed on /mqtt; MQTT over WebSocket "
                                         "starts with GET"}, 405, {"Allow": "GET"})
    problem = handshake_problem(req.headers)
    if problem:
        return Response.json({"message": problem}, 400, {"Sec-WebSocket-Version": "13"})
    region = getattr(ctx, "region", None) or core.REGION
    try:
        sigv4.verify_presigned(req.method, req.path, req.raw_query, req.headers,
                               {core.ACCESS_KEY_ID: core.SECRET_ACCESS_KEY}, service=SERVICE, region=region)
    except sigv4.SignatureError as err:
        log.info("MQTT over WebSocket from %s refused: %s: %s", req.client_address[0], err.code, err.message)
        _log_refusal(ctx, req, f"{err.code}: {err.message}")
        return Response.json({"message": "Forbidden"}, 403, {"x-amzn-ErrorType": "ForbiddenException"})
    port = getattr(broker, "port", None)
    if not port:
        return Response.json({"message": "The sandbox's MQTT broker is not running"}, 503,
                             {"x-amzn-ErrorType": "ServiceUnavailableException"})
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": accept_key(req.headers["sec-websocket-key"].strip()),
    }
    if req.headers.get("sec-websocket-protocol") is not None:
        headers["Sec-WebSocket-Protocol"] = SUBPROTOCOL
    return Response(101, b"", headers, upgrade=functools.partial(bridge, broker_port=port))


def _log_refusal(ctx, req: Request, details: str) -> None:
    """An AWSIotLogsV2 entry for a refused connection (ERROR), when AWS IoT logging is on."""
    from helpers.sandbox import iot_logs

    iot_logs.write(ctx, {
        "traceId": str(uuid.uuid4()),
        "accountId": getattr(ctx, "account_id", core.ACCOUNT_ID),
        "status": "Failure",
        "eventType": "Connect",
        "protocol": "MQTT",
        "sourceIp": req.client_address[0],
        "sourcePort": req.client_address[1],
        "reason": "AUTHENTICATION_FAILURE",
        "details": f"MQTT over WebSocket (SigV4): {details}",
    }, level="ERROR")


# --- the relay -------------------------------------------------------------------------------------------

class _Close(Exception):
    """End the relay, telling the client why with a WebSocket close frame."""

    def __init__(self, code: int, reason: str = ""):
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def frame(opcode: int, payload: bytes = b"", *, mask: bytes | None = None) -> bytes:
    """One final WebSocket frame (server frames are unmasked; pass ``mask`` for a client frame).

    >>> frame(OP_BINARY, b"hi")
    b'\\x82\\x02hi'
    >>> frame(OP_BINARY, b"hi", mask=b"\\x00\\x01\\x00\\x00")
    b'\\x82\\x82\\x00\\x01\\x00\\x00hh'
    """
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, bit | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, bit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:123])


def unmask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 §5.3); the same operation masks."""
    if not data:
        return b""
    n = len(data)
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _connection_socket(rfile, wfile):
    """The connection's (TLS) socket behind the server's reader/writer."""
    sock = getattr(wfile, "_sock", None)  # socketserver's unbuffered _SocketWriter
    if sock is None:
        sock = getattr(getattr(rfile, "raw", None), "_sock", None)  # socket.SocketIO inside the BufferedReader
    if sock is None:
        raise RuntimeError("the connection's socket is not reachable from its reader/writer")
    return sock


def bridge(rfile, wfile, *, broker_port: int, broker_host: str = "127.0.0.1") -> None:
    """Relay one upgraded connection to the MQTT broker until either side closes. Never raises."""
    try:
        conn = _connection_socket(rfile, wfile)
    except RuntimeError as exc:
        log.error("MQTT over WebSocket relay cannot start: %s", exc)
        return
    relay = _Relay(conn)
    try:
        try:
            upstream = socket.create_connection((broker_host, broker_port), timeout=5.0)
        except OSError as exc:
            log.warning("MQTT over WebSocket: the broker at %s:%d is unreachable: %s", broker_host, broker_port, exc)
            relay.send(close_frame(CLOSE_INTERNAL_ERROR, "The message broker is unavailable"))
            return
        with upstream:
            upstream.settimeout(WRITE_TIMEOUT)
            relay.run(rfile, upstream)
    except (OSError, ValueError) as exc:  # resets, TLS errors, timeouts: the connection is simply over
        log.debug("MQTT over WebSocket relay ended: %s", exc)
    except Exception:  # a bug here must not kill the server thread noisily: log it once, close
        log.exception("MQTT over WebSocket relay failed")
    finally:
        try:
            conn.settimeout(5.0)  # back to blocking for the server's own clean-up
        except OSError as exc:
            log.debug("could not reset the connection's timeout: %s", exc)


def _already_read(rfile) -> bytes | None:
    """Bytes the HTTP server's reader holds past the handshake (a pipelining client); None when there are none.

    The socket is non-blocking here: ``read1`` returns what is buffered, else tries one read that
    raises SSLWantReadError when nothing has arrived.
    """
    try:
        return rfile.read1(65536)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return None


class _Relay:
    """The WebSocket side of one relayed connection: frame parsing and writing on the TLS socket."""

    def __init__(self, conn):
        self.conn = conn
        self.inbuf = bytearray()
        self.fragmented = False  # inside a fragmented data message (RFC 6455 §5.4)
        self.done = False

    def send(self, data: bytes) -> None:
        self.conn.settimeout(WRITE_TIMEOUT)
        try:
            self.conn.sendall(data)
        finally:
            self.conn.setblocking(False)

    def run(self, rfile, upstream: socket.socket) -> None:
        self.conn.setblocking(False)
        early = _already_read(rfile)
        if early == b"":
            return  # the client went away
        self.inbuf += early or b""
        self.upstream = upstream
        last_traffic = time.monotonic()
        try:
            self._consume()
            while not self.done:
                if self.conn.pending():
                    client_ready = True
                    ready = select.select([upstream], [], [], 0)[0]
                else:
                    ready = select.select([self.conn, upstream], [], [], 5.0)[0]
                    client_ready = self.conn in ready
                if client_ready:
                    try:
                        data = self.conn.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        data = None  # a TLS record is not complete yet
                    if data == b"":
                        return  # the client went away
                    if data:
                        last_traffic = time.monotonic()
                        self.inbuf += data
                        self._consume()
                if upstream in ready and not self.done:
                    data = upstream.recv(65536)
                    if not data:
                        self.send(close_frame(CLOSE_NORMAL, "The MQTT broker closed the connection"))
                        return
                    last_traffic = time.monotonic()
                    self.send(frame(OP_BINARY, data))
                if time.monotonic() - last_traffic > IDLE_LIMIT:
                    raise _Close(CLOSE_NORMAL, "Idle for too long")
        except _Close as close:
            log.debug("MQTT over WebSocket: closing with %d %s", close.code, close.reason)
            self.send(close_frame(close.code, close.reason))

    def _consume(self) -> None:
        """Handle every complete frame in ``inbuf``."""
        buf = self.inbuf
        while not self.done and len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            fin, opcode, length = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F
            if b0 & 0x70:
                raise _Close(CLOSE_PROTOCOL_ERROR, "Reserved bits set, but no extension was negotiated")
            if not b1 & 0x80:
                raise _Close(CLOSE_PROTOCOL_ERROR, "Frames from a client must be masked (RFC 6455 5.1)")
            pos = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, pos = struct.unpack_from("!H", buf, 2)[0], 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, pos = struct.unpack_from("!Q", buf, 2)[0], 10
            if opcode >= 0x8 and (not fin or length > 125):
                raise _Close(CLOSE_PROTOCOL_ERROR, "Control frames must be final and at most 125 bytes")
            if length > MAX_FRAME_PAYLOAD:
                raise _Close(CLOSE_TOO_BIG, f"A frame of {length} bytes exceeds the limit of "
                                            f"{MAX_FRAME_PAYLOAD} bytes")
            end = pos + 4 + length
            if len(buf) < end:
                return
            payload = unmask(bytes(buf[pos + 4:end]), bytes(buf[pos:pos + 4]))
            del buf[:end]
            self._handle(opcode, fin, payload)

    def _handle(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode == OP_BINARY or opcode == OP_CONTINUATION:
            if opcode == OP_BINARY and self.fragmented:
                raise _Close(CLOSE_PROTOCOL_ERROR, "A new data frame started before the fragmented one ended")
            if opcode == OP_CONTINUATION and not self.fragmented:
                raise _Close(CLOSE_PROTOCOL_ERROR, "A continuation frame with no message to continue")
            self.fragmented = not fin
            if payload:  # MQTT is a byte stream: frame boundaries do not matter to the broker
                self.upstream.sendall(payload)
        elif opcode == OP_TEXT:
            raise _Close(CLOSE_UNSUPPORTED_DATA, "MQTT must be sent in binary frames (MQTT 3.1.1 section 6)")
        elif opcode == OP_PING:
            self.send(frame(OP_PONG, payload))
        elif opcode == OP_PONG:
            pass  # an unsolicited pong is allowed and needs no answer (RFC 6455 5.5.3)
        elif opcode == OP_CLOSE:
            if len(payload) == 1:
                raise _Close(CLOSE_PROTOCOL_ERROR, "A close frame's body must be empty or start with a 2-byte code")
            self.send(frame(OP_CLOSE, payload[:2]))  # echo the status code (RFC 6455 5.5.1)
            self.done = True
        else:
            raise _Close(CLOSE_PROTOCOL_ERROR, f"Unknown WebSocket opcode {opcode:#x}")
