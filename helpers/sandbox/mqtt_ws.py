"""MQTT over WebSocket on the data endpoint: what a ``GET /mqtt`` upgrade must look like.

AWS IoT Core serves MQTT over a secure WebSocket at ``wss://<iot:Data-ATS endpoint>/mqtt``,
authenticated by a URL presigned with SigV4 for the service ``iotdevicegateway``
(``X-Amz-Security-Token`` appended *after* signing), or with custom authentication
(AWS IoT developer guide, "MQTT over the WebSocket protocol",
https://docs.aws.amazon.com/iot/latest/developerguide/mqtt-ws.html, and "Connecting to AWS
IoT Core by using custom authentication",
https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html). The upgrade itself is
answered in ``dataplane.py``; the WebSocket framing is wsproto's (``gateway.WebSocketStream``).
This module checks the opening handshake (RFC 6455 §4.2.1), so a client that is not a
WebSocket client gets a ``400`` that says what is missing.
"""
from __future__ import annotations

import base64
import binascii

SERVICE = "iotdevicegateway"
SUBPROTOCOL = "mqtt"


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
