"""Plumbing around the HTTPS publish lesson: URLs, headers, the curl line, and one ``send``.

A device publishes to AWS IoT Core over HTTPS with ``POST https://ENDPOINT/topics/TOPIC?qos=N``
(AWS IoT Developer Guide, "HTTPS": https://docs.aws.amazon.com/iot/latest/developerguide/http.html).
With a custom authorizer the request names the authorizer and carries the token and its
signature, either as HTTP headers or as query parameters
(https://docs.aws.amazon.com/iot/latest/developerguide/custom-auth.html, "HTTP"):

- ``x-amz-customauthorizer-name``: the authorizer;
- ``<tokenKeyName>``: the token, under the header name the authorizer was created with;
- ``x-amz-customauthorizer-signature``: the base64 signature of the token.

The notebook cell shows the ``requests.post(...)`` call itself; this module builds its
pieces and gives the Send button of notebook 06 (and the headless cell after it) one
function to call, :func:`send`.

Usage:

>>> publish_url("example-ats.iot.us-west-2.amazonaws.com", "test/cust auth", action_token="allow")
'https://example-ats.iot.us-west-2.amazonaws.com/topics/test/cust%20auth?qos=0&actionToken=allow'
>>> headers = custom_auth_headers("my-authorizer", "tokenKeyName", "tokenKeyValue", "c2ln+/=")
>>> headers["x-amz-customauthorizer-signature"]
'c2ln+/='
>>> print(curl_command("https://h/topics/t?qos=0", {"tokenKeyName": "tokenKeyValue"}, '{"a": 1}'))
curl \\
  --request POST \\
  'https://h/topics/t?qos=0' \\
  --header 'tokenKeyName: tokenKeyValue' \\
  --data-binary '{"a": 1}'
>>> query_auth_url("h", "t", authorizer="a", token_key_name="tokenKeyName", token="v", signature="s+/=")
'https://h/topics/t?qos=0&x-amz-customauthorizer-name=a&tokenKeyName=v&x-amz-customauthorizer-signature=s%2B%2F%3D'
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import requests

from helpers.errors import WorkbookError

AUTHORIZER_HEADER = "x-amz-customauthorizer-name"
SIGNATURE_HEADER = "x-amz-customauthorizer-signature"
#: Seconds to wait for the endpoint's answer (the authorizer's Lambda function runs inside it).
TIMEOUT = 15

__all__ = ["AUTHORIZER_HEADER", "SIGNATURE_HEADER", "PublishConnectionError", "PublishError", "PublishResult",
           "curl_command", "custom_auth_headers", "custom_auth_inputs", "signature_setup", "publish_url",
           "query_auth_url", "send"]
#: What a request through the custom authorizer needs from the earlier notebooks, and the notebook that records each.
RECORDED_BY = {"private_key_path": "02-key-pair", "authorizer_arn": "03-create-authorizer",
               "token_key_name": "03-create-authorizer", "statement_id": "04-grant-permission",
               "token": "05-test-invoke"}


class PublishError(WorkbookError):
    """An HTTPS publish could not be made; the message says why and what to do."""


class PublishConnectionError(PublishError):
    """The data endpoint could not be reached, did not answer in time, or its certificate was not trusted."""


class CustomAuthInputs(NamedTuple):
    token_key_name: str
    token: str
    private_key_path: str


def custom_auth_inputs(state, **also_needed: str) -> CustomAuthInputs:
    """The token key name, the token and the private key's path, as notebooks 02-05 recorded them.

    Checks everything a request through the custom authorizer needs (:data:`RECORDED_BY`: the
    authorizer and its permission too) at once, so a :class:`~helpers.errors.NotReadyError` names every
    notebook still to run; ``also_needed`` adds ``key="notebook"`` pairs. The notebook signs the token.

    >>> import tempfile, pathlib
    >>> from helpers.state import WorkbookState
    >>> tmp = tempfile.TemporaryDirectory()
    >>> state = WorkbookState.load(pathlib.Path(tmp.name) / "state.json")
    >>> state.set(private_key_path="k.pem", authorizer_arn="arn", token_key_name="tokenKeyName", statement_id="Id")
    >>> custom_auth_inputs(state)
    Traceback (most recent call last):
    ...
    helpers.errors.NotReadyError: token is not recorded yet: run notebook 05-test-invoke first, then run this cell again.
    >>> state.set(token="tokenKeyValue")
    >>> token_key_name, token, private_key_path = custom_auth_inputs(state)
    >>> token_key_name, token, private_key_path
    ('tokenKeyName', 'tokenKeyValue', 'k.pem')
    >>> tmp.cleanup()
    """
    state.require_all(**RECORDED_BY, **also_needed)
    return CustomAuthInputs(state["token_key_name"], state["token"], state["private_key_path"])


def _query(pairs: list[tuple[str, str]]) -> str:
    # quote (not quote_plus) with safe="": '+', '/', '=' and ' ' all become %XX, so a base64 value survives
    return urlencode(pairs, quote_via=quote, safe="")


def _base(data_endpoint: str, topic: str) -> str:
    host = data_endpoint.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    return f"https://{host.rstrip('/')}/topics/{quote(topic, safe='/')}"


def publish_url(data_endpoint: str, topic: str, *, qos: int = 0, action_token: str | None = None,
                extra_query: dict | None = None) -> str:
    """``https://ENDPOINT/topics/TOPIC?qos=N[&actionToken=...]``: the topic URL-encoded, its '/' kept."""
    pairs = [("qos", str(qos))]
    if action_token is not None:
        pairs.append(("actionToken", action_token))
    pairs.extend((str(key), str(value)) for key, value in (extra_query or {}).items())
    return f"{_base(data_endpoint, topic)}?{_query(pairs)}"


