"""The API endpoint: one URL for every AWS service the tutorial calls.

A request flows: TLS (``server``) → SigV4 check against the keys this sandbox
accepts (``ctx.credentials``: the home's own pair and the temporary credentials
it issued; ``sigv4``) → the service module named by the credential scope's service →
that module's router → its models in SQLite. Errors become AWS's error
documents in the service's own wire protocol, so botocore raises the modelled
exception class.
"""
from __future__ import annotations

import logging
from types import ModuleType

from . import core, sigv4
from .core import AwsError, Request, Response

log = logging.getLogger("helpers.sandbox")


class ApiApp:
    def __init__(self, ctx: core.Context, services: list[ModuleType],
                 credentials: dict[str, str] | None = None):
        self.ctx = ctx
        self.credentials = credentials if credentials is not None else ctx.credentials
        self.by_name: dict[str, ModuleType] = {}
        for module in services:
            for name in module.SIGNING_NAMES:
                self.by_name[name] = module

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
