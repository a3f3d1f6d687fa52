"""HTTP/1.1 for both of the sandbox's endpoints: h11's framing on asyncio streams.

h11 (https://h11.readthedocs.io) parses and writes the bytes: request line,
headers, Content-Length and chunked bodies, keep-alive, the switch to another
protocol after ``101``. This module adds what an endpoint exposed to learners'
tools needs on top, each refused with ``400`` and the connection closed:

- ``Content-Length`` together with ``Transfer-Encoding`` (RFC 9112 §6.1 lets a
  server reject it; h11 would let Transfer-Encoding win, the classic request
  smuggling shape);
- h11's own refusals: conflicting or negative ``Content-Length``, a bad chunk
  size, a missing ``Host`` on HTTP/1.1, bytes outside VCHAR in the target;
- a request head larger than :attr:`Limits.max_head_bytes`, or one that does not
  arrive within :attr:`Limits.head_timeout`.

An app answers in two steps so that nothing is buffered for a request that will
be refused anyway: :meth:`App.early` sees the request head (``body`` empty) and
may answer at once; a declared or received body larger than :attr:`App.max_body`
gets ``413`` from its ``Content-Length``, before it is read. Then
:meth:`App.respond` answers the whole request.

A response with ``upgrade`` set (``101 Switching Protocols``) hands the
connection to that coroutine with the bytes the client already sent after the
request head.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Awaitable, Callable, Protocol
from urllib.parse import urlsplit

import h11

from .core import Request, Response

log = logging.getLogger("helpers.sandbox")

SERVER_HEADER = b"iot-custom-auth-sandbox"


@dataclass
class Limits:
    #: Request line plus headers (AWS's own front ends refuse heads of this order of size).
    max_head_bytes: int = 16 * 1024
    #: A request head must be complete this many seconds after its first byte.
    head_timeout: float = 10.0
    #: An idle keep-alive connection is closed after this many seconds.
    idle_timeout: float = 60.0
    #: Each read of a request body must make progress within this many seconds.
    body_timeout: float = 30.0
    #: After refusing a request from its head: at most this much of its body is read and dropped, ...
    linger_bytes: int = 1024 * 1024
    #: ... waiting at most this long for each part, so that the client gets to read the answer.
    linger_seconds: float = 2.0


@dataclass
class Connection:
    """What an app may know about the connection a request came on."""

    client_address: tuple[str, int]
    server_name: str | None
    connection_id: str


class App(Protocol):
    max_body: int

    def early(self, req: Request) -> Response | None: ...

    async def respond(self, req: Request) -> Response: ...


Upgrade = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


def error_response(status: int, message: str, error_type: str | None = None) -> Response:
    headers = {"x-amzn-ErrorType": error_type} if error_type else {}
    return Response.json({"message": message}, status, headers)


class _Closed(Exception):
    """The client went away or timed out: nothing more to answer."""


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: App, conn: Connection, *,
                limits: Limits | None = None, first_bytes: bytes = b"") -> None:
    """Serve HTTP/1.1 requests on one connection until it closes; never raises for a client's fault."""
    limits = limits or Limits()
    h = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_bytes)
    if first_bytes:
        h.receive_data(first_bytes)
    try:
        while True:
            request = await _next_request(h, reader, limits)
            if request is None:
                return
            req = _request(request, conn)
            problem = _framing_problem(request)
            if problem:
                await _send(writer, h, error_response(400, problem, "BadRequestException"), close=True)
                return
            resp = app.early(req)
            if resp is None:
                declared = _content_length(request)
                if declared is not None and declared > app.max_body:
                    resp = _too_large(declared, app.max_body)
            if resp is not None:  # answered from the head: the body is never read, so the connection ends
                await _send(writer, h, resp, close=True)
                await _linger(reader, limits)
                return
            if h.client_is_waiting_for_100_continue:
                writer.write(h.send(h11.InformationalResponse(status_code=100, headers=[])))
            body = await _read_body(h, reader, limits, app.max_body)
            if body is None:
                await _send(writer, h, _too_large(None, app.max_body), close=True)
                await _linger(reader, limits)
                return
            req.body = body
            try:
                resp = await app.respond(req)
            except Exception:  # the sandbox's own bug: AWS's InternalFailure, and keep serving others
                log.exception("unhandled error serving %s %s", req.method, req.path)
                resp = error_response(500, "Internal server error in the sandbox; see its log (sandbox.log)",
                                      "InternalFailureException")
            resp.headers.setdefault("x-amzn-RequestId", req.request_id)
            if resp.upgrade is not None and resp.status == 101:
                writer.write(h.send(h11.InformationalResponse(status_code=101, headers=_headers(resp),
                                                              reason=b"Switching Protocols")))
                await writer.drain()
                leftover, _ = h.trailing_data
                await resp.upgrade(reader, writer, bytes(leftover))
                return
            await _send(writer, h, resp, close=False, head_only=req.method == "HEAD")
            if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                return
            h.start_next_cycle()
    except h11.RemoteProtocolError as exc:
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                await _send(writer, h, error_response(exc.error_status_hint, f"Bad request: {exc}",
                                                      "BadRequestException"), close=True)
            except (h11.LocalProtocolError, ConnectionError, _Closed):
                pass
    except (_Closed, ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        _close(writer)


async def _next_request(h: h11.Connection, reader: asyncio.StreamReader, limits: Limits) -> h11.Request | None:
    """The next request head: idle up to ``idle_timeout``, then the whole head within ``head_timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.head_timeout if h.trailing_data[0] else None
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            timeout = limits.idle_timeout if deadline is None else deadline - loop.time()
            data = await _read(reader, max(timeout, 0.0))
            if deadline is None:
                deadline = loop.time() + limits.head_timeout
            h.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            return event
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}", 400)


async def _read(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """One read, ended by :class:`_Closed` after ``timeout`` seconds (a timer, cheaper than asyncio.wait_for,
    which makes a task per call)."""
    task = asyncio.current_task()
    expired = []

    def expire() -> None:
        expired.append(True)
        task.cancel()
    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await reader.read(65536)
    except asyncio.CancelledError:
        if expired:
            raise _Closed("timed out") from None
        raise
    finally:
        timer.cancel()


async def _linger(reader: asyncio.StreamReader, limits: Limits) -> None:
    """After refusing a request whose body is still coming, read and drop a bounded amount of it before
    closing: closing with unread data makes the kernel reset the connection, and the client may then lose
    the answer before reading it (nginx's "lingering close"). Nothing is kept."""
    left = limits.linger_bytes
    try:
        while left > 0:
            data = await _read(reader, limits.linger_seconds)
            if not data:
                return
            left -= len(data)
    except (_Closed, ConnectionError, OSError):
        return


async def _read_body(h: h11.Connection, reader: asyncio.StreamReader, limits: Limits, max_body: int) -> bytes | None:
    chunks, total = [], 0
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            h.receive_data(await _read(reader, limits.body_timeout))
            continue
        if isinstance(event, h11.Data):
            total += len(event.data)
            if total > max_body:
                return None
            chunks.append(event.data)
            continue
        if isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        if isinstance(event, h11.ConnectionClosed):
            raise _Closed("closed mid-body")
        raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a request body", 400)


def _request(event: h11.Request, conn: Connection) -> Request:
    headers: dict[str, str] = {}
    for name, value in event.headers:  # h11 lower-cases names; repeated headers are joined as RFC 9110 §5.3 allows
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    target = event.target.decode("ascii")  # h11 accepts only visible ASCII in the target
    parts = urlsplit(target)
    return Request(method=event.method.decode("ascii"), path=parts.path or "/", raw_query=parts.query,
                   headers=headers, body=b"", server_name=conn.server_name, client_address=conn.client_address,
                   connection_id=conn.connection_id)


def _framing_problem(event: h11.Request) -> str | None:
    names = [name for name, _ in event.headers]
    if b"transfer-encoding" in names and b"content-length" in names:
        return ("A request may not carry both Content-Length and Transfer-Encoding (RFC 9112 section 6.1); "
                "send one of them.")
    return None


def _content_length(event: h11.Request) -> int | None:
    for name, value in event.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is digits, and that repeated values agree
    return None


def _too_large(declared: int | None, limit: int) -> Response:
    size = f"{declared} bytes" if declared is not None else "larger than that"
    return Response.json({"message": f"Request entity too large: the body is {size}; this endpoint accepts at "
                                     f"most {limit} bytes."}, 413,
                         {"x-amzn-ErrorType": "RequestEntityTooLargeException"})


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _headers(resp: Response) -> list[tuple[bytes, bytes]]:
    out = [(b"server", SERVER_HEADER)]
    for name, value in resp.headers.items():
        out.append((name.encode("latin-1"), str(value).encode("latin-1")))
    return out


async def _send(writer: asyncio.StreamWriter, h: h11.Connection, resp: Response, *, close: bool,
                head_only: bool = False) -> None:
    headers = _headers(resp)
    if close:
        headers.append((b"connection", b"close"))
    headers.append((b"content-length", str(len(resp.body)).encode()))
    # head and body in one write: one TLS record, no Nagle/delayed-ACK stall between them
    out = h.send(h11.Response(status_code=resp.status, headers=headers, reason=_reason(resp.status)))
    if resp.body and not head_only:
        out += h.send(h11.Data(data=resp.body))
    out += h.send(h11.EndOfMessage())
    writer.write(out)
    try:
        await writer.drain()
    except ConnectionError:
        raise _Closed("client went away") from None


def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
    except Exception:  # noqa: BLE001 - the transport may already be gone
        pass


def new_connection(writer: asyncio.StreamWriter) -> Connection:
    peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
    ssl_object = writer.get_extra_info("ssl_object")
    return Connection(client_address=tuple(peer[:2]), server_name=getattr(ssl_object, "sni", None),
                      connection_id=str(uuid.uuid4()))