def custom_auth_headers(authorizer: str, token_key_name: str, token: str, signature: str | None) -> dict[str, str]:
    """The three custom-auth headers. ``signature=None`` leaves the signature out (signing disabled)."""
    headers = {AUTHORIZER_HEADER: authorizer, token_key_name: token}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return headers


def curl_command(url: str, headers: dict, body: bytes | str, *, cacert: str | None = None) -> str:
    """The same request as a copy-pasteable ``curl`` command, every argument shell-quoted.

    It holds what it is given (the CA file when given, the URL, the headers, the body) except the
    token signature, which is never written out: the signature header reads ``"$SIGNATURE"``, a shell
    variable that :func:`signature_setup` shows how to set. A body that is not UTF-8 text cannot be
    written on a command line: that is a ValueError.
    """
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"The body is {len(body)} bytes of binary data, which a shell command line cannot "
                             "hold: save it to a file and use curl --data-binary @FILE.") from None
    lines = ["curl"]
    if cacert is not None:
        lines.append(f"--cacert {shlex.quote(str(cacert))}")
    lines += ["--request POST", shlex.quote(url)]
    lines += [f'--header "{name}: $SIGNATURE"' if name.lower() == SIGNATURE_HEADER
              else f"--header {shlex.quote(f'{name}: {value}')}" for name, value in headers.items()]
    lines.append(f"--data-binary {shlex.quote(body)}")
    return " \\\n  ".join(lines)


def signature_setup(private_key_path: str, token_variable: str = "TOKEN") -> str:
    """The shell lines that put the token's signature into ``$SIGNATURE`` (so no output ever holds it).

    >>> print(signature_setup(".workbook/keys/token-signing-private-key.pem"))
    SIGNATURE="$(printf %s "$TOKEN" | openssl dgst -sha256 -sign .workbook/keys/token-signing-private-key.pem | openssl base64 -A)"
    """
    return (f'SIGNATURE="$(printf %s "${token_variable}" | openssl dgst -sha256 -sign '
            f'{shlex.quote(str(private_key_path))} | openssl base64 -A)"')


