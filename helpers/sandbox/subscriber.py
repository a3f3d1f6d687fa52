"""The learner's MQTT test client for the sandbox: subscribe the way AWS's MQTT test client does.

AWS IoT Core has no anonymous MQTT: the console's MQTT test client connects
with MQTT over WebSocket and a SigV4-presigned URL. So does this one, with the
sandbox's own credentials, through :class:`helpers.mqtt.MqttWatch` (the same
client the notebooks use against AWS). Two shapes:

- :func:`subscribe` blocks until ``count`` messages or ``timeout`` seconds
  (what ``python -m helpers.sandbox subscribe`` uses);
- :class:`Subscription` listens in the background, for tests::

    with Subscription(settings, "sensors/+/temp") as sub:
        ...  # publish something
        [msg] = sub.wait_for(1, timeout=5)
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from helpers.mqtt import MqttConnectionError, MqttError, MqttTimeoutError, MqttWatch
from helpers.topics import Message, topic_filter_error

__all__ = ["Message", "SubscribeError", "Subscription", "subscribe", "validate_topic_filter"]


class SubscribeError(RuntimeError):
    """The subscription could not be made or was lost."""


def validate_topic_filter(f: str) -> None:
    """Raise ValueError saying what is wrong with an MQTT topic filter (MQTT 3.1.1 §4.7, AWS limits).

    >>> validate_topic_filter("sensors/+/temp")
    >>> validate_topic_filter("sensors/#/temp")
    Traceback (most recent call last):
    ...
    ValueError: in topic filter 'sensors/#/temp', '#' must be a whole level and the last one (like 'sensors/#')
    """
    if not isinstance(f, str):
        raise ValueError(f"a topic filter must be a string, not {type(f).__name__}")
    problem = topic_filter_error(f)
    if problem:
        raise ValueError(problem)


class Subscription(MqttWatch):
    """A background subscription to the sandbox (``settings``: a running sandbox's ``Settings``)."""

    def __init__(self, settings, topic_filter: str, *, qos: int = 1,
                 on_message: Callable[[Message], None] | None = None, client_id: str | None = None):
        super().__init__(settings.data_endpoint, settings.region,
                         (settings.access_key_id, settings.secret_access_key), topic_filter,
                         ca_bundle=settings.ca_bundle, qos=qos, on_message=on_message, client_id=client_id)


def subscribe(settings, topic_filter: str, *, count: int | None = None, timeout: float | None = None,
              on_message: Callable[[Message], None] | None = None, qos: int = 1,
              ready: threading.Event | None = None) -> list[Message]:
    """Subscribe and collect messages until ``count`` arrived or ``timeout`` seconds passed.

    ``ready`` is set once the broker acknowledged the subscription, so another
    thread can publish after it. With neither ``count`` nor ``timeout`` it runs
    until Ctrl+C (KeyboardInterrupt), then returns what it received.
    """
    if count is not None and count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must not be negative, not {timeout}")
    try:
        sub = Subscription(settings, topic_filter, qos=qos, on_message=on_message).start()
    except MqttError as exc:
        raise SubscribeError(str(exc)) from None
    try:
        if ready is not None:
            ready.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while count is None or len(sub.messages) < count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:  # short waits keep Ctrl+C responsive
                sub.wait_for(len(sub.messages) + 1, timeout=0.25 if left is None else min(left, 0.25))
            except MqttTimeoutError:
                continue
            except MqttConnectionError as exc:
                raise SubscribeError(str(exc)) from None
    except KeyboardInterrupt:
        if count is not None or timeout is not None:
            raise
    finally:
        sub.stop()
    messages = sub.messages
    return messages[:count] if count is not None else messages
