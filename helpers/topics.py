"""MQTT messages, and the rules for topic names and topic filters, in one place.

Plain data and checks with no sandbox in them: the workbook's MQTT client
(``helpers/mqtt.py``) checks a filter before it subscribes, and the sandbox's
broker and HTTPS publish (``helpers/sandbox/mqtt/broker.py``,
``helpers/sandbox/dataplane.py``) refuse what AWS IoT refuses with the same checks.
Rules from MQTT 3.1.1 §4.7 (the same in MQTT 5 §4.7) and AWS IoT Core's limits
(https://docs.aws.amazon.com/general/latest/gr/iot-core.html).

>>> topic_filter_error("sensors/+/temp") is None
True
>>> topic_filter_error("sensors/#/temp")
"in topic filter 'sensors/#/temp', '#' must be a whole level and the last one (like 'sensors/#')"
>>> topic_name_error("sensors/+/temp")
"topic name 'sensors/+/temp' contains a wildcard (+ or #): wildcards are only for subscriptions"
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

#: AWS IoT Core: topic "limited to 256 bytes of UTF-8 encoded characters".
MAX_TOPIC_BYTES = 256
#: AWS IoT Core: topic "limited to 7 forward slashes (/)", so 8 levels.
MAX_TOPIC_SLASHES = 7


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

def _common_error(kind: str, text: str, max_bytes: int, max_slashes: int) -> str | None:
    """What topic names and topic filters have in common: not empty, no null character, AWS's two limits."""
    if not text:
        return f"the {kind} is empty"
    if "\x00" in text:
        return f"the {kind} contains the null character"
    if len(text.encode("utf-8")) > max_bytes:
        return f"the {kind} is longer than {max_bytes} bytes of UTF-8 (AWS IoT's limit)"
    if text.count("/") > max_slashes:
        return f"the {kind} has {text.count('/')} forward slashes; AWS IoT allows at most {max_slashes} (8 levels)"
    return None


def topic_name_error(topic: str, *, max_bytes: int = MAX_TOPIC_BYTES,
                     max_slashes: int = MAX_TOPIC_SLASHES) -> str | None:
    """Why ``topic`` cannot be published to, or None."""
    if "+" in topic or "#" in topic:
        return f"topic name {topic!r} contains a wildcard (+ or #): wildcards are only for subscriptions"
    return _common_error("topic name", topic, max_bytes, max_slashes)


def topic_filter_error(topic_filter: str, *, max_bytes: int = MAX_TOPIC_BYTES,
                       max_slashes: int = MAX_TOPIC_SLASHES) -> str | None:
    """Why ``topic_filter`` is not a valid subscription filter, or None."""
    problem = _common_error("topic filter", topic_filter, max_bytes, max_slashes)
    if problem:
        return problem
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return (f"in topic filter {topic_filter!r}, '#' must be a whole level and the last one "
                    "(like 'sensors/#')")
        if "+" in level and level != "+":
            return f"in topic filter {topic_filter!r}, '+' must be a whole level (like 'sensors/+/temp')"
    return None
