"""AWSIotLogsV2: the one writer for AWS IoT's device-gateway log entries, every protocol.

Entries follow AWS IoT's log-entry format (https://docs.aws.amazon.com/iot/latest/developerguide/cwl-format.html):
``timestamp``, ``logLevel``, ``traceId``, ``accountId``, ``status``, ``eventType``, ``protocol`` and the
event's own fields, plus a ``sandbox`` object with what only a sandbox can see.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

log = logging.getLogger("helpers.sandbox")

LOG_GROUP = "AWSIotLogsV2"


_second: list = [None, ""]   # the last second formatted, since every entry in it shares the prefix


def timestamp(now: dt.datetime) -> str:
    """``2024-01-02 03:04:05.678``, the format of AWS IoT's log entries."""
    second = now.replace(microsecond=0)
    if _second[0] != second:
        _second[:] = [second, second.strftime("%Y-%m-%d %H:%M:%S")]
    return f"{_second[1]}.{now.microsecond // 1000:03d}"


def entry(ctx, *, event_type: str, status: str, protocol: str, trace_id: str | None = None,
          level: str | None = None, **fields) -> dict:
    """A log entry with AWS's common fields first; ``fields`` whose value is None are left out."""
    now = dt.datetime.now(dt.timezone.utc)
    out = {"timestamp": timestamp(now), "logLevel": level or ("INFO" if status == "Success" else "ERROR"),
           "traceId": trace_id or str(uuid.uuid4()), "accountId": ctx.account_id, "status": status,
           "eventType": event_type, "protocol": protocol}
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


def write(ctx, entry: dict, *, level: str | None = None) -> None:
    """Queue one entry for AWSIotLogsV2 (never raises: a log write must not change an answer)."""
    if getattr(ctx, "logs", None) is None:
        return
    now = dt.datetime.now(dt.timezone.utc)
    try:
        ctx.logs.put_events(LOG_GROUP, f"{now:%Y/%m/%d}/device-gateway",
                            [(int(now.timestamp() * 1000), json.dumps(entry))])
    except Exception:  # noqa: BLE001
        log.exception("could not write the AWSIotLogsV2 entry")
