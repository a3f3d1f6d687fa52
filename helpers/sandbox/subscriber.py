"""The learner's MQTT test client: subscribe to the sandbox broker (or any MQTT 3.1.1 broker).

Built on paho-mqtt 2.x. Two shapes:

- :func:`subscribe` blocks until ``count`` messages or ``timeout`` seconds
  (what ``python -m helpers.sandbox subscribe`` uses);
- :class:`Subscription` listens in the background, for notebooks and tests::

    with Subscription("127.0.0.1", port, "sensors/+/temp") as sub:
        ...  # publish something
        [msg] = sub.wait_for(1, timeout=5)
        print(msg.to_json_line())

Problems a learner can hit raise :class:`SubscribeError` (nothing listening,
connection refused or lost, subscription refused) or ``ValueError`` (an
invalid topic filter, with the rule it breaks).
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Callable

import paho.mqtt.client as mqtt

from .broker import Message, topic_filter_error

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


def _no_broker(host: str, port: int) -> SubscribeError:
    return SubscribeError(f"no MQTT broker at {host}:{port}: is the sandbox running? "
                          "python -m helpers.sandbox start")


class Subscription:
    """A background subscription; ``messages`` fills up as messages arrive.

    ``on_message`` (optional) is called for each message on paho's network
    thread; if it raises, the subscription stops and ``wait_for`` re-raises.
    """

    def __init__(self, host: str, port: int, topic_filter: str, *, qos: int = 1,
                 on_message: Callable[[Message], None] | None = None,
                 connect_timeout: float = 5.0, client_id: str | None = None, ssl_context=None):
        validate_topic_filter(topic_filter)
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (AWS IoT Core supports only QoS 0 and 1), not {qos!r}")
        self.host, self.port, self.topic_filter, self.qos = host, port, topic_filter, qos
        self.on_message = on_message
        self.connect_timeout = connect_timeout
        self.client_id = client_id or f"sandbox-sub-{uuid.uuid4().hex[:12]}"
        self.ready = threading.Event()           # set once the broker acknowledged the subscription
        self.error: BaseException | None = None
        self._ssl_context = ssl_context
        self._messages: list[Message] = []
        self._cond = threading.Condition()
        self._connected = threading.Event()          # CONNACK arrived (or the attempt failed)
        self._settled = threading.Event()            # SUBACK arrived (or the attempt failed)
        self._connack: str | None = None          # failure reason from CONNACK, if any
        self._stopping = False
        self._client: mqtt.Client | None = None

    # --- public ---

    @property
    def messages(self) -> list[Message]:
        """A copy of the messages received so far, in arrival order."""
        with self._cond:
            return list(self._messages)

    def start(self) -> "Subscription":
        """Connect, subscribe and wait for SUBACK; raises SubscribeError on failure."""
        if self._client is not None:
            raise SubscribeError("this Subscription is already started")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311, clean_session=True,
                             reconnect_on_failure=False)   # a new connection would lack the subscription
        if self._ssl_context is not None:
            client.tls_set_context(self._ssl_context)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client
        try:
            client.connect(self.host, self.port, keepalive=30)
        except ConnectionRefusedError:
            self._client = None
            raise _no_broker(self.host, self.port) from None
        except OSError as exc:
            self._client = None
            raise SubscribeError(f"cannot connect to the MQTT broker at {self.host}:{self.port}: "
                                 f"{exc.strerror or exc}") from None
        client.loop_start()
        try:
            self._await_subscribed()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Message]:
        """Wait until ``n`` messages have arrived; return the first ``n``.

        Raises TimeoutError (saying how many arrived) if they do not arrive in
        time, and SubscribeError if the connection is lost.
        """
        if not self._wait(n, timeout):
            got = len(self.messages)
            raise TimeoutError(f"received {got} of {n} message(s) on {self.topic_filter!r} "
                               f"within {timeout} s")
        return self.messages[:n]

    def stop(self) -> None:
        """Disconnect; harmless if already stopped."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        client.disconnect()
        client.loop_stop()

    def __enter__(self) -> "Subscription":
        if self._client is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- internals ---

    def _await_subscribed(self) -> None:
        where = f"{self.host}:{self.port}"
        if not self._connected.wait(self.connect_timeout):
            raise SubscribeError(f"the MQTT broker at {where} did not answer CONNECT within "
                                 f"{self.connect_timeout} s")
        if self.error:
            raise self.error
        if self._connack:
            raise SubscribeError(f"the MQTT broker at {where} refused the connection: {self._connack}")
        if not self._settled.wait(self.connect_timeout):
            raise SubscribeError(f"the MQTT broker at {where} did not acknowledge the subscription "
                                 f"within {self.connect_timeout} s")
        if self.error:
            raise self.error

    def _wait(self, n: int | None, timeout: float | None) -> bool:
        """Wait for ``n`` messages (None: forever) up to ``timeout`` (None: forever); True if reached."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while n is None or len(self._messages) < n:
                if self.error is not None:
                    raise self.error
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                # short waits keep Ctrl+C responsive on the calling thread
                self._cond.wait(0.25 if left is None else min(left, 0.25))
            return True

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = error
            self._cond.notify_all()
        self._connected.set()
        self._settled.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connack = str(reason_code)
            self._connected.set()
            client.disconnect()
            return
        self._connected.set()
        result, _ = client.subscribe(self.topic_filter, qos=self.qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            self._fail(SubscribeError(f"could not send SUBSCRIBE: {mqtt.error_string(result)}"))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._fail(SubscribeError(f"the MQTT broker at {self.host}:{self.port} refused the "
                                      f"subscription to {self.topic_filter!r}"))
            client.disconnect()
            return
        self.ready.set()
        self._settled.set()

    def _on_message(self, client, userdata, msg) -> None:
        message = Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain))
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()
        if self.on_message is not None:
            try:
                self.on_message(message)
            except Exception as exc:   # surfaced to the waiting thread, which re-raises it
                self._fail(exc)
                client.disconnect()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._stopping or self.error is not None or self._connack:
            return
        where = f"{self.host}:{self.port}"
        if not self._connected.is_set():
            self._fail(SubscribeError(f"{where} closed the connection without answering MQTT CONNECT "
                                      "(is it an MQTT broker? does it expect TLS?)"))
        else:
            self._fail(SubscribeError(f"lost the connection to the MQTT broker at {where} "
                                      "(was the sandbox stopped?)"))


def subscribe(host: str, port: int, topic_filter: str, *, count: int | None = None,
              timeout: float | None = None, on_message: Callable[[Message], None] | None = None,
              qos: int = 1, ready: threading.Event | None = None) -> list[Message]:
    """Subscribe and collect messages until ``count`` arrived or ``timeout`` seconds passed.

    ``ready`` is set once the broker acknowledged the subscription, so another
    thread can publish after it. With neither ``count`` nor ``timeout`` it runs
    until Ctrl+C (KeyboardInterrupt), then returns what it received.
    """
    if count is not None and count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must not be negative, not {timeout}")
    with Subscription(host, port, topic_filter, qos=qos, on_message=on_message) as sub:
        if ready is not None:
            ready.set()
        try:
            sub._wait(count, timeout)
        except KeyboardInterrupt:
            if count is not None or timeout is not None:
                raise
        messages = sub.messages
    return messages[:count] if count is not None else messages
