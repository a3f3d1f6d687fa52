"""The terminal log viewer behind ``python -m helpers.sandbox log [--follow] [--group G] [--since S]``.

It reads the sandbox's CloudWatch Logs through boto3, with the same calls a
learner makes against AWS (``DescribeLogGroups``, then ``FilterLogEvents`` on
each group), merges the groups in time order and prints one line an event::

    13:02:11.123  lambda/custom-auth-function  START RequestId: 6f0c... Version: $LATEST
    13:02:11.130  iot                          Publish-In Failure AUTHORIZATION_FAILURE topic=test/cust-auth/topic ...

Times are the local time of day. ``AWSIotLogsV2`` entries (JSON) are shown
compactly (:func:`render_iot`); Lambda's ``<time>\\t<request id>\\t<LEVEL>\\t<text>``
lines lose the time and request id that the line already shows or that START
names. ``raw=True`` prints every message exactly as stored.

Usage:

>>> render_iot({"eventType": "Publish-In", "status": "Success", "topicName": "t/1", "principalId": "p"})
'Publish-In Success topic=t/1 principal=p'
>>> group_label("/aws/lambda/custom-auth-function"), group_label("AWSIotLogsV2")
('lambda/custom-auth-function', 'iot')
"""
from __future__ import annotations

import json
import re
import sys
import time
from typing import Any, TextIO

IOT_GROUP = "AWSIotLogsV2"
#: How far back each --follow poll looks again, so late-arriving events (a Lambda's log is written when it
#: ends, stamped with the times its lines were printed; Lambda's longest timeout is 15 minutes) are not missed.
FOLLOW_WINDOW_MS = 15 * 60 * 1000
LAMBDA_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z\t[0-9a-fA-F-]{36}\t([A-Z]+)\t", re.S)


def group_label(group: str) -> str:
    """A short name for a log group: ``iot`` for AWSIotLogsV2, ``lambda/NAME`` for a function's group."""
    if group == IOT_GROUP:
        return "iot"
    if group.startswith("/aws/lambda/"):
        return "lambda/" + group[len("/aws/lambda/"):]
    return group


def _flag(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "-" if value in (None, "") else str(value)


def render_iot(entry: dict) -> str:
    """One AWSIotLogsV2 entry as ``EVENT STATUS [REASON] topic=.. principal=.. [sandbox facts]  (details)``."""
    parts = [str(entry.get("eventType", "?")), str(entry.get("status", "?"))]
    if entry.get("reason"):
        parts.append(str(entry["reason"]))
    if "topicName" in entry:
        parts.append(f"topic={_flag(entry['topicName'])}")
    if "clientId" in entry:
        parts.append(f"client={_flag(entry['clientId'])}")
    parts.append(f"principal={_flag(entry.get('principalId'))}")
    extra = entry.get("sandbox") if isinstance(entry.get("sandbox"), dict) else {}
    facts = {**extra, **{k: entry[k] for k in ("signatureVerified", "lambdaInvoked") if k in entry}}
    for key in ("signatureVerified", "lambdaInvoked"):
        if key in facts:
            parts.append(f"{key}={_flag(facts[key])}")
    if facts.get("cachedDecision"):
        parts.append("cached=true")
    line = " ".join(parts)
    if entry.get("details"):
        line += f"  ({entry['details']})"
    return line


def render_message(group: str, message: str, raw: bool = False) -> str:
    """The readable form of one message (without its time and group)."""
    text = message.rstrip("\n")
    if raw:
        return text
    if group == IOT_GROUP:
        try:
            entry = json.loads(text)
        except ValueError:
            return text
        return render_iot(entry) if isinstance(entry, dict) else text
    m = LAMBDA_LINE_RE.match(text)
    if m:
        return f"{m.group(1)} {text[m.end():]}"
    return text


def format_line(timestamp_ms: int, label: str, message: str, width: int) -> str:
    """``HH:MM:SS.mmm  LABEL  MESSAGE``; continuation lines of a multi-line message are indented under it."""
    clock = time.strftime("%H:%M:%S", time.localtime(timestamp_ms / 1000)) + f".{timestamp_ms % 1000:03d}"
    head = f"{clock}  {label.ljust(width)}  "
    lines = message.split("\n")
    return "\n".join([head + lines[0]] + [" " * len(head) + rest for rest in lines[1:]])


def _group_names(client) -> list[str]:
    names: list[str] = []
    for page in client.get_paginator("describe_log_groups").paginate():
        names += [g["logGroupName"] for g in page["logGroups"]]
    return names


def _events(client, group: str, start_ms: int) -> list[dict]:
    events: list[dict] = []
    for page in client.get_paginator("filter_log_events").paginate(logGroupName=group, startTime=start_ms):
        events += page["events"]
    return events


def show_log(settings, *, follow: bool = False, group: str | None = None, since: float = 3600.0,
             out: TextIO = sys.stdout, poll_interval: float = 1.0, max_polls: int | None = None,
             raw: bool = False) -> int:
    """Print the sandbox's log events from ``since`` seconds ago (all groups, or ``group``); 0 when done.

    With ``follow`` it keeps polling every ``poll_interval`` s, printing each event once, until Ctrl-C
    (returns 130) or ``max_polls`` polls. Returns 1 when ``group`` does not exist (and not following) or the
    sandbox stops answering.
    """
    from botocore.exceptions import ClientError, EndpointConnectionError

    client = settings.client("logs")
    start_ms = int((time.time() - since) * 1000)
    seen: dict[str, int] = {}  # eventId -> timestamp, to print each event once when following
    polls = 0
    printed = 0
    try:
        while True:
            poll_started = int(time.time() * 1000)
            window_start = start_ms if polls == 0 else max(start_ms, poll_started - FOLLOW_WINDOW_MS)
            groups = [group] if group else _group_names(client)
            width = max([len(group_label(g)) for g in groups] + [3])
            batch = []
            for g in groups:
                try:
                    found = _events(client, g, window_start)
                except ClientError as err:
                    if err.response["Error"]["Code"] != "ResourceNotFoundException":
                        raise
                    if follow:
                        continue  # the group appears with its first event
                    known = ", ".join(_group_names(client)) or "none yet"
                    print(f"No log group named {g!r} in the sandbox (log groups: {known}). Lambda functions get "
                          "/aws/lambda/NAME when first invoked; AWSIotLogsV2 appears with the first IoT "
                          "authorization decision.", file=out)
                    return 1
                batch += [(e["timestamp"], e.get("ingestionTime", 0), e["eventId"], g, e["message"])
                          for e in found if e["eventId"] not in seen]
            batch.sort()
            for ts, _ingested, event_id, g, message in batch:
                seen[event_id] = ts
                print(format_line(ts, group_label(g), render_message(g, message, raw), width), file=out)
            printed += len(batch)
            out.flush()
            for event_id in [k for k, ts in seen.items() if ts < poll_started - 2 * FOLLOW_WINDOW_MS]:
                del seen[event_id]  # older than any later poll looks
            if not follow:
                if printed == 0:
                    where = f"log group {group}" if group else "the sandbox's logs"
                    print(f"(no events in {where} in the last {since / 60:g} minutes)", file=out)
                return 0
            polls += 1
            if max_polls is not None and polls >= max_polls:
                return 0
            time.sleep(poll_interval)
    except KeyboardInterrupt:
        return 130
    except EndpointConnectionError as exc:
        print(f"The sandbox stopped answering ({exc}). Start it again: python -m helpers.sandbox start", file=out)
        return 1
