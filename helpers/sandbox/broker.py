"""The sandbox's MQTT 3.1.1 broker: a small, real broker on asyncio streams.

It runs its own event loop in a background thread, so the (threaded, not
asyncio) sandbox server can host it and publish into it from any thread:

>>> with Broker() as broker:                       # binds 127.0.0.1, a free port
...     broker.publish("sandbox/hello", b"hi", qos=1, retain=True)
...     broker.stats()["retained"]
1

Ordinary clients (paho-mqtt, mosquitto_sub) connect with plain TCP to
``127.0.0.1:broker.port``. Real AWS IoT Core only speaks MQTT over TLS (port
8883, or 443 with ALPN ``mqtt``, which custom authentication requires); the
sandbox keeps MQTT on loopback in plain TCP by default. Pass an
``ssl.SSLContext`` as ``ssl_context`` to serve MQTT over TLS instead.

What is implemented (MQTT 3.1.1, OASIS standard, 2014):

- CONNECT/CONNACK (protocol level 4, and 3 = MQTT 3.1 for old clients), an
  optional ``authenticate`` hook, keep-alive (1.5 x the client's value),
  last-will messages, duplicate client ids (the older connection is dropped,
  as in AWS IoT and §3.1.4);
- SUBSCRIBE/SUBACK with ``+``/``#`` filters, UNSUBSCRIBE/UNSUBACK, PINGREQ,
  DISCONNECT;
- PUBLISH at QoS 0 and 1 (PUBACK). The QoS a subscriber receives is the
  minimum of the published QoS and the QoS granted to its subscription (§3.8.4);
- retained messages: the last retained message of a topic goes to every later
  matching subscriber with the RETAIN flag set; a retained PUBLISH with an
  empty payload deletes it (§3.3.1.3).

Deliberate limits, modelled on AWS IoT Core: QoS 2 is not supported (AWS does
not answer it either); a client asking for it is disconnected. Payloads above
128 KB and topics above 256 bytes are refused as AWS does. Every session is a
clean session (a ``clean session = 0`` CONNECT is accepted but nothing is kept
across connections; CONNACK says "session present = 0").
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import os
import socket
import ssl
import struct
import threading
import uuid
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

#: AWS IoT Core: "The payload for every publish request is limited to 128 KB."
MAX_PAYLOAD_BYTES = 128 * 1024
#: AWS IoT Core: topic "limited to 256 bytes of UTF-8 encoded characters".
MAX_TOPIC_BYTES = 256

# Control packet types (MQTT 3.1.1 §2.2.1).
CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
PUBREC, PUBREL, PUBCOMP = 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

# CONNACK return codes (§3.2.2.3).
CONNACK_ACCEPTED = 0
CONNACK_BAD_PROTOCOL = 1
CONNACK_BAD_CLIENT_ID = 2
CONNACK_BAD_CREDENTIALS = 4
CONNACK_NOT_AUTHORIZED = 5

SUBACK_FAILURE = 0x80


class BrokerError(OSError):
    """The broker could not start (e.g. its port is in use), or is not running.

    An ``OSError``, so callers that already handle socket errors catch it too.
    """


class ProtocolError(Exception):
    """A client broke the protocol: the broker closes its connection (§4.8)."""


@dataclass
class Message:
    """One application message, as published or as received by a subscriber."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False

    def to_json_line(self) -> str:
        """One JSON object on one line; binary payloads are base64-encoded.

        >>> Message("a/b", b"hi", 1, False).to_json_line()
        '{"topic": "a/b", "qos": 1, "retain": false, "payload": "hi", "payloadEncoding": "utf-8"}'
        >>> Message("a/b", b"\\x00\\xff", 0, True).to_json_line()
        '{"topic": "a/b", "qos": 0, "retain": true, "payload": "AP8=", "payloadEncoding": "base64"}'
        """
        try:
            text, encoding = self.payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.payload).decode("ascii"), "base64"
        return json.dumps({"topic": self.topic, "qos": self.qos, "retain": self.retain,
                           "payload": text, "payloadEncoding": encoding}, ensure_ascii=False)

    @classmethod
    def from_json_line(cls, line: str) -> "Message":
        """The inverse of :meth:`to_json_line`."""
        d = json.loads(line)
        if d.get("payloadEncoding") == "base64":
            payload = base64.b64decode(d["payload"])
        else:
            payload = d["payload"].encode("utf-8")
        return cls(d["topic"], payload, int(d["qos"]), bool(d["retain"]))


