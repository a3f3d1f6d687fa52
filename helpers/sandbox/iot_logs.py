"""AWS IoT logging (``AWSIotLogsV2``): written only when the account turned it on, at or above its level.

On AWS, nothing reaches the ``AWSIotLogsV2`` log group until someone calls
``SetV2LoggingOptions`` with a role that AWS IoT can assume (trusted by
``iot.amazonaws.com``) and a ``defaultLogLevel`` other than ``DISABLED``; from
then on, an event is logged when its level is at or above the chosen one
(``DEBUG`` logs everything, ``ERROR`` only failures). Until the first entry is
written the log group does not exist, so the Logs API answers
``ResourceNotFoundException`` as AWS does.

The levels AWS gives each event are in its log-entry reference
(https://docs.aws.amazon.com/iot/latest/developerguide/cwl-format.html): a
successful Connect, Publish-In, Subscribe or Disconnect is ``INFO``; a failure
(``status: Failure``) is ``ERROR``. Level meanings:
https://docs.aws.amazon.com/iot/latest/developerguide/configure-logging.html

Every writer of ``AWSIotLogsV2`` entries goes through :func:`write`; the
operations ``SetV2LoggingOptions`` / ``GetV2LoggingOptions`` are served by
``services/iot.py`` with :func:`set_options` / :func:`get_options`.

Choices where AWS is silent (also in the sandbox README):

- the options are kept per region (AWS's are per account and region);
- ``SetV2LoggingOptions`` without a ``roleArn`` is refused until a role was set
  once (the sandbox cannot log without one); a role that does not exist or does
  not trust ``iot.amazonaws.com`` is refused with ``InvalidRequestException``;
- if the role is deleted later, nothing more is logged (AWS IoT could no longer
  assume it);
- ``eventConfigurations`` overrides are stored and honoured per ``eventType``
  (their ``logDestination`` is ignored: everything goes to CloudWatch Logs).

Usage:

>>> from helpers.sandbox import core
>>> from helpers.sandbox.store import Store
>>> ctx = core.Context(store=Store(":memory:"))
>>> enabled(ctx, "ERROR")
False
>>> set_options(ctx, {"defaultLogLevel": "WARN"}, role_check=lambda ctx, arn: None,
...             role_arn="arn:aws:iam::123456789012:role/iot-logging")
>>> get_options(ctx)["defaultLogLevel"], passes(get_options(ctx), "ERROR"), passes(get_options(ctx), "INFO")
('WARN', True, False)
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any, Callable

from helpers.sandbox import core
from helpers.sandbox.core import AwsError

log = logging.getLogger(__name__)

LOG_GROUP = "AWSIotLogsV2"
#: Most verbose first: a level logs its own events and every level after it.
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
LOG_LEVELS = LEVELS + ("DISABLED",)
#: The level AWS gives an entry with this ``status``.
LEVEL_FOR_STATUS = {"Success": "INFO", "Failure": "ERROR"}
SETTING_PREFIX = "iot.v2_logging_options"
IOT_PRINCIPAL = "iot.amazonaws.com"


def level_for(status: str) -> str:
    """The level AWS logs an event with this status at (``Success`` → INFO, ``Failure`` → ERROR)."""
    return LEVEL_FOR_STATUS.get(status, "ERROR")


def _key(ctx) -> str:
    return f"{SETTING_PREFIX}.{getattr(ctx, 'region', None) or core.REGION}"


def get_options(ctx) -> dict[str, Any] | None:
    """The stored options (roleArn, defaultLogLevel, disableAllLogs, eventConfigurations), or None."""
    store = getattr(ctx, "store", None)
    if store is None:
        return None
    text = store.get_setting(_key(ctx))
    return json.loads(text) if text else None


def role_trusts_iot(ctx, role_arn: str) -> None:
    """Raise InvalidRequestException unless ``role_arn`` is a role of this sandbox trusted by iot.amazonaws.com."""
    from helpers.sandbox.services import iam

    role = iam.role_by_arn(ctx, role_arn)
    if role is None:
        raise AwsError("InvalidRequestException",
                       f"The role {role_arn} does not exist: create it first (aws iam create-role "
                       f"--assume-role-policy-document trusting {IOT_PRINCIPAL}), then pass its ARN.", 400)
    if not _trusts(role.get("AssumeRolePolicyDocument"), IOT_PRINCIPAL):
        raise AwsError("InvalidRequestException",
                       f"AWS IoT cannot assume the role {role_arn}: its trust policy must allow "
                       f"sts:AssumeRole for the service principal {IOT_PRINCIPAL}.", 400)


def _trusts(document: Any, service: str) -> bool:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return False
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements:
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            continue
        principal = st.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        if service in services:
            return True
    return False


def set_options(ctx, body: dict, *, role_arn: str | None = None,
                role_check: Callable[[Any, str], None] = role_trusts_iot) -> None:
    """Validate and store SetV2LoggingOptions' members (raises AwsError as AWS would)."""
    current = get_options(ctx) or {}
    role_arn = role_arn if role_arn is not None else body.get("roleArn")
    level = body.get("defaultLogLevel", current.get("defaultLogLevel", "ERROR"))
    disable = body.get("disableAllLogs", False)
    if level not in LOG_LEVELS:
        raise AwsError("InvalidRequestException",
                       f"defaultLogLevel {str(level)[:40]!r} is not valid: use one of {', '.join(LOG_LEVELS)}.", 400)
    if not isinstance(disable, bool):
        raise AwsError("InvalidRequestException", "disableAllLogs must be true or false.", 400)
    if role_arn is None:
        role_arn = current.get("roleArn")
        if role_arn is None:
            raise AwsError("InvalidRequestException",
                           "roleArn is required: AWS IoT needs a role trusted by iot.amazonaws.com that may "
                           "write to CloudWatch Logs (for example with the managed policy "
                           "service-role/AWSIoTLogging).", 400)
    if not isinstance(role_arn, str) or not role_arn.startswith("arn:"):
        raise AwsError("InvalidRequestException", f"roleArn {str(role_arn)[:80]!r} is not an IAM role ARN.", 400)
    role_check(ctx, role_arn)
    events = body.get("eventConfigurations", current.get("eventConfigurations", []))
    if not isinstance(events, list) or not all(
            isinstance(e, dict) and isinstance(e.get("eventType"), str)
            and e.get("logLevel", level) in LOG_LEVELS for e in events):
        raise AwsError("InvalidRequestException",
                       "eventConfigurations must be a list of {eventType, logLevel} objects with a valid logLevel.",
                       400)
    options = {"roleArn": role_arn, "defaultLogLevel": level, "disableAllLogs": disable}
    if events:
        options["eventConfigurations"] = events
    ctx.store.set_setting(_key(ctx), json.dumps(options))


