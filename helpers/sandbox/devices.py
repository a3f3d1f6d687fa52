"""MQTT devices: custom authentication on CONNECT, over TLS (ALPN ``mqtt``) and over WebSocket.

The broker (``helpers/sandbox/mqtt/``) owns the MQTT protocol and calls
:class:`DeviceHooks` to authenticate each CONNECT and to write its log entries;
this module turns a CONNECT into the custom-auth pipeline's inputs, as AWS
documents them (https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html):

- the username may carry a query string: ``name?x-amz-customauthorizer-name=A&
  x-amz-customauthorizer-signature=S&<tokenKeyName>=T`` (values URL-decoded; the
  AWS IoT Device SDKs append ``SDK=...&Version=...``, which is ignored);
- the function's event gets ``protocolData.mqtt`` with the whole username as
  sent, the password base64-encoded, and the client id when there is one;
- without an authorizer name, the account's default authorizer is used;
- over WebSocket the upgrade request's headers and query string also reach the
  event as ``protocolData.http``, and credentials found there were already
  checked at the upgrade (``dataplane.py``).

What a refused CONNECT gets (AWS lists 0x86 and 0x87 among the CONNACK reason
codes it sends, https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html):
credentials that do not authenticate (missing token or signature, a signature
that does not verify, ``isAuthenticated: false``) get *bad user name or
password* (3.1.1 return code 4, MQTT 5 0x86); everything else (no such
authorizer, a function that is missing, not permitted, crashing, slow or
answering nonsense, a policy without ``iot:Connect``) gets *not authorized*
(return code 5, 0x87). AWS does not say which code goes with which failure; the
split is the sandbox's choice.
"""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qsl

from . import core, custom_auth, iot_logs
from .services import iot
from .http11 import Connection
from .mqtt import auth as mqtt_auth
from .mqtt import broker as mqtt_broker

log = logging.getLogger("helpers.sandbox")

#: Pipeline stages whose failure means "these credentials are wrong" rather than "not allowed".
_BAD_CREDENTIALS = ("credentials", "signature")


def split_username(username: str | None) -> tuple[str | None, dict[str, str]]:
    """``"name?a=1&b=2"`` → ``("name", {"a": "1", "b": "2"})``, values URL-decoded; no ``?`` → no params.

    >>> split_username("dev?x-amz-customauthorizer-name=auth&tok=a%2Bb")
    ('dev', {'x-amz-customauthorizer-name': 'auth', 'tok': 'a+b'})
    """
    if username is None or "?" not in username:
        return username, {}
    name, _, query = username.partition("?")
    return name, dict(parse_qsl(query, keep_blank_values=True))


class DeviceHooks:
    """The broker's hooks: authenticate a CONNECT with the custom-auth pipeline; write AWSIotLogsV2 entries."""

    def __init__(self, ctx: core.Context):
        self.ctx = ctx
        self.account_id = ctx.account_id

    async def authenticate(self, conn: "mqtt_broker.ConnInfo", connect) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._authenticate, conn, connect)

    def context(self, server_name: str | None) -> core.Context:
        """The context of the region a device reached (from its TLS SNI)."""
        return self.ctx.in_region(iot.data_endpoint_region(self.ctx, server_name))

    def _authenticate(self, conn, connect):
        ctx = self.context(conn.server_name)
        attempt = custom_auth.Attempt()
        http = conn.http
        _, params = split_username(connect.username)
        try:
            authorizer = custom_auth.find_authorizer(ctx, params.get(custom_auth.AUTHORIZER_NAME_PARAM),
                                                     where="parameter in the MQTT username")
            token_key = authorizer.get("token_key_name")
            creds = custom_auth.Credentials(authorizer["name"], params.get(token_key) if token_key else None,
                                            params.get(custom_auth.SIGNATURE_PARAM),
                                            where="parameter in the MQTT username")
            mqtt = {"username": connect.username, "password": connect.password,
                    "clientId": connect.client_id or None}
            authorizer, result = custom_auth.authenticate(
                ctx, creds, authorizer=authorizer, attempt=attempt, mqtt=mqtt, http=http,
                tls_server_name=conn.server_name, connection_id=conn.connection_id)
        except custom_auth.AuthFailure as failure:
            return mqtt_broker.Refusal(not_authorized=failure.stage not in _BAD_CREDENTIALS,
                                       reason=custom_auth.AUTHENTICATION_FAILURE, details=failure.details)
        if not result.is_authenticated:
            return mqtt_broker.Refusal(not_authorized=False, reason=custom_auth.AUTHENTICATION_FAILURE,
                                       details="The authorizer function answered isAuthenticated: false.")
        return self.authorization(ctx, authorizer, result, conn, creds=creds, mqtt=mqtt, http=http)

    def authorization(self, ctx: core.Context, authorizer: dict | None, result, conn, *, creds=None, mqtt=None,
                      http=None):
        """The broker's Authorization for an authenticated connection (``result`` is a principal for SigV4)."""
        if authorizer is None:  # SigV4: the sandbox's signed identity may do everything (a sandbox choice)
            return mqtt_auth.AllowAll(principal_id=str(result), region=ctx.region, account_id=ctx.account_id)

        async def refresh():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self._refresh, ctx, authorizer, creds, mqtt, http, conn)

        return mqtt_auth.PolicyAuthorization(
            result.policies, principal_id=result.principal_id, region=ctx.region, account_id=ctx.account_id,
            refresh_after=result.refresh_after_seconds, disconnect_after=result.disconnect_after_seconds,
            refresher=refresh if creds is not None else None)

    def _refresh(self, ctx, authorizer, creds, mqtt, http, conn):
        """``refreshAfterInSeconds`` passed: the function is invoked again with the same credentials."""
        try:
            authorizer, result = custom_auth.authenticate(
                ctx, creds, mqtt=mqtt, http=http, tls_server_name=conn.server_name,
                connection_id=conn.connection_id)
        except custom_auth.AuthFailure as failure:
            return mqtt_broker.Refusal(not_authorized=True, reason=custom_auth.AUTHENTICATION_FAILURE,
                                       details=f"Policy refresh failed: {failure.details}")
        if not result.is_authenticated:
            return mqtt_broker.Refusal(not_authorized=True, reason=custom_auth.AUTHENTICATION_FAILURE,
                                       details="Policy refresh: the authorizer function answered "
                                               "isAuthenticated: false.")
        return self.authorization(ctx, authorizer, result, conn, creds=creds, mqtt=mqtt, http=http)

    def log_wanted(self, level: str) -> bool:
        """Whether AWS IoT logging is on at ``level`` (the broker builds no entry otherwise)."""
        return iot_logs.enabled(self.ctx, level)

    def log(self, entry: dict) -> None:
        # the broker's entries (their level as AWS gives it); written in the default region's log group
        iot_logs.write(self.ctx, entry, level=entry.get("logLevel") or iot_logs.level_for(entry.get("status", "")))


def serve_function(broker, hooks: DeviceHooks):
    """The gateway's ``mqtt(stream, connection, transport, upgrade)`` for this broker."""

    async def serve(stream, conn: Connection, transport: str, upgrade) -> None:
        preauth, headers, query = upgrade if upgrade else (None, None, None)
        info = mqtt_broker.ConnInfo(transport=transport, source_ip=conn.client_address[0],
                                    source_port=conn.client_address[1], server_name=conn.server_name,
                                    connection_id=conn.connection_id, preauth=preauth,
                                    http={"headers": headers, "queryString": query} if headers is not None else None)
        await broker.serve(stream, info)

    return serve
