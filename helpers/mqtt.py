"""Watch MQTT messages from a notebook, the same way against AWS IoT Core and the sandbox.

A client holding IAM credentials reaches AWS IoT Core's message broker with MQTT
over a secure WebSocket whose URL is presigned with Signature Version 4
(AWS IoT Developer Guide, "MQTT over the WebSocket protocol",
https://docs.aws.amazon.com/iot/latest/developerguide/mqtt-ws.html). The
sandbox's data endpoint serves the same ``/mqtt`` URL
(``helpers/sandbox/mqtt_ws.py``), so one code path serves both; only the CA
differs (``ca_bundle=None`` trusts the system store, as for AWS).

    from helpers.mqtt import watch_from_session
    with watch_from_session(session, endpoint, "workbook/#", ca_bundle=ca) as watch:
        ...                                   # publish something
        for message in watch.wait_for(1):     # helpers.topics.Message
            print(message.to_json_line())

The URL is built by hand (:func:`presigned_url`), not with botocore's
``SigV4QueryAuth``: botocore signs ``X-Amz-Security-Token`` into the canonical
query and always adds ``X-Amz-Expires``, while AWS IoT expects the token
appended *after* signing, as the AWS IoT Device SDKs do (Python v1:
``SigV4Core.createWebsocketEndpoint`` in aws/aws-iot-device-sdk-python,
``AWSIoTPythonSDK/core/protocol/connection/cores.py``). Without a session token
and with the same ``expires``, the signature equals botocore's (the tests check).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import logging
import os
import ssl
import threading
import time
import uuid
from urllib.parse import quote

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from helpers.errors import WorkbookError
from helpers.topics import Message, topic_filter_error

log = logging.getLogger(__name__)

SERVICE = "iotdevicegateway"
ALGORITHM = "AWS4-HMAC-SHA256"
#: AWS IoT's longest WebSocket connection lasts 24 hours; its presigned URLs need not outlive that.
MAX_EXPIRES = 86400

__all__ = ["MqttError", "MqttConnectionError", "MqttTimeoutError", "MqttWatch", "Message", "host_and_port",
           "presigned_url", "watch_from_session"]


class MqttError(WorkbookError):
    """Watching MQTT messages failed; the message says why and what to do."""


class MqttConnectionError(MqttError):
    """The endpoint could not be reached, or refused the connection, the signature or the subscription."""


class MqttTimeoutError(MqttError):
    """Fewer messages arrived than expected within the time allowed."""


def host_and_port(endpoint: str) -> tuple[str, int]:
    """``host`` → (host, 443), as on AWS; ``host:port`` → (host, port), as on the sandbox.

    A ``wss://``/``https://`` prefix and a path are tolerated.

    >>> host_and_port("abc-ats.iot.us-west-2.amazonaws.com"), host_and_port("wss://localhost:8443/mqtt")
    (('abc-ats.iot.us-west-2.amazonaws.com', 443), ('localhost', 8443))
    """
    text = endpoint.strip()
    for prefix in ("wss://", "https://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return host.strip("[]"), int(port)
    return text.strip("[]"), 443


def _host_header(host: str, port: int) -> str:
    """The Host header a WebSocket client sends (the port only when not 443), hence the signed ``host``."""
    return host if port == 443 else f"{host}:{port}"


def _frozen(credentials) -> tuple[str, str, str | None]:
    if hasattr(credentials, "get_frozen_credentials"):
        credentials = credentials.get_frozen_credentials()
    if hasattr(credentials, "access_key"):
        return credentials.access_key, credentials.secret_key, getattr(credentials, "token", None)
    access_key, secret_key, *rest = credentials
    return access_key, secret_key, (rest[0] if rest else None)


def _enc(text: str) -> str:
    return quote(text, safe="-_.~")  # SigV4's URI encoding


def presigned_url(endpoint: str, region: str, credentials, *, now: dt.datetime | None = None,
                  expires: int | None = None) -> str:
    """The ``wss://ENDPOINT/mqtt?...`` URL AWS IoT accepts for MQTT over WebSocket with SigV4.

    Parameters in the AWS IoT Device SDKs' order: ``X-Amz-Algorithm``,
    ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires`` (only when
    ``expires`` is given), ``X-Amz-SignedHeaders=host``, then
    ``X-Amz-Signature``, then ``X-Amz-Security-Token`` when the credentials
    have a session token (appended after signing, so not signed). A naive
    ``now`` is taken as UTC. Service
    ``iotdevicegateway``; the signed ``host`` is the endpoint with its port
    when that is not 443. ``credentials``: botocore ``Credentials``, frozen
    credentials, or an ``(access_key, secret_key[, token])`` tuple.

    >>> url = presigned_url("abc-ats.iot.us-west-2.amazonaws.com", "us-west-2", ("AKIDEXAMPLE", "secret", "tok/en+="),
    ...                     now=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    >>> print(url.replace("?", "\\n  ?").replace("&", "\\n  &"))  # doctest: +ELLIPSIS
    wss://abc-ats.iot.us-west-2.amazonaws.com/mqtt
      ?X-Amz-Algorithm=AWS4-HMAC-SHA256
      &X-Amz-Credential=AKIDEXAMPLE%2F20240102%2Fus-west-2%2Fiotdevicegateway%2Faws4_request
      &X-Amz-Date=20240102T030405Z
      &X-Amz-SignedHeaders=host
      &X-Amz-Signature=...
      &X-Amz-Security-Token=tok%2Fen%2B%3D
    """
    host, port = host_and_port(endpoint)
    access_key, secret_key, token = _frozen(credentials)
    if not access_key or not secret_key:
        raise MqttConnectionError("No AWS credentials to sign the MQTT over WebSocket URL with: configure "
                                  "credentials (aws configure, or the sandbox's settings) and try again.")
    if expires is not None and not 0 < int(expires) <= 604800:
        raise ValueError("expires must be between 1 and 604800 seconds (7 days)")
    now = now or dt.datetime.now(dt.timezone.utc)
    now = now.replace(tzinfo=dt.timezone.utc) if now.tzinfo is None else now.astimezone(dt.timezone.utc)
    amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{date}/{region}/{SERVICE}/aws4_request"
    params = [("X-Amz-Algorithm", ALGORITHM), ("X-Amz-Credential", f"{access_key}/{scope}"),
              ("X-Amz-Date", amz_date)]
    if expires is not None:
        params.append(("X-Amz-Expires", str(int(expires))))
    params.append(("X-Amz-SignedHeaders", "host"))
    query = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in params)  # already in sorted order
    canonical = "\n".join(["GET", "/mqtt", query, f"host:{_host_header(host, port)}\n", "host",
                           hashlib.sha256(b"").hexdigest()])
    string_to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, SERVICE, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    url = f"wss://{_host_header(host, port)}/mqtt?{query}&X-Amz-Signature={signature}"
    if token:
        url += f"&X-Amz-Security-Token={_enc(token)}"
    return url


class MqttWatch:
    """Subscribe to ``topic_filter`` over MQTT-over-WebSocket and collect what arrives, in order.

    ``ca_bundle``: None trusts the system's CAs (real AWS IoT); a path trusts
    that CA only (the sandbox's ``settings.ca_bundle``). ``on_message`` is
    called with each :class:`~helpers.topics.Message` on paho's network
    thread. The watch does not reconnect: if the connection drops,
    :meth:`wait_for` says so.
    """

    def __init__(self, endpoint: str, region: str, credentials, topic_filter: str, *,
                 ca_bundle: str | os.PathLike | None = None, client_id: str | None = None, qos: int = 1,
                 on_message=None):
        if qos not in (0, 1):
            raise ValueError("AWS IoT supports QoS 0 and 1 only")
        problem = topic_filter_error(topic_filter)
        if problem:
            raise MqttError(f"Cannot watch {topic_filter!r}: {problem}.")
        self.endpoint = endpoint
        self.host, self.port = host_and_port(endpoint)
        self.region = region
        self.credentials = credentials
        self.topic_filter = topic_filter
        self.ca_bundle = str(ca_bundle) if ca_bundle is not None else None
        self.client_id = client_id or f"workbook-watch-{uuid.uuid4().hex[:12]}"
        self.qos = qos
        self.on_message = on_message
        self._messages: list[Message] = []
        self._cond = threading.Condition()
        self._connack = None  # paho ReasonCode of the CONNACK
        self._suback = None   # paho ReasonCodes of the SUBACK
        self._disconnect_reason: str | None = None
        self._client: paho.Client | None = None
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "MqttWatch":
        """Connect, subscribe, and return once the broker acknowledged the subscription (SUBACK)."""
        if self._client is not None:
            raise MqttError("This watch is already started; create a new MqttWatch to watch again.")
        self._connack = self._suback = self._disconnect_reason = None
        self._stopping = False
        url = presigned_url(self.endpoint, self.region, self.credentials)
        path = url[url.index("/mqtt"):]
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, transport="websockets",
                             protocol=paho.MQTTv311, clean_session=True, reconnect_on_failure=False)
        client.ws_set_options(path=path)
        client.tls_set_context(self._ssl_context())
        client.connect_timeout = timeout
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(self.host, self.port, keepalive=60)
        except paho.WebsocketConnectionError:
            raise MqttConnectionError(self._explain_refusal(path, timeout)) from None
        except ssl.SSLCertVerificationError as exc:
            hint = ("pass ca_bundle=settings.ca_bundle for the sandbox" if self.ca_bundle is None else
                    f"the CA in {self.ca_bundle} did not sign it; for real AWS IoT leave ca_bundle=None")
            raise MqttConnectionError(f"The TLS certificate of {self.host} is not trusted ({exc.verify_message}): "
                                      f"{hint}.") from None
        except (OSError, ssl.SSLError) as exc:
            raise MqttConnectionError(f"Could not reach {self.host}:{self.port} for MQTT over WebSocket: {exc}. "
                                      "Check the endpoint (aws iot describe-endpoint --endpoint-type "
                                      "iot:Data-ATS) and that it is running.") from None
        self._client = client
        client.loop_start()
        try:
            self._await(lambda: self._connack is not None, timeout, "the MQTT CONNACK",
                        f"AWS IoT closes the connection when the policy does not allow iot:Connect on "
                        f"arn:aws:iot:{self.region}:ACCOUNT:client/{self.client_id}.")
            if self._connack.is_failure:
                raise MqttConnectionError(
                    f"{self.host} refused the MQTT connection of client {self.client_id!r} "
                    f"({self._connack}). With IAM credentials the policy must allow "
                    f"iot:Connect on arn:aws:iot:{self.region}:ACCOUNT:client/{self.client_id}.")
            result, mid = client.subscribe(self.topic_filter, qos=self.qos)
            if result != paho.MQTT_ERR_SUCCESS:
                raise MqttConnectionError(f"Could not send the subscription to {self.topic_filter!r}: "
                                          f"{paho.error_string(result)}")
            self._await(lambda: self._suback is not None, timeout, f"the SUBACK for {self.topic_filter!r}",
                        "AWS IoT closes the connection when the policy does not allow iot:Subscribe on "
                        f"arn:aws:iot:{self.region}:ACCOUNT:topicfilter/{self.topic_filter}.")
            if any(code.is_failure for code in self._suback):
                raise MqttConnectionError(
                    f"{self.host} refused the subscription to {self.topic_filter!r}. The policy must allow "
                    f"iot:Subscribe on arn:aws:iot:{self.region}:ACCOUNT:topicfilter/{self.topic_filter} and "
                    "iot:Receive on the matching topics.")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Disconnect and stop the network thread (safe to call twice)."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        client.disconnect()
        client.loop_stop()

    def __enter__(self) -> "MqttWatch":
        return self if self._client is not None else self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- messages -------------------------------------------------------------------------------------
    @property
    def messages(self) -> list[Message]:
        """A snapshot of every message received so far, in arrival order."""
        with self._cond:
            return list(self._messages)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Message]:
        """Wait until at least ``n`` messages arrived; return all received so far (in order).

        Raises :class:`MqttTimeoutError` when fewer arrive in ``timeout`` seconds,
        and :class:`MqttConnectionError` when the connection closed first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < n:
                if self._disconnect_reason is not None:
                    raise MqttConnectionError(
                        f"The MQTT connection closed ({self._disconnect_reason}) after {len(self._messages)} "
                        f"of {n} expected messages on {self.topic_filter!r}. Start a new watch.")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MqttTimeoutError(
                        f"Only {len(self._messages)} of {n} expected messages arrived on {self.topic_filter!r} "
                        f"within {timeout:g} s. Check that the publish succeeded, that its topic matches the "
                        "filter, and that the policy allows iot:Receive.")
                self._cond.wait(remaining)
            return list(self._messages)

    # --- internals ------------------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise MqttConnectionError(f"Cannot use the CA bundle {self.ca_bundle}: {exc}") from None

    def _await(self, condition, timeout: float, what: str, hint: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: condition() or self._disconnect_reason is not None, timeout):
                raise MqttConnectionError(f"{self.host} did not send {what} within {timeout:g} s.")
            if not condition():
                raise MqttConnectionError(f"The connection to {self.host} closed before {what} "
                                          f"({self._disconnect_reason}). {hint}")

    def _explain_refusal(self, path: str, timeout: float) -> str:
        """Ask the endpoint again, plainly, why it refused the WebSocket upgrade (paho does not say)."""
        where = f"{self.host}:{self.port}"
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self._ssl_context())
        try:
            conn.request("GET", path, headers={
                "Host": _host_header(self.host, self.port), "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Protocol": "mqtt"})
            resp = conn.getresponse()
            status, reason = resp.status, resp.reason
        except (OSError, http.client.HTTPException) as exc:
            return f"{where} refused the MQTT over WebSocket handshake (and a second try failed: {exc})."
        finally:
            conn.close()
        if status == 403:
            return (f"{where} refused the MQTT over WebSocket connection (HTTP 403 Forbidden): the SigV4 "
                    f"signature was not accepted. Check the credentials (access key and secret), that region "
                    f"{self.region!r} is the endpoint's region, and that this machine's clock is right.")
        if status == 101:
            return f"{where} refused the MQTT over WebSocket handshake once, then accepted it: try again."
        return (f"{where} refused the MQTT over WebSocket handshake (HTTP {status} {reason}). Check that the "
                "endpoint is the iot:Data-ATS endpoint (aws iot describe-endpoint --endpoint-type iot:Data-ATS).")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connack = reason_code
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._cond:
            self._suback = list(reason_codes)
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        message = Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), received_at=time.time())
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()
        if self.on_message is not None:
            try:
                self.on_message(message)
            except Exception:  # the user's callback must not stop the watch; show what went wrong
                log.exception("on_message callback failed for a message on %s", message.topic)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            if not self._stopping:
                self._disconnect_reason = str(reason_code)
            self._cond.notify_all()


def watch_from_session(session, endpoint: str, topic_filter: str, *, ca_bundle=None, **kw) -> MqttWatch:
    """An :class:`MqttWatch` with the region and credentials of a boto3 ``Session`` (not started yet)."""
    credentials = session.get_credentials()
    if credentials is None:
        raise MqttConnectionError("The boto3 session has no credentials: configure them (aws configure, or "
                                  "the sandbox's settings.session()) and try again.")
    if not session.region_name:
        raise MqttConnectionError("The boto3 session has no region: create it with region_name=... (the region "
                                  "of the IoT endpoint).")
    return MqttWatch(endpoint, session.region_name, credentials, topic_filter, ca_bundle=ca_bundle, **kw)