def query_auth_url(data_endpoint: str, topic: str, *, authorizer: str, token_key_name: str, token: str,
                   signature: str, qos: int = 0, action_token: str | None = None) -> str:
    """The publish URL with the credentials as query parameters instead of headers.

    Every value is URL-encoded (``quote(value, safe="")``): a base64 signature contains '+', '/'
    and '=', which would otherwise arrive changed ('+' as a space) and fail verification.
    """
    pairs = [("qos", str(qos))]
    if action_token is not None:
        pairs.append(("actionToken", action_token))
    pairs += [(AUTHORIZER_HEADER, authorizer), (token_key_name, token), (SIGNATURE_HEADER, signature)]
    return f"{_base(data_endpoint, topic)}?{_query(pairs)}"


@dataclass
class PublishResult:
    """What the endpoint answered: 200 with ``{"message": "OK", "traceId": ...}``, or an error."""

    status: int
    body: dict | str
    trace_id: str | None
    ok: bool
    curl: str

    def summary(self) -> str:
        """Status line and body, as the notebook shows them."""
        body = json.dumps(self.body, indent=2, sort_keys=True) if isinstance(self.body, dict) else self.body
        verdict = "published" if self.ok else "refused"
        return f"HTTP {self.status} ({verdict})\n{body}"


def _payload_bytes(payload: bytes | str | dict) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, dict):
        return json.dumps(payload).encode("utf-8")
    raise TypeError(f"payload must be bytes, str or dict, not {type(payload).__name__}.")


def _parse_body(resp) -> dict | str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text
    return body if isinstance(body, dict) else resp.text


def send(wb: Any, topic: str, payload: bytes | str | dict, *, authorizer: str, token_key_name: str, token: str,
         signature: str | None, action_token: str | None = "allow", qos: int = 0, session=None) -> PublishResult:
    """POST ``payload`` to ``topic`` through the custom authorizer and return what the endpoint said.

    Uses ``wb.data_endpoint`` and ``wb.tls_verify``. A refusal (403 Forbidden and the like) is a
    result, not an error: ``result.ok`` is False. Only a request that gets no HTTP answer at all
    raises :class:`PublishConnectionError`. ``session``: a ``requests.Session`` to reuse one
    connection (keep-alive), else a new connection per call.
    """
    body = _payload_bytes(payload)
    endpoint = wb.data_endpoint
    url = publish_url(endpoint, topic, qos=qos, action_token=action_token)
    headers = custom_auth_headers(authorizer, token_key_name, token, signature)
    verify = wb.tls_verify
    try:
        curl = curl_command(url, headers, body, cacert=verify if isinstance(verify, str) else None)
    except ValueError as error:
        curl = f"# no curl line: {error}"
    try:
        resp = (session or requests).post(url, data=body, headers=headers, verify=verify, timeout=TIMEOUT)
    except requests.exceptions.SSLError as error:
        raise PublishConnectionError(
            f"The TLS certificate of {endpoint} was not trusted ({_reason(error)}). On the sandbox, pass "
            "verify=wb.tls_verify (its CA file); on AWS, check AWS_CA_BUNDLE.") from None
    except requests.exceptions.Timeout:
        raise PublishConnectionError(
            f"{endpoint} did not answer within {TIMEOUT} s. Is the sandbox running (.venv/bin/python -m helpers.sandbox "
            "status)? Is the authorizer's Lambda function hanging (see its log)?") from None
    except requests.exceptions.RequestException as error:
        raise PublishConnectionError(
            f"Could not reach {endpoint} ({_reason(error)}). Is the sandbox running (.venv/bin/python -m helpers.sandbox "
            "status)? Is the endpoint right (wb.data_endpoint, from describe-endpoint "
            "--endpoint-type iot:Data-ATS)?") from None
    parsed = _parse_body(resp)
    trace_id = parsed.get("traceId") if isinstance(parsed, dict) else None
    return PublishResult(status=resp.status_code, body=parsed, trace_id=trace_id, ok=resp.status_code == 200,
                         curl=curl)


def _reason(error: Exception) -> str:
    """The innermost cause of a requests/urllib3 error, in one short line."""
    cause: BaseException = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    text = str(cause) or type(cause).__name__
    return text.split("\n")[0][:200]
