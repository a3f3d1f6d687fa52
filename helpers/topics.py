"""MQTT messages and topic-filter checks for the workbook's MQTT clients.

Plain data and checks with no sandbox in them, so the workbook's AWS path
(``helpers/mqtt.py``) never loads the sandbox. (The sandbox's broker applies the
full set of AWS's topic rules itself, ``helpers/sandbox/mqtt/broker.py``.)
Rules from MQTT 3.1.1 §4.7 (the same in MQTT 5 §4.7) and AWS IoT Core's limits
(https://docs.aws.amazon.com/general/latest/gr/iot-core.html).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

#: AWS IoT Core: topic "limited to 256 bytes of UTF-8 encoded characters".
MAX_TOPIC_BYTES = 256


@dataclass
class Message:
    """One application message, as published or as received by a subscriber."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    #: When a subscriber received it (epoch seconds), for the message views; not part of the message.
    received_at: float | None = field(default=None, compare=False)

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
