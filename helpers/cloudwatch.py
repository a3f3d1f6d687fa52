"""Reading CloudWatch Logs the way notebook 08 does: plumbing around ``filter_log_events``.

The notebook keeps the lesson (which log group holds what, and the ``filter_log_events`` call with
its CLI line) and calls these helpers for the parts that are only parsing and patience:

- :func:`decision_for`: the ``AWSIotLogsV2`` entry of one request, found by its trace id;
- :func:`split_invocations`: a Lambda log's lines grouped per invocation (``START`` ... ``END``);
- :func:`invocation_lines`: the lines of the first invocation that mentions some text;
- :func:`count_events`: how many events of a group match a filter pattern since a time;
- :func:`entry_for_client`: the newest ``AWSIotLogsV2`` entry of one event type for one MQTT client id;
- :func:`format_entry`: such an entry's documented fields as text, the sandbox's extras on a line of their own.

AWS delivers log events a few seconds after the fact
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/WhatIsCloudWatchLogs.html), so each reader
asks again for a while (``attempts`` x ``delay``) before giving up; the sandbox writes at once, so
there the first read answers.

Usage:

>>> split_invocations(["START RequestId: 1", "Event received: {}", "END RequestId: 1", "REPORT RequestId: 1",
...                    "START RequestId: 2", "END RequestId: 2"])
[['START RequestId: 1', 'Event received: {}', 'END RequestId: 1'], ['START RequestId: 2', 'END RequestId: 2']]
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable

__all__ = ["count_events", "decision_for", "entry_for_client", "format_entry", "invocation_lines", "now_ms",
           "split_invocations"]


def now_ms() -> int:
    """Now, in the milliseconds since the epoch that ``startTime`` takes."""
    return int(time.time() * 1000)


def _events(logs, **query) -> list[dict]:
    """Every event of one ``filter_log_events`` query, all pages."""
    events, token = [], None
    while True:
        page = logs.filter_log_events(**query, **({"nextToken": token} if token else {}))
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def _ask_again(read: Callable[[], Any], enough: Callable[[Any], bool], attempts: int, delay: float,
               sleep: Callable[[float], None]) -> Any:
    """``read()`` until ``enough(answer)``, at most ``attempts`` times ``delay`` seconds apart; the last answer."""
    for attempt in range(attempts):
        answer = read()
        if enough(answer) or attempt + 1 == attempts:
            return answer
        sleep(delay)


def decision_for(logs, trace_id: str, *, attempts: int = 15, delay: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep) -> dict | None:
    """The ``AWSIotLogsV2`` entry (parsed JSON) for one request's trace id, or None if none arrived.

    Raises the logs client's ``ResourceNotFoundException`` when the group does not exist (AWS IoT
    logging is off): that is a different answer from "not yet".
    """
    # CLI: aws logs filter-log-events --log-group-name AWSIotLogsV2 --filter-pattern '"TRACE_ID"'
    events = _ask_again(lambda: _events(logs, logGroupName="AWSIotLogsV2", filterPattern=f'"{trace_id}"'),
                        bool, attempts, delay, sleep)
    return json.loads(events[0]["message"]) if events else None


def split_invocations(lines: list[str]) -> list[list[str]]:
    """Group a Lambda log's lines per invocation: from each ``START`` to its ``END`` (``REPORT`` left out)."""
    invocations, current = [], None
    for line in lines:
        if line.startswith("START RequestId:"):
            current = []
        if current is not None:
            current.append(line)
        if line.startswith("END RequestId:") and current is not None:
            invocations.append(current)
            current = None
    return invocations


def invocation_lines(logs, group: str, since_ms: int, containing: str, *, attempts: int = 15,
                     delay: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """The lines of the first invocation since ``since_ms`` with a line containing ``containing`` ([] if none)."""
    def read() -> list[str]:
        # CLI: aws logs filter-log-events --log-group-name /aws/lambda/FUNCTION --start-time SINCE_MS
        lines = [event["message"].rstrip("\n") for event in _events(logs, logGroupName=group, startTime=since_ms)]
        return next((inv for inv in split_invocations(lines) if any(containing in line for line in inv)), [])

    return _ask_again(read, bool, attempts, delay, sleep)


def count_events(logs, group: str, pattern: str, since_ms: int, *, at_least: int = 1, attempts: int = 15,
                 delay: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> int:
    """How many events of ``group`` since ``since_ms`` match the filter ``pattern``.

    Asks again while fewer than ``at_least`` have arrived (AWS delivers late), then answers what
    it found, which may still be fewer: the caller's check decides what that means.
    """
    # CLI: aws logs filter-log-events --log-group-name GROUP --filter-pattern PATTERN --start-time SINCE_MS
    return _ask_again(lambda: len(_events(logs, logGroupName=group, filterPattern=pattern, startTime=since_ms)),
                      lambda count: count >= at_least, attempts, delay, sleep)


def entry_for_client(logs, client_id: str, event_type: str, since_ms: int, *, attempts: int = 15,
                     delay: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> dict | None:
    """The newest ``AWSIotLogsV2`` entry (parsed JSON) of ``event_type`` (``Connect``, ``Subscribe``,
    ``Publish-In``...) for ``client_id`` since ``since_ms``, or None if none arrived."""
    def read() -> list[dict]:
        # CLI: aws logs filter-log-events --log-group-name AWSIotLogsV2 --start-time SINCE_MS --filter-pattern '"CLIENT_ID"'
        entries = [json.loads(event["message"]) for event in _events(
            logs, logGroupName="AWSIotLogsV2", startTime=since_ms, filterPattern=f'"{client_id}"')]
        return [e for e in entries if e.get("clientId") == client_id and e.get("eventType") == event_type]

    found = _ask_again(read, bool, attempts, delay, sleep)
    return found[-1] if found else None


def format_entry(entry: dict | None) -> str:
    """An ``AWSIotLogsV2`` entry's documented fields; the sandbox's own extras, when there, on their own line.

    >>> print(format_entry({"eventType": "Connect", "status": "Failure", "reason": "AUTHORIZATION_FAILURE",
    ...                     "details": "Authorization Failure", "sandbox": {"transport": "tls", "mqttVersion": 5}}))
      Connect: Failure, reason AUTHORIZATION_FAILURE
      details: Authorization Failure
      sandbox only: transport=tls, mqttVersion=5
    >>> print(format_entry(None))
      (no AWSIotLogsV2 entry arrived: is logging on? see section 0)
    """
    if entry is None:
        return "  (no AWSIotLogsV2 entry arrived: is logging on? see section 0)"
    lines = [f"  {entry['eventType']}: {entry['status']}, reason {entry.get('reason', '-')}",
             f"  details: {entry.get('details', '-')}"]
    if "sandbox" in entry:  # not in AWS's entries: the sandbox's own extras
        extras = entry["sandbox"]
        lines.append(f"  sandbox only: transport={extras.get('transport')}, mqttVersion={extras.get('mqttVersion')}")
    return "\n".join(lines)
