"""What an authenticated MQTT connection may do: the ``Authorization`` objects the broker asks.

- :class:`PolicyAuthorization` - the policy documents a custom authorizer returned,
  evaluated with :func:`helpers.sandbox.authz.evaluate` (IAM logic: default deny,
  explicit Deny wins) and AWS's policy variables.
- :class:`AllowAll` - a SigV4-signed identity. Sandbox choice: the sandbox's one
  learner identity is treated as allowed for every ``iot:*`` action (on AWS its IAM
  policy decides; the sandbox has no IAM evaluation for data-plane actions).

>>> from helpers.sandbox import authz
>>> policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Publish",
...           "Resource": "arn:aws:iot:us-east-1:123456789012:topic/dev/${iot:ClientId}/*"}]}
>>> a = PolicyAuthorization([policy], principal_id="dev1", region="us-east-1", account_id="123456789012")
>>> a.decide("iot:Publish", authz.topic_arn("us-east-1", "123456789012", "dev/c1/t"), {"iot:ClientId": "c1"}).allowed
True
>>> a.decide("iot:Publish", authz.topic_arn("us-east-1", "123456789012", "dev/c2/t"), {"iot:ClientId": "c1"}).allowed
False
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from .. import authz


class PolicyAuthorization:
    """An authorization from parsed policy documents (dicts, or JSON strings).

    ``variables``: policy variables known for the whole connection (the broker adds
    the per-request ones: ``iot:ClientId``, ``aws:SourceIp``, ``iot:DomainName``);
    request variables win over these. ``refresher``: an async callable that invokes
    the authorizer again when ``refresh_after`` (seconds) passes and returns a new
    Authorization or a :class:`~helpers.sandbox.mqtt.broker.Refusal`; without one,
    :meth:`refresh` keeps this authorization.
    """

    def __init__(self, policies: list[dict | str], *, principal_id: str, region: str, account_id: str,
                 refresh_after: float | None = None, disconnect_after: float | None = None,
                 refresher: Callable[[], Awaitable[Any]] | None = None,
                 variables: dict[str, str] | None = None):
        self.policies = [json.loads(p) if isinstance(p, str) else p for p in policies]
        self.principal_id, self.region, self.account_id = principal_id, region, account_id
        self.refresh_after, self.disconnect_after = refresh_after, disconnect_after
        self.variables = dict(variables or {})
        self._refresher = refresher

    def decide(self, action: str, resource: str, variables: dict[str, str]) -> authz.Decision:
        merged = {**self.variables, **variables} if self.variables else variables
        return authz.evaluate(self.policies, action, resource, merged)

    async def refresh(self):
        if self._refresher is None:
            return self
        return await self._refresher()

    def __repr__(self) -> str:
        return (f"PolicyAuthorization(principal_id={self.principal_id!r}, policies={len(self.policies)}, "
                f"refresh_after={self.refresh_after}, disconnect_after={self.disconnect_after})")


class AllowAll:
    """Every action allowed: the sandbox's SigV4-signed learner identity (a sandbox choice)."""

    refresh_after = None
    disconnect_after = None

    def __init__(self, principal_id: str, region: str, account_id: str):
        self.principal_id, self.region, self.account_id = principal_id, region, account_id

    def decide(self, action: str, resource: str, variables: dict[str, str]) -> authz.Decision:
        return authz.Decision(True, "allowed: SigV4 identity (the sandbox allows its signed identity every "
                                    "iot:* action)", "Allow", None, None, None)

    async def refresh(self):
        return self

    def __repr__(self) -> str:
        return f"AllowAll(principal_id={self.principal_id!r})"
