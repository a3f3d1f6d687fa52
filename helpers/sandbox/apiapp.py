"""The API endpoint: one URL for every AWS service the tutorial calls.

A request flows: TLS and HTTP/1.1 (``gateway``, ``http11``) → SigV4 check against the keys this sandbox
accepts (``ctx.credentials``: the home's own pair and the temporary credentials
it issued; ``sigv4``) → the service module named by the credential scope's service →
that module's router → its models in SQLite. Errors become AWS's error
documents in the service's own wire protocol, so botocore raises the modelled
exception class.
"""
from __future__ import annotations

import asyncio
import logging
from types import ModuleType

from . import core, sigv4
from .core import AwsError, Request, Response

log = logging.getLogger("helpers.sandbox")


#: Largest request body accepted: Lambda's CreateFunction takes a 50 MB zip, base64 in JSON (~67 MB).
MAX_BODY = 70 * 1024 * 1024


class ApiApp:
    """The API endpoint's app: ``early`` refuses an unauthenticated request from its head, before its body is
    read; ``respond`` runs the SigV4 check and the service in the gateway's executor (both block)."""

    max_body = MAX_BODY

    def __init__(self, ctx: core.Context, services: list[ModuleType],
                 credentials: dict[str, str] | None = None):
        self.ctx = ctx
        self.credentials = credentials if credentials is not None else ctx.credentials
        self.by_name: dict[str, ModuleType] = {}
        for module in services:
            for name in module.SIGNING_NAMES:
                self.by_name[name] = module

    def early(self, req: Request) -> Response | None:
        """AWS's answer for a request whose head already shows it cannot be authenticated, else None."""
        if "X-Amz-Credential=" in req.raw_query and "authorization" not in req.headers:
            return None  # presigned: checked with the body
        try:
            scope, _, _ = sigv4.parse_authorization(req.headers)
            if not sigv4.known_key(self.credentials, scope.access_key):
                raise sigv4.SignatureError("unknown-key", service=scope.service)
        except sigv4.SignatureError as err:
            module = self.by_name.get(err.service)
            protocol = module.PROTOCOL if module else "rest-json"
            log.info("rejected %s %s before its body: %s", req.method, req.path, err.message)
            return core.error_response(err.for_protocol(protocol), protocol, req.request_id)
        return None

    async def respond(self, req: Request) -> Response:
        return await asyncio.get_running_loop().run_in_executor(None, self, req)

    def __call__(self, req: Request) -> Response:
        module = None
        try:
            scope = sigv4.verify(req.method, req.path, req.raw_query, req.headers, req.body, self.credentials)
            if scope.region not in core.REGIONS:  # AWS's words for a scope naming no region it has
                raise sigv4.SignatureError("scope", f"Credential should be scoped to a valid region, not "
                                           f"'{scope.region}'.", scope.service)
            module = self.by_name.get(scope.service)
            if module is None:
                raise AwsError("UnknownServiceException",
                               f"The sandbox does not serve the '{scope.service}' service. It serves: "
                               f"{', '.join(sorted(self.by_name))}.", 400)
            req.service, req.region, req.credential = scope.service, scope.region, scope.credential
            return module.handle(req, self.ctx.in_region(scope.region))
        except sigv4.SignatureError as err:
            module = module or self.by_name.get(err.service)
            protocol = module.PROTOCOL if module else "rest-json"
            log.info("rejected %s %s: %s", req.method, req.path, err.message)
            return core.error_response(err.for_protocol(protocol), protocol, req.request_id)
        except AwsError as err:
            protocol = module.PROTOCOL if module else "rest-json"
            return core.error_response(err, protocol, req.request_id)
