"""Test-only plumbing for the MQTT broker: an in-memory Stream, a raw MQTT client, hooks.

Nothing here is used by the sandbox. The in-memory stream is built on real asyncio
objects (a queue for the bytes in, a bounded buffer with real back-pressure for the
bytes out), so the broker runs exactly as it does behind the gateway.
"""
from __future__ import annotations

import asyncio
import uuid

from helpers.sandbox.mqtt import codec as c
from helpers.sandbox.mqtt.broker import AllowAll, Broker, ConnInfo, Limits, PolicyAuthorization, Refusal

REGION, ACCOUNT = "us-east-1", "123456789012"


class MemoryStream:
    """The broker's side of one in-memory connection; ``high_water`` bytes unread make drain() wait."""

    def __init__(self, high_water: int = 64 * 1024):
        self.incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self.outgoing = bytearray()
        self.high_water = high_water
        self.closed = False
        self._rest = b""
        self._readable = asyncio.Event()     # client side: data or close
        self._drained = asyncio.Event()
        self._drained.set()

    # --- Stream (broker side) ---
    async def read(self, max_bytes: int) -> bytes:
        if self.closed:
            return b""
        if not self._rest:
            self._rest = await self.incoming.get()
            if not self._rest:
                return b""
        data, self._rest = self._rest[:max_bytes], self._rest[max_bytes:]
        return data

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.outgoing += data
        self._readable.set()
        if len(self.outgoing) > self.high_water:
            self._drained.clear()

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("closed")
        await self._drained.wait()
        if self.closed:
            raise ConnectionResetError("closed")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.incoming.put_nowait(b"")
            self._readable.set()
            self._drained.set()

    # --- the client's side ---
    def client_send(self, data: bytes) -> None:
        self.incoming.put_nowait(data)

    def client_eof(self) -> None:
        self.incoming.put_nowait(b"")

    async def client_read(self) -> bytes:
        """Bytes the broker wrote; b"" once it closed and everything was read."""
        while not self.outgoing:
            if self.closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = bytes(self.outgoing)
        self.outgoing.clear()
        self._drained.set()
        return data


class RawClient:
    """A hand-driven MQTT client on a MemoryStream, for exact packet-level assertions."""

    def __init__(self, broker: Broker, level: int = 4, *, high_water: int = 64 * 1024, preauth=None,
                 source_port: int = 40000):
        self.level = level
        self.stream = MemoryStream(high_water)
        self.conn = ConnInfo("mqtt", "127.0.0.1", source_port, "sandbox.local", str(uuid.uuid4()), preauth)
        self.decoder = c.Decoder(1 << 24, protocol_level=level)
        self.packets: list = []
        self.task = asyncio.ensure_future(broker.serve(self.stream, self.conn))

    def send(self, packet) -> None:
        self.stream.client_send(c.encode(packet, self.level))

    def send_raw(self, data: bytes) -> None:
        self.stream.client_send(data)

    async def recv(self, timeout: float = 5.0):
        """The next packet from the broker, or None when the broker closed the connection."""
        async with asyncio.timeout(timeout):
            while not self.packets:
                data = await self.stream.client_read()
                if not data:
                    return None
                self.packets.extend(self.decoder.feed(data))
            return self.packets.pop(0)

    async def connect(self, client_id: str = "c1", *, username: str | None = None, password: bytes | None = None,
                      will: c.Will | None = None, keep_alive: int = 60, properties: dict | None = None,
                      clean: bool = True):
        self.send(c.Connect(self.level, client_id, clean, keep_alive, username, password, will, properties or {}))
        return await self.recv()

    async def closed(self, timeout: float = 5.0) -> list:
        """Read until the broker closes; the packets received before that."""
        got = []
        while True:
            p = await self.recv(timeout)
            if p is None:
                async with asyncio.timeout(timeout):
                    await self.task          # the broker has finished with this connection
                return got
            got.append(p)


def policy(*statements) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, *resources) -> dict:
    return {"Effect": "Allow", "Action": action,
            "Resource": [f"arn:aws:iot:{REGION}:{ACCOUNT}:{r}" for r in resources]}


def deny(action, *resources) -> dict:
    return {"Effect": "Deny", "Action": action,
            "Resource": [f"arn:aws:iot:{REGION}:{ACCOUNT}:{r}" for r in resources]}


class Hooks:
    """authenticate(): username "deny" -> bad credentials, "unauth" -> not authorized, "slow" -> sleeps,
    anything else -> the policies in ``self.policies`` (AllowAll when None). Keeps the log entries."""

    account_id = ACCOUNT

    def __init__(self, policies: list[dict] | None = None):
        self.policies = policies
        self.entries: list[dict] = []
        self.calls: list[tuple[ConnInfo, c.Connect]] = []
        self.refresh_after = None
        self.disconnect_after = None
        self.refresher = None
        self.release = asyncio.Event()

    async def authenticate(self, conn, connect):
        self.calls.append((conn, connect))
        if connect.username == "deny":
            return Refusal(False, "AUTHENTICATION_FAILURE", "the authorizer said isAuthenticated=false")
        if connect.username == "unauth":
            return Refusal(True, "AUTHORIZATION_FAILURE", "not authorized")
        if connect.username == "slow":
            await self.release.wait()
        if self.policies is None:
            return AllowAll("learner", REGION, ACCOUNT)
        return PolicyAuthorization(self.policies, principal_id="dev1", region=REGION, account_id=ACCOUNT,
                                   refresh_after=self.refresh_after, disconnect_after=self.disconnect_after,
                                   refresher=self.refresher)

    def log(self, entry: dict) -> None:
        self.entries.append(entry)

    def events(self, event_type: str | None = None, status: str | None = None) -> list[dict]:
        return [e for e in self.entries if (event_type is None or e["eventType"] == event_type)
                and (status is None or e["status"] == status)]


def fast_limits(**kw) -> Limits:
    base = dict(connect_timeout=0.3, packet_timeout=0.3, authenticate_timeout=2.0)
    base.update(kw)
    return Limits(**base)


__all__ = ["ACCOUNT", "REGION", "Hooks", "MemoryStream", "RawClient", "allow", "deny", "fast_limits",
           "policy"]
