"""MQTT devices with custom authentication (notebook 09): the SDK client's events, a device, and a console.

A device that uses a custom authorizer connects with MQTT over TLS on port 443 with ALPN
``mqtt`` (or over a WebSocket at ``/mqtt``), and carries its credentials in the CONNECT
packet: the user name holds a query string with the authorizer's name, the token and its
URL-encoded signature, and the password is the password
(https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html, "Connecting to AWS
IoT Core by using custom authentication"). The AWS IoT Device SDK v2 builds that user name
itself (``awsiot.mqtt5_client_builder.direct_with_custom_authorizer`` and
``websockets_with_custom_authorizer``); :func:`username` builds it by hand for paho and the
mosquitto clients.

What is here:

- :class:`DeviceEvents`: the SDK client's callbacks (connection success/failure,
  disconnection, stop, messages) turned into things a notebook cell can wait on;
- :class:`Device`: one SDK client with ``connect``/``subscribe``/``publish``/``disconnect``
  that answer with MQTT reason-code names: the plain twin of the console;
- :func:`device_console`: a widget with a client id, a password, Connect/Disconnect,
  Publish and a live message list, doing exactly what :class:`Device` does;
- :func:`username`, :func:`masked`, :func:`mosquitto_commands`: the wire by hand
  (:func:`host_and_port` comes from :mod:`helpers.mqtt`).

The same code runs against AWS and the sandbox: ``endpoint`` is ``wb.data_endpoint``
(``host`` on AWS, so port 443; ``host:port`` on the sandbox) and ``ca_file`` is
``wb.ca_bundle`` (None on AWS: the system's trust store, which holds Amazon's CA).

Usage:

>>> u = username("sensor-1", authorizer="my-authorizer", signature="ab+c/d==", token_key_name="tokenKeyName",
...              token="tokenKeyValue")
>>> print(u.replace("&", "\\n  &"))
sensor-1?x-amz-customauthorizer-name=my-authorizer
  &x-amz-customauthorizer-signature=ab%2Bc%2Fd%3D%3D
  &tokenKeyName=tokenKeyValue
>>> masked(u)
'sensor-1?x-amz-customauthorizer-name=my-authorizer&x-amz-customauthorizer-signature=<signature>&tokenKeyName=tokenKeyValue'
"""
from __future__ import annotations

import html
import importlib.util
import re
import shlex
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import ipywidgets as widgets

from helpers.errors import WorkbookError
from helpers.mqtt import host_and_port
from helpers.topics import Message
from helpers.widgets import Hinted, format_messages, messages_html
from helpers.workbook import FUNCTION_DIR

__all__ = ["ConnectOutcome", "Device", "DeviceConsole", "DeviceError", "DeviceEvents", "device_console",
           "load_function", "masked", "mosquitto_commands", "username"]

FUNCTION_FILE = FUNCTION_DIR / "lambda_function.py"
AUTHORIZER_PARAM = "x-amz-customauthorizer-name"
SIGNATURE_PARAM = "x-amz-customauthorizer-signature"
#: Seconds a cell waits for the broker's answer (CONNACK, SUBACK, PUBACK).
TIMEOUT = 15.0


class DeviceError(WorkbookError):
    """The device could not do what was asked (not connected, no answer in time); the message says what to do."""


