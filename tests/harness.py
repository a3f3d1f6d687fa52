"""In-process harness: a real botocore client whose requests are answered by a service module.

botocore serializes each call exactly as it would for AWS; instead of going on the
network, the ``before-send`` hook hands the prepared request to the service's
``handle(req, ctx)`` and returns its response for botocore to parse. Wire-format
mistakes therefore surface as parse errors or wrong exception classes, without a
server. (SigV4 and TLS are exercised by the end-to-end tests instead.)
"""
from __future__ import annotations

from urllib.parse import urlsplit

import boto3
from botocore.awsrequest import AWSResponse

from helpers.sandbox import core


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_kw):
        yield self._body

    def read(self, *_a, **_kw):
        return self._body


def client(service_name: str, module, ctx: core.Context, region: str = core.REGION):
    """A boto3 client for ``service_name`` served in-process by ``module.handle``."""
    session = boto3.session.Session(
        aws_access_key_id="SANDBOXHARNESS000000",  # the harness skips SigV4: any key pair will do
        aws_secret_access_key="harness-secret-not-checked",
        region_name=region,
    )
    c = session.client(service_name, endpoint_url="https://sandbox.invalid")

    def answer(request, **_kw):
        parts = urlsplit(request.url)
        body = request.body or b""
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        req = core.Request(
            method=request.method,
            path=parts.path or "/",
            raw_query=parts.query,
            headers={k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()},
            body=body,
            service=getattr(module, "SIGNING_NAMES", (service_name,))[0],
            region=region,
        )
        try:
            resp = module.handle(req, ctx)
        except core.AwsError as err:
            resp = core.error_response(err, module.PROTOCOL, req.request_id)
        return AWSResponse(request.url, resp.status, resp.headers, _Raw(resp.body))

    c.meta.events.register("before-send", answer)
    return c