# --- topic names and filters (§4.7) ---------------------------------------

def topic_name_error(topic: str) -> str | None:
    """Why ``topic`` cannot be published to, or None when it is fine."""
    if not topic:
        return "a topic name must not be empty"
    if "+" in topic or "#" in topic:
        return f"topic name {topic!r} contains a wildcard (+ or #): wildcards are only for subscriptions"
    if "\x00" in topic:
        return "a topic name must not contain the null character"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"topic name is longer than {MAX_TOPIC_BYTES} bytes of UTF-8"
    return None


def topic_filter_error(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid subscription filter, or None."""
    if not topic_filter:
        return "a topic filter must not be empty"
    if "\x00" in topic_filter:
        return "a topic filter must not contain the null character"
    if len(topic_filter.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"topic filter is longer than {MAX_TOPIC_BYTES} bytes of UTF-8"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return (f"in topic filter {topic_filter!r}, '#' must be a whole level and the last one "
                    "(like 'sensors/#')")
        if "+" in level and level != "+":
            return f"in topic filter {topic_filter!r}, '+' must be a whole level (like 'sensors/+/temp')"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a (valid) filter matches a topic name (§4.7.1, §4.7.2).

    >>> topic_matches("a/+/c", "a/b/c"), topic_matches("a/#", "a"), topic_matches("#", "$SYS/x")
    (True, True, False)
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels) or (f != "+" and f != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


# --- wire encoding (§1.5, §2) ---------------------------------------------

def _utf8(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("!H", len(b)) + b


def _packet(first_byte: int, body: bytes) -> bytes:
    n, length = len(body), bytearray()
    while True:
        digit, n = n % 128, n // 128
        length.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([first_byte]) + bytes(length) + body


def _publish_packet(topic: str, payload: bytes, qos: int, retain: bool, packet_id: int) -> bytes:
    body = _utf8(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return _packet((PUBLISH << 4) | (qos << 1) | int(retain), body)


class _Reader:
    """Cursor over one packet's body."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError("packet shorter than its fields")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string is not valid UTF-8") from None

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


# --- one client connection --------------------------------------------------

class _Session:
    def __init__(self, broker: "Broker", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.broker, self.reader, self.writer = broker, reader, writer
        self.client_id = ""
        self.subscriptions: dict[str, int] = {}   # filter -> granted QoS
        self.inflight: set[int] = set()           # QoS 1 packet ids awaiting PUBACK
        self.will: Message | None = None
        self.keepalive = 0
        self.closed = False
        self._next_id = 0

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)

    def deliver(self, msg: Message, qos: int, retain: bool) -> None:
        if self.closed:
            return
        packet_id = 0
        if qos:
            packet_id = self._new_packet_id()
            self.inflight.add(packet_id)
        self.send(_publish_packet(msg.topic, msg.payload, qos, retain, packet_id))
        self.broker._delivered += 1

    def _new_packet_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self.inflight:
                return self._next_id
        raise ProtocolError("client has 65535 unacknowledged QoS 1 messages")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


class Broker:
    """An MQTT 3.1.1 broker on its own event-loop thread.

    ``authenticate(client_id, username, password) -> bool`` (optional) is
    called on each CONNECT, on the broker's thread; False answers CONNACK
    "not authorized" (return code 5) and closes the connection.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 ssl_context: ssl.SSLContext | None = None,
                 authenticate: Callable[[str, str | None, bytes | None], bool] | None = None):
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.authenticate = authenticate
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[_Session] = set()
        self._by_client_id: dict[str, _Session] = {}
        self._retained: dict[str, Message] = {}
        self._tasks: set[asyncio.Task] = set()
        self._lock = threading.Lock()
        self._published = 0
        self._delivered = 0
        self._acked = 0

    # --- lifecycle (any thread) ---

    def start(self, timeout: float = 5.0) -> int:
        """Bind, start serving in a background thread, and return the bound port."""
        with self._lock:
            if self._thread is not None:
                raise BrokerError("this broker is already started")
            sock = self._bind()
            self.port = sock.getsockname()[1]
            self._loop = asyncio.new_event_loop()
            started = threading.Event()
            failure: list[BaseException] = []

            def run() -> None:
                asyncio.set_event_loop(self._loop)
                try:
                    self._server = self._loop.run_until_complete(asyncio.start_server(
                        self._on_client, sock=sock, ssl=self.ssl_context))
                except Exception as exc:  # reported to the caller of start()
                    failure.append(exc)
                    sock.close()
                    return
                finally:
                    started.set()
                self._loop.run_forever()

            self._thread = threading.Thread(target=run, name=f"mqtt-broker-{self.port}", daemon=True)
            self._thread.start()
            if not started.wait(timeout) or failure:
                self._thread.join(timeout)
                self._loop.close()
                self._thread = self._loop = None
                raise BrokerError(f"the MQTT broker could not start on {self.host}:{self.port}: "
                                  f"{failure[0] if failure else 'timed out'}")
            log.debug("MQTT broker listening on %s:%d", self.host, self.port)
            return self.port

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        if os.name == "posix":   # restart on the same port despite TIME_WAIT; never steals a live port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            if exc.errno in (98, 48, 10048):   # EADDRINUSE on Linux, macOS, Windows
                raise BrokerError(f"port {self.port} on {self.host} is already in use: stop the program "
                                  "using it or choose another port") from None
            raise BrokerError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        sock.setblocking(False)
        return sock

    def stop(self) -> None:
        """Close every client connection and the listener; harmless if not running."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            if threading.current_thread() is thread:
                raise BrokerError("Broker.stop() cannot be called from the broker's own thread")
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(5)
                loop.close()
                self._loop = self._thread = self._server = None

    def __enter__(self) -> "Broker":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    # --- thread-safe calls into the loop ---

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                timeout: float = 5.0, wait: bool = True) -> None:
        """Publish from any thread, as if a client had published it.

        Returns once the message is handed to every current matching subscriber
        (and stored, or cleared when ``payload`` is empty, if ``retain``). With
        ``wait=False`` it returns once the message is queued on the broker's loop,
        in order, without waiting for the loop to route it (the HTTPS publish path
        uses this: it saves a thread hand-off per message).
        """
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (AWS IoT Core does not support QoS {qos})")
        problem = topic_name_error(topic)
        if problem:
            raise ValueError(problem)
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        msg = Message(topic, bytes(payload), qos, bool(retain))
        if wait:
            self._call(self._route, msg, timeout=timeout)
            return
        loop = self._loop
        if loop is None:
            raise BrokerError("the MQTT broker is not running (call start() first)")
        try:
            loop.call_soon_threadsafe(self._route, msg)
        except RuntimeError:
            raise BrokerError("the MQTT broker was stopped") from None

    def stats(self) -> dict:
        """Counters: messages published, PUBLISH packets sent to subscribers, and state."""
        def snapshot() -> dict:
            return {"published": self._published, "delivered": self._delivered, "acked": self._acked,
                    "clients": len(self._sessions), "retained": len(self._retained),
                    "subscriptions": sum(len(s.subscriptions) for s in self._sessions)}
        if self._loop is None:
            return snapshot()
        return self._call(snapshot)

    def retained(self) -> dict[str, Message]:
        """A copy of the retained messages, by topic."""
        return self._call(lambda: dict(self._retained))

    def _call(self, fn: Callable, *args, timeout: float = 5.0):
        loop = self._loop
        if loop is None:
            raise BrokerError("the MQTT broker is not running (call start() first)")
        if threading.current_thread() is self._thread:
            return fn(*args)

        async def run():
            return fn(*args)
        try:
            return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)
        except RuntimeError as exc:
            if loop.is_closed():
                raise BrokerError("the MQTT broker was stopped") from None
            raise exc
        except concurrent.futures.TimeoutError:
            state = "it was stopped" if self._loop is not loop else "it is overloaded"
            raise BrokerError(f"the MQTT broker did not answer within {timeout} s ({state})") from None

    # --- the broker proper (event-loop thread only) ---

    def _route(self, msg: Message) -> None:
        """Deliver to current subscribers; store or clear it if retained (§3.3.1.3)."""
        self._published += 1
        if msg.retain:
            if msg.payload:
                self._retained[msg.topic] = msg
            else:
                self._retained.pop(msg.topic, None)
        for session in list(self._sessions):
            granted = [q for f, q in session.subscriptions.items() if topic_matches(f, msg.topic)]
            if granted:   # overlapping filters: one copy, at the highest granted QoS (§3.3.5)
                session.deliver(msg, min(msg.qos, max(granted)), retain=False)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.close()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)   # let the transports finish closing
        if self._server is not None:
            await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        session = _Session(self, reader, writer)
        clean_exit = False
        try:
            clean_exit = await self._serve(session)
        except (ProtocolError, asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError,
                ssl.SSLError) as exc:
            log.debug("MQTT client %r disconnected: %s", session.client_id, exc or type(exc).__name__)
        except asyncio.CancelledError:
            clean_exit = True   # broker shutting down: no will messages
        finally:
            self._tasks.discard(task)
            self._sessions.discard(session)
            if self._by_client_id.get(session.client_id) is session:
                del self._by_client_id[session.client_id]
            if session.will is not None and not clean_exit:
                self._route(session.will)
            session.close()

    async def _read_packet(self, session: _Session, timeout: float | None) -> tuple[int, int, bytes]:
        first = (await asyncio.wait_for(session.reader.readexactly(1), timeout))[0]
        length, multiplier = 0, 1
        for _ in range(4):
            digit = (await session.reader.readexactly(1))[0]
            length += (digit & 0x7F) * multiplier
            multiplier *= 128
            if not digit & 0x80:
                break
        else:
            raise ProtocolError("malformed remaining length")
        if length > MAX_PAYLOAD_BYTES + 2 + 2 + MAX_TOPIC_BYTES * 4 + 64:
            raise ProtocolError(f"packet of {length} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte payload limit")
        return first >> 4, first & 0x0F, await session.reader.readexactly(length)

    async def _serve(self, session: _Session) -> bool:
        """Run one connection; True when it ended with DISCONNECT (no will)."""
        ptype, _, body = await self._read_packet(session, timeout=10)
        if ptype != CONNECT:
            raise ProtocolError("the first packet must be CONNECT")
        if not self._connect(session, _Reader(body)):
            await session.writer.drain()
            return True
        while not session.closed:
            timeout = session.keepalive * 1.5 if session.keepalive else None
            ptype, flags, body = await self._read_packet(session, timeout)
            if ptype == DISCONNECT:
                session.will = None
                return True
            self._handle(session, ptype, flags, _Reader(body))
            await session.writer.drain()
        return False

    def _connect(self, session: _Session, r: _Reader) -> bool:
        protocol, level = r.text(), r.u8()
        flags, session.keepalive = r.u8(), r.u16()
        if (protocol, level) not in (("MQTT", 4), ("MQIsdp", 3)):
            session.send(_packet(CONNACK << 4, bytes([0, CONNACK_BAD_PROTOCOL])))
            return False
        if flags & 0x01:
            raise ProtocolError("CONNECT reserved flag is set")
        client_id = r.text()
        will = None
        if flags & 0x04:
            will_topic, will_payload = r.text(), r.binary()
            will_qos = (flags >> 3) & 0x03
            if will_qos > 1 or topic_name_error(will_topic):
                raise ProtocolError("unsupported will QoS or invalid will topic")
            will = Message(will_topic, will_payload, will_qos, bool(flags & 0x20))
        username = r.text() if flags & 0x80 else None
        password = r.binary() if flags & 0x40 else None
        if not client_id and not flags & 0x02:
            session.send(_packet(CONNACK << 4, bytes([0, CONNACK_BAD_CLIENT_ID])))
            return False
        if self.authenticate is not None and not self.authenticate(client_id, username, password):
            session.send(_packet(CONNACK << 4, bytes([0, CONNACK_NOT_AUTHORIZED])))
            return False
        session.client_id = client_id or f"sandbox-{uuid.uuid4().hex[:12]}"
        session.will = will
        previous = self._by_client_id.get(session.client_id)
        if previous is not None:   # AWS IoT and §3.1.4: the new connection wins
            previous.close()
            self._sessions.discard(previous)
        self._by_client_id[session.client_id] = session
        self._sessions.add(session)
        session.send(_packet(CONNACK << 4, bytes([0, CONNACK_ACCEPTED])))
        return True

    def _handle(self, session: _Session, ptype: int, flags: int, r: _Reader) -> None:
        if ptype == PUBLISH:
            qos, retain = (flags >> 1) & 0x03, bool(flags & 0x01)
            if qos > 1:
                raise ProtocolError(f"PUBLISH with QoS {qos}: AWS IoT Core supports only QoS 0 and 1")
            topic = r.text()
            problem = topic_name_error(topic)
            if problem:
                raise ProtocolError(problem)
            packet_id = r.u16() if qos else 0
            payload = r.rest()
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES} bytes")
            self._route(Message(topic, payload, qos, retain))
            if qos:
                session.send(_packet(PUBACK << 4, struct.pack("!H", packet_id)))
        elif ptype == PUBACK:
            packet_id = r.u16()
            if packet_id in session.inflight:
                session.inflight.discard(packet_id)
                self._acked += 1
        elif ptype == SUBSCRIBE:
            if flags != 0b0010:
                raise ProtocolError("SUBSCRIBE fixed-header flags must be 0010")
            packet_id, requests = r.u16(), []
            while r.remaining:
                requests.append((r.text(), r.u8()))
            if not requests:
                raise ProtocolError("SUBSCRIBE without topic filters")
            codes = []
            for topic_filter, qos in requests:
                if qos > 2:
                    raise ProtocolError("SUBSCRIBE requested QoS above 2")
                if qos == 2:
                    raise ProtocolError("SUBSCRIBE with QoS 2: AWS IoT Core supports only QoS 0 and 1")
                if topic_filter_error(topic_filter):
                    codes.append(SUBACK_FAILURE)
                    continue
                session.subscriptions[topic_filter] = qos
                codes.append(qos)
            session.send(_packet(SUBACK << 4, struct.pack("!H", packet_id) + bytes(codes)))
            for (topic_filter, _), code in zip(requests, codes):   # retained ones, after SUBACK (§3.8.4)
                if code != SUBACK_FAILURE:
                    for msg in list(self._retained.values()):
                        if topic_matches(topic_filter, msg.topic):
                            session.deliver(msg, min(msg.qos, code), retain=True)
        elif ptype == UNSUBSCRIBE:
            if flags != 0b0010:
                raise ProtocolError("UNSUBSCRIBE fixed-header flags must be 0010")
            packet_id = r.u16()
            while r.remaining:
                session.subscriptions.pop(r.text(), None)
            session.send(_packet(UNSUBACK << 4, struct.pack("!H", packet_id)))
        elif ptype == PINGREQ:
            session.send(_packet(PINGRESP << 4, b""))
        elif ptype in (PUBREC, PUBREL, PUBCOMP):
            raise ProtocolError("QoS 2 packets are not supported (AWS IoT Core supports only QoS 0 and 1)")
        else:
            raise ProtocolError(f"unexpected packet type {ptype}")


__all__ = ["Broker", "BrokerError", "Message", "MAX_PAYLOAD_BYTES", "MAX_TOPIC_BYTES",
           "topic_filter_error", "topic_matches", "topic_name_error"]