def load_function(path: Path = FUNCTION_FILE):
    """The authorizer function's module (``functions/custom_auth/lambda_function.py``), to read or call."""
    spec = importlib.util.spec_from_file_location("lambda_function", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def username(device_id: str, *, authorizer: str, signature: str, token_key_name: str, token: str) -> str:
    """The MQTT user name AWS IoT reads custom-auth credentials from; the signature URL-encoded."""
    return _user_name(device_id, authorizer, quote(signature, safe=""), token_key_name, token)


def _user_name(device_id: str, authorizer: str, encoded_signature: str, token_key_name: str, token: str) -> str:
    """The user name's layout, with the signature as given (already URL-encoded, or a shell ``$VARIABLE``)."""
    return (f"{device_id}?{AUTHORIZER_PARAM}={quote(authorizer, safe='')}"
            f"&{SIGNATURE_PARAM}={encoded_signature}"
            f"&{quote(token_key_name, safe='')}={quote(token, safe='')}")


def masked(text: str) -> str:
    """``text`` with the value of ``x-amz-customauthorizer-signature=`` replaced by ``<signature>``."""
    return re.sub(rf"({SIGNATURE_PARAM}=)[^&\s'\"]+", r"\1<signature>", text)


def mosquitto_commands(endpoint: str, *, ca_file: str | None, device_id: str, authorizer: str,
                       token_key_name: str, token: str, topic: str, password_variable: str = "DEVICE_PASSWORD",
                       signature_variable: str = "SIGNATURE") -> str:
    """The ``mosquitto_sub``/``mosquitto_pub`` lines for a terminal. The signature and the password come from
    shell variables (``"$SIGNATURE"``, ``"$DEVICE_PASSWORD"``), so neither is ever printed."""
    host, port = host_and_port(endpoint)
    user = _user_name(device_id, authorizer, "$SIG", token_key_name, token)
    cafile = f" --cafile {shlex.quote(ca_file)}" if ca_file else ""  # on AWS: the system's trust store
    common = (f"-h {host} -p {port}{cafile} --tls-alpn mqtt -i {shlex.quote(device_id)} "
              f"-u \"$USER_NAME\" -P \"${password_variable}\"")
    return "\n".join([
        "# the signature, URL-encoded (its + / = would otherwise change meaning in a query string)",
        "SIG=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=\"\"))' "
        f"\"${signature_variable}\")",
        f"USER_NAME=\"{user}\"",
        f"mosquitto_sub {common} -t {shlex.quote(topic.rsplit('/', 1)[0] + '/#')} -v &",
        f"mosquitto_pub {common} -t {shlex.quote(topic)} -q 1 -m 'hello from mosquitto'",
    ])


# --- the SDK client's events ------------------------------------------------------------------------------

@dataclass
class ConnectOutcome:
    """How a connection attempt ended: ``reason`` is the CONNACK reason code's name (``SUCCESS``,
    ``NOT_AUTHORIZED``, ``BAD_USERNAME_OR_PASSWORD``, ...) or, when the broker answered no CONNACK, the
    CRT error's name (``AWS_ERROR_MQTT_UNEXPECTED_HANGUP``: the server closed the connection)."""

    ok: bool
    reason: str
    reason_code: int | None = None

    def __str__(self) -> str:
        if self.reason_code is None:
            return f"{'connected' if self.ok else 'refused'}: {self.reason} (no CONNACK)"
        return f"{'connected' if self.ok else 'refused'}: CONNACK {self.reason} (0x{self.reason_code:02X})"


def _name(value: Any) -> tuple[str, int | None]:
    """An MQTT 5 reason-code enum → (name, number); anything else → (str, None)."""
    if hasattr(value, "name") and hasattr(value, "value"):
        return value.name, int(value.value)
    return str(value), None


def _failure(data) -> ConnectOutcome:
    connack = getattr(data, "connack_packet", None)
    if connack is not None and connack.reason_code is not None:
        name, code = _name(connack.reason_code)
        return ConnectOutcome(False, name, code)
    error = getattr(data, "exception", None)
    return ConnectOutcome(False, getattr(error, "name", None) or type(error).__name__ if error else "UNKNOWN")


class DeviceEvents:
    """The SDK client's callbacks, collected: pass ``**events.callbacks()`` to a builder.

    ``messages`` fills as messages arrive (:class:`helpers.topics.Message`); ``on_message``, if set,
    is called with each. :meth:`wait_connected` returns the first attempt's :class:`ConnectOutcome`.
    """

    def __init__(self):
        self.connected: Future = Future()
        self.stopped = threading.Event()
        self.disconnections: list[str] = []
        self.messages: list[Message] = []
        self.on_message: Callable[[Message], None] | None = None
        self._cond = threading.Condition()

    def callbacks(self) -> dict[str, Callable]:
        return {"on_lifecycle_connection_success": self._success,
                "on_lifecycle_connection_failure": self._failure,
                "on_lifecycle_disconnection": self._disconnected,
                "on_lifecycle_stopped": lambda _data: self.stopped.set(),
                "on_publish_received": self._publish}

    def _success(self, data) -> None:
        name, code = _name(data.connack_packet.reason_code)
        if not self.connected.done():
            self.connected.set_result(ConnectOutcome(True, name, code))

    def _failure(self, data) -> None:
        if not self.connected.done():
            self.connected.set_result(_failure(data))

    def _disconnected(self, data) -> None:
        packet = getattr(data, "disconnect_packet", None)
        if packet is not None:
            self.disconnections.append(_name(packet.reason_code)[0])
        else:
            error = getattr(data, "exception", None)
            self.disconnections.append(getattr(error, "name", None) or "closed")

    def _publish(self, data) -> None:
        packet = data.publish_packet
        message = Message(packet.topic, bytes(packet.payload or b""), int(packet.qos), bool(packet.retain),
                          received_at=time.time())
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()
        hook = self.on_message
        if hook is not None:
            try:
                hook(message)
            except Exception:  # a display hook must never break the SDK's thread
                pass

    def wait_connected(self, timeout: float = TIMEOUT) -> ConnectOutcome:
        try:
            return self.connected.result(timeout)
        except FutureTimeout:
            raise DeviceError(f"No answer to the MQTT CONNECT within {timeout:g} s. Check the endpoint "
                              "(wb.data_endpoint), port 443 and ALPN mqtt; on the sandbox, that it runs "
                              "(.venv/bin/python -m helpers.sandbox status).") from None

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Message]:
        """The messages once at least ``n`` have arrived; :class:`DeviceError` after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= n, timeout):
                raise DeviceError(f"{len(self.messages)} message(s) arrived within {timeout:g} s, not {n}.")
            return list(self.messages)


# --- a device: the console's plain twin ---------------------------------------------------------------------

class Device:
    """One MQTT 5 device client from the AWS IoT Device SDK v2, with custom authentication.

    ``transport``: ``"direct"`` (MQTT over TLS, ALPN ``mqtt``) or ``"websockets"`` (MQTT over a
    WebSocket at ``/mqtt``). ``device_id`` goes first in the user name (the function reads it);
    ``client_id`` defaults to it. Every method answers with reason-code names, never raises for a
    refusal; a failed connection attempt stops the client, so it does not retry in the background.
    """

    def __init__(self, endpoint: str, *, ca_file: str | None, client_id: str, password: str, authorizer: str,
                 token_key_name: str, token: str, signature: str, device_id: str | None = None,
                 transport: str = "direct"):
        from awsiot import mqtt5_client_builder

        builders = {"direct": mqtt5_client_builder.direct_with_custom_authorizer,
                    "websockets": mqtt5_client_builder.websockets_with_custom_authorizer}
        if transport not in builders:
            raise ValueError(f"transport must be 'direct' or 'websockets', not {transport!r}")
        host, port = host_and_port(endpoint)
        self.client_id, self.transport = client_id, transport
        self.events = DeviceEvents()
        self.outcome: ConnectOutcome | None = None
        self._started = False
        self.client = builders[transport](
            endpoint=host, port=port, ca_filepath=ca_file, client_id=client_id,
            auth_username=device_id or client_id, auth_password=password, auth_authorizer_name=authorizer,
            auth_authorizer_signature=signature, auth_token_key_name=token_key_name, auth_token_value=token,
            **self.events.callbacks())

    @property
    def messages(self) -> list[Message]:
        return self.events.messages

    @property
    def connected(self) -> bool:
        return bool(self.outcome and self.outcome.ok and self._started)

    def connect(self, timeout: float = TIMEOUT) -> ConnectOutcome:
        """Start the client and wait for the first CONNACK (or the hang-up); stop it again on a refusal."""
        self._started = True
        self.client.start()
        try:
            self.outcome = self.events.wait_connected(timeout)
        except DeviceError:
            self.disconnect()
            raise
        if not self.outcome.ok:
            self.disconnect()
        return self.outcome

    def _need_connection(self) -> None:
        if not self.connected:
            raise DeviceError(f"{self.client_id} is not connected: connect() first (and check its outcome).")

    def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = TIMEOUT) -> list[str]:
        """SUBSCRIBE to one filter; the SUBACK's reason-code names (``GRANTED_QOS_1``, ``NOT_AUTHORIZED``...)."""
        from awscrt import mqtt5

        self._need_connection()
        packet = mqtt5.SubscribePacket(subscriptions=[mqtt5.Subscription(topic_filter=topic_filter,
                                                                         qos=mqtt5.QoS(qos))])
        try:
            suback = self.client.subscribe(packet).result(timeout)
        except FutureTimeout:
            return ["NO_SUBACK"]
        except Exception as error:  # the connection went away under the request
            return [getattr(error, "name", type(error).__name__)]
        return [_name(code)[0] for code in suback.reason_codes]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, timeout: float = TIMEOUT) -> str:
        """PUBLISH; with QoS 1 the PUBACK's reason-code name (``SUCCESS``, ``NOT_AUTHORIZED``...), else ``SENT``."""
        from awscrt import mqtt5

        self._need_connection()
        body = payload.encode() if isinstance(payload, str) else payload
        try:
            result = self.client.publish(mqtt5.PublishPacket(topic=topic, payload=body,
                                                             qos=mqtt5.QoS(qos))).result(timeout)
        except FutureTimeout:
            return "NO_PUBACK"
        except Exception as error:
            return getattr(error, "name", type(error).__name__)
        puback = getattr(result, "puback", None)
        return _name(puback.reason_code)[0] if puback is not None else "SENT"

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Message]:
        return self.events.wait_for(n, timeout)

    def disconnect(self, timeout: float = 10.0) -> None:
        """Stop the client (an MQTT DISCONNECT when connected) and wait until it has stopped. Safe twice."""
        if self._started:
            self._started = False
            self.client.stop()
            self.events.stopped.wait(timeout)

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = "connected" if self.connected else (str(self.outcome) if self.outcome else "not started")
        return f"Device({self.client_id!r}, {self.transport}, {state})"