def passes(options: dict | None, level: str, event_type: str | None = None) -> bool:
    """Whether ``options`` log an event at ``level`` (of ``event_type``), leaving the role aside."""
    if not options or options.get("disableAllLogs"):
        return False
    threshold = options.get("defaultLogLevel", "DISABLED")
    for override in options.get("eventConfigurations", ()):
        if event_type and override.get("eventType") == event_type and override.get("logLevel"):
            threshold = override["logLevel"]
    if threshold not in LEVELS or level not in LEVELS:
        return False
    return LEVELS.index(level) >= LEVELS.index(threshold)


#: (region store, IAM store) -> (their generations, options, whether the role exists): read again only after a
#: transaction committed in either, so the publish path's log writes cost no database reads.
_state: dict[tuple[int, int], tuple[tuple[int, int], dict | None, bool]] = {}


def _options_and_role(ctx) -> tuple[dict | None, bool]:
    store = getattr(ctx, "store", None)
    iam_store = getattr(ctx, "iam_store", None) or store
    generations = (getattr(store, "generation", None), getattr(iam_store, "generation", None))
    key = (id(store), id(iam_store))
    hit = _state.get(key)
    if hit is not None and hit[0] == generations and None not in generations:
        return hit[1], hit[2]
    options = get_options(ctx)
    role = False
    if options and options.get("roleArn"):
        try:  # AWS IoT writes as the role: no role, no logs
            from helpers.sandbox.services import iam
            role = iam.role_by_arn(ctx, options["roleArn"]) is not None
        except Exception:  # a missing IAM table (a partial sandbox in tests) means no role
            role = False
    _state[key] = (generations, options, role)
    return options, role


def enabled(ctx, level: str, event_type: str | None = None) -> bool:
    """Whether an event at ``level`` (of ``event_type``) is logged now."""
    options, role = _options_and_role(ctx)
    return passes(options, level, event_type) and role


_second: list = [None, ""]   # the last second formatted: every entry in it shares the prefix


def timestamp(now: dt.datetime) -> str:
    """``2024-01-02 03:04:05.678``, the format of AWS IoT's log entries."""
    second = now.replace(microsecond=0)
    if _second[0] != second:
        _second[:] = [second, second.strftime("%Y-%m-%d %H:%M:%S")]
    return f"{_second[1]}.{now.microsecond // 1000:03d}"


def entry(ctx, *, event_type: str, status: str, protocol: str, trace_id: str | None = None, **fields) -> dict:
    """An entry with AWS's common fields in their documented order; ``fields`` that are None are left out.
    :func:`write` adds ``timestamp`` and ``logLevel``."""
    out = {"traceId": trace_id or str(uuid.uuid4()), "accountId": ctx.account_id, "status": status,
           "eventType": event_type, "protocol": protocol}
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


def write(ctx, entry: dict, *, level: str) -> None:
    """Write one AWSIotLogsV2 entry if logging is on at ``level``; never raises.

    ``entry`` is AWS IoT's log-entry document; ``logLevel`` (and ``timestamp`` and
    ``accountId`` when missing) are filled in here.
    """
    logs = getattr(ctx, "logs", None)
    if logs is None:
        return
    try:
        if not enabled(ctx, level, entry.get("eventType")):
            return
        now = dt.datetime.now(dt.timezone.utc)
        doc = {"timestamp": timestamp(now), "logLevel": level}
        doc.update({k: v for k, v in entry.items() if k != "logLevel"})
        doc["logLevel"] = level
        doc.setdefault("accountId", getattr(ctx, "account_id", core.ACCOUNT_ID))
        # Keep the documented order: timestamp, logLevel first.
        ordered = {"timestamp": doc.pop("timestamp"), "logLevel": doc.pop("logLevel"), **doc}
        logs.put_events(LOG_GROUP, f"{now:%Y/%m/%d}/device-gateway",
                        [(int(now.timestamp() * 1000), json.dumps(ordered))])
    except Exception:  # a log write must never turn an answer into a 500
        log.exception("could not write the AWSIotLogsV2 entry")
