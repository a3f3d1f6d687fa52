"""MQTT topic names, topic filters and messages: the rules every MQTT client and broker here share.

Plain data and checks with no sandbox in them, so the workbook's AWS path
(``helpers/mqtt.py``) and the sandbox's broker use the same definitions.
Rules from MQTT 3.1.1 §4.7 (the same in MQTT 5 §4.7) and AWS IoT Core's limits
(https://docs.aws.amazon.com/general/latest/gr/iot-core.html).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

#: AWS IoT Core: "The payload for every publish request is limited to 128 KB."
MAX_PAYLOAD_BYTES = 128 * 1024
#: AWS IoT Core: topic "limited to 256 bytes of UTF-8 encoded characters".
MAX_TOPIC_BYTES = 256


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