# --- the console ----------------------------------------------------------------------------------------------

class DeviceConsole(Hinted, widgets.VBox):
    """Client id, password, Connect/Disconnect, topic + payload + Publish, and the messages as they arrive.

    ``make_device(client_id, password)`` returns a :class:`Device` (not yet connected). :meth:`connect`,
    :meth:`publish` and :meth:`disconnect` are the buttons' handlers and can be called from code; errors
    are shown, never raised. ``.device`` is the current device, ``.status`` the last line shown.
    """

    SHOWN = 20
    hint_name = "device console"

    def __init__(self, make_device: Callable[[str, str], Device], client_id: str, topic: str):
        self.make_device = make_device
        self.device: Device | None = None
        self.client_id = widgets.Text(value=client_id, description="Client id:", style={"description_width": "initial"})
        self.password = widgets.Password(description="Password:", style={"description_width": "initial"})
        self.connect_button = widgets.Button(description="Connect", button_style="primary", icon="plug")
        self.disconnect_button = widgets.Button(description="Disconnect", disabled=True)
        self.topic = widgets.Text(value=topic, description="Topic:", layout=widgets.Layout(width="60%"))
        self.payload = widgets.Text(value='{"temperature": 21}', description="Payload:",
                                    layout=widgets.Layout(width="60%"))
        self.publish_button = widgets.Button(description="Publish", icon="paper-plane", disabled=True)
        self.status_line = widgets.HTML("<i>Not connected.</i>")
        self.list = widgets.HTML()
        self.status = "Not connected."
        self.connect_button.on_click(lambda _b: self.connect())
        self.disconnect_button.on_click(lambda _b: self.disconnect())
        self.publish_button.on_click(lambda _b: self.publish())
        super().__init__([widgets.HBox([self.client_id, self.password]),
                          widgets.HBox([self.connect_button, self.disconnect_button]),
                          self.topic, widgets.HBox([self.payload, self.publish_button]),
                          self.status_line, self.list])
        self.refresh()

    def _say(self, text: str) -> None:
        self.status = text
        self.status_line.value = html.escape(text)

    def _buttons(self) -> None:
        connected = bool(self.device and self.device.connected)
        self.connect_button.disabled = connected
        self.disconnect_button.disabled = not connected
        self.publish_button.disabled = not connected

    def connect(self) -> ConnectOutcome | None:
        """Connect as the client id with the password, then subscribe to the topic's folder (``.../#``)."""
        self.disconnect(quiet=True)
        self.connect_button.disabled = True
        try:
            self.device = self.make_device(self.client_id.value.strip(), self.password.value)
            self.device.events.on_message = lambda _m: self.refresh()
            outcome = self.device.connect()
        except Exception as error:  # a button callback's exception would vanish into the kernel log
            self._say(f"✗ {type(error).__name__}: {error}")
            self.device = None
            self._buttons()
            return None
        if outcome.ok:
            folder = self.topic.value.rsplit("/", 1)[0] + "/#"
            granted = self.device.subscribe(folder)
            self._say(f"✓ {self.device.client_id} {outcome}; subscribed to {folder}: {', '.join(granted)}")
        else:
            self._say(f"✗ {self.device.client_id} {outcome}")
        self._buttons()
        self.refresh()
        return outcome

    def publish(self) -> str | None:
        """Publish the payload to the topic with QoS 1; the PUBACK's reason-code name."""
        if not (self.device and self.device.connected):
            self._say("✗ Not connected: press Connect first.")
            return None
        result = self.device.publish(self.topic.value.strip(), self.payload.value)
        self._say(f"publish to {self.topic.value.strip()}: {result}")
        return result

    def disconnect(self, quiet: bool = False) -> None:
        """Disconnect (and stop) the current device. Safe to call twice."""
        if self.device is not None:
            self.device.disconnect()
            if not quiet:
                self._say(f"Disconnected {self.device.client_id}.")
        self._buttons()

    def refresh(self) -> None:
        messages = self.device.messages if self.device else []
        self.list.value = messages_html(messages, self.SHOWN)

    @property
    def text(self) -> str:
        """The message list as plain text (:func:`helpers.widgets.format_messages`)."""
        return format_messages(self.device.messages if self.device else [])

    def close(self) -> None:
        self.disconnect(quiet=True)
        super().close()


def device_console(make_device: Callable[[str, str], Device], client_id: str, topic: str) -> DeviceConsole:
    """Notebook 09's device console. Plain twin: :class:`Device` (``connect``, ``publish``, ``disconnect``)."""
    return DeviceConsole(make_device, client_id, topic)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """``predicate()``'s first truthy value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
