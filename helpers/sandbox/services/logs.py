"""CloudWatch Logs for the sandbox, on AWS's JSON 1.1 protocol (``X-Amz-Target: Logs_20140328.<Operation>``).

The sandbox writes its own logs through ``logstore.LogSink`` (each Lambda
invocation's output in ``/aws/lambda/FUNCTION``, each IoT authorization decision
in ``AWSIotLogsV2``); learners read them with the same boto3 calls and ``aws
logs ...`` commands they would use against AWS:

- reading: ``FilterLogEvents`` (with filter patterns, see ``filter_pattern.py``),
  ``GetLogEvents`` (with AWS's ``f/...`` and ``b/...`` tokens), ``DescribeLogGroups``,
  ``DescribeLogStreams``;
- writing and cleaning up: ``CreateLogGroup``, ``CreateLogStream``, ``PutLogEvents``,
  ``DeleteLogGroup``, ``DeleteLogStream``.

Shapes, defaults and limits follow botocore's ``logs`` model (2014-03-28).
Timestamps are epoch milliseconds. Events are ordered by timestamp, then by
arrival. An event's id (and every GetLogEvents token) is its position: 20
digits of timestamp then 36 digits of arrival number, 56 digits like AWS's.

Usage:

>>> from helpers.sandbox import core
>>> from helpers.sandbox.store import Store
>>> ctx = core.Context(store=Store(":memory:", [SCHEMA]))
>>> ctx.logs = logstore.LogSink(ctx.store)
>>> ctx.logs.put_events("/aws/lambda/demo", "2026/11/23/[$LATEST]abc", [(1000, "START RequestId: r1"), (1001, "END")])
>>> req = core.Request("POST", "/", "", {"x-amz-target": "Logs_20140328.FilterLogEvents"},
...                    b'{"logGroupName": "/aws/lambda/demo", "filterPattern": "START"}', service="logs")
>>> [e["message"] for e in json.loads(handle(req, ctx).body)["events"]]
['START RequestId: r1']
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from helpers.sandbox import core, logstore
from helpers.sandbox.core import AwsError
from helpers.sandbox.filter_pattern import FilterPatternError, compile_pattern
from helpers.sandbox.logstore import ensure_group, ensure_stream, insert_events, now_ms

PROTOCOL = "json"
SIGNING_NAMES = ("logs",)
#: The tables are the log store's (``logstore.py``): named here so the sandbox creates them with every service's.
SCHEMA = logstore.SCHEMA

TARGET_PREFIX = "Logs_20140328."
#: EventsLimit in the model: default and maximum of FilterLogEvents/GetLogEvents.
MAX_EVENTS = 10_000
#: DescribeLimit in the model: default and maximum of the Describe operations.
MAX_DESCRIBE = 50
#: A page of events holds at most 1 MB (the operations' documentation), counted as PutLogEvents counts:
#: message bytes in UTF-8 plus 26 bytes an event.
PAGE_BYTES = 1_048_576
EVENT_OVERHEAD = 26
GROUP_NAME_RE = re.compile(r"[\.\-_/#A-Za-z0-9]+")
STREAM_NAME_RE = re.compile(r"[^:*]*")
GROUP_NOT_FOUND = "The specified log group does not exist."
STREAM_NOT_FOUND = "The specified log stream does not exist."

Key = tuple[int, int]  # (timestamp, arrival id): the order of events
ORIGIN: Key = (0, 0)


def _operation(req: core.Request) -> str:
    target = req.headers.get("x-amz-target", "")
    return target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""


def _unknown(req: core.Request, operation: str) -> AwsError:
    target = req.headers.get("x-amz-target", "")
    return AwsError("UnknownOperationException",
                    f"The sandbox's CloudWatch Logs does not serve the operation '{target or '(no X-Amz-Target)'}'. "
                    f"It serves: {', '.join(sorted(router.operations))}.", 400)


router = core.ActionRouter(_operation, _unknown)


def handle(req: core.Request, ctx: core.Context) -> core.Response:
    if getattr(ctx, "logs", None) is not None:
        ctx.logs.flush()  # what was logged before this request is visible to it
    return router.dispatch(req, ctx)


def _answer(req: core.Request, result: dict) -> core.Response:
    return core.Response.json(result, headers={"x-amzn-RequestId": req.request_id},
                              content_type="application/x-amz-json-1.1")


# --- Parameters ----------------------------------------------------------------------------------------

def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message, 400)


def _validation(value: Any, member: str, constraint: str) -> AwsError:
    return _invalid(f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: "
                    f"{constraint}")


def _int(doc: dict, member: str, default: int | None = None) -> int | None:
    value = doc.get(member)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AwsError("SerializationException", f"'{member}' must be a number, not {value!r}.", 400)
    return int(value)


def _limit(doc: dict, maximum: int) -> int:
    limit = _int(doc, "limit", maximum)
    if limit < 1:
        raise _validation(limit, "limit", "Member must have value greater than or equal to 1")
    if limit > maximum:
        raise _validation(limit, "limit", f"Member must have value less than or equal to {maximum}")
    return limit


def _group_name(value: Any, member: str = "logGroupName") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 512 or not GROUP_NAME_RE.fullmatch(value):
        raise _validation(value, member, "Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+ "
                                         "and have length between 1 and 512")
    return value


def _stream_name(value: Any, member: str = "logStreamName") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 512 or not STREAM_NAME_RE.fullmatch(value):
        raise _validation(value, member, "Member must satisfy regular expression pattern: [^:*]* "
                                         "and have length between 1 and 512")
    return value


def _resolve_group(doc: dict, ctx: core.Context) -> str:
    """The existing log group named by ``logGroupName`` or ``logGroupIdentifier`` (a name or an ARN)."""
    name, ident = doc.get("logGroupName"), doc.get("logGroupIdentifier")
    if name is not None and ident is not None:
        raise _invalid("logGroupName and logGroupIdentifier are mutually exclusive: pass only one of them.")
    if name is None and ident is None:
        raise _invalid("Either logGroupName or logGroupIdentifier must be specified.")
    if name is None:
        if not isinstance(ident, str):
            raise _validation(ident, "logGroupIdentifier", "Member must be a string")
        if ident.startswith("arn:"):
            prefix = f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:"
            if not ident.startswith(prefix):
                raise AwsError("ResourceNotFoundException",
                               f"{GROUP_NOT_FOUND} The sandbox has log groups only in {ctx.region}, "
                               f"account {ctx.account_id}: '{ident}' names another.", 400)
            ident = ident[len(prefix):].removesuffix(":*")
        name = _group_name(ident, "logGroupIdentifier")
    else:
        name = _group_name(name)
    if ctx.store.one("SELECT 1 FROM log_groups WHERE name = ?", (name,)) is None:
        raise AwsError("ResourceNotFoundException", GROUP_NOT_FOUND, 400)
    return name


def _group_arn(ctx: core.Context, group: str) -> str:
    return f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:{group}"


def _key_digits(key: Key) -> str:
    return f"{key[0]:020d}{key[1]:036d}"


def _parse_key_digits(text: str) -> Key | None:
    if len(text) != 56 or not text.isdigit():
        return None
    return int(text[:20]), int(text[20:])


def _page_token(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _read_page_token(token: Any, kind: str) -> dict:
    try:
        doc = json.loads(base64.urlsafe_b64decode(str(token).encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("k") != kind:
        raise _invalid(f"The specified nextToken is invalid: '{token}'. Pass the nextToken from the previous "
                       f"{kind} response unchanged (or omit it to start again).")
    return doc


# --- Reading events ------------------------------------------------------------------------------------

def _scan(ctx: core.Context, where: str, params: list, after: Key, descending: bool = False,
          before: Key | None = None, batch: int = 500):
    """Events matching ``where``, ordered by (timestamp, id), strictly after ``after`` (and before ``before``)."""
    order = "DESC" if descending else "ASC"
    lo, hi = after, before
    while True:
        clauses, args = [where], list(params)
        if lo is not None:
            clauses.append("(timestamp, id) > (?, ?)")
            args += [lo[0], lo[1]]
        if hi is not None:
            clauses.append("(timestamp, id) < (?, ?)")
            args += [hi[0], hi[1]]
        rows = ctx.store.all(
            "SELECT id, stream_name, timestamp, ingestion_time, message FROM log_events "
            f"WHERE {' AND '.join(clauses)} ORDER BY timestamp {order}, id {order} LIMIT ?", (*args, batch))
        yield from rows
        if len(rows) < batch:
            return
        last = (rows[-1]["timestamp"], rows[-1]["id"])
        if descending:
            hi = last
        else:
            lo = last


def _event_bytes(row) -> int:
    return len(row["message"].encode()) + EVENT_OVERHEAD


@router.route("FilterLogEvents")
def filter_log_events(req: core.Request, ctx: core.Context) -> core.Response:
    doc = req.json()
    group = _resolve_group(doc, ctx)
    names, prefix = doc.get("logStreamNames"), doc.get("logStreamNamePrefix")
    if names is not None and prefix is not None:
        raise _invalid("logStreamNames and logStreamNamePrefix are mutually exclusive: pass only one of them.")
    where, params = "group_name = ?", [group]
    if names is not None:
        if not isinstance(names, list) or not 1 <= len(names) <= 100:
            raise _validation(names, "logStreamNames", "Member must have length between 1 and 100")
        names = [_stream_name(n, "logStreamNames") for n in names]
        known = {r["name"] for r in ctx.store.all(
            f"SELECT name FROM log_streams WHERE group_name = ? AND name IN ({','.join('?' * len(names))})",
            (group, *names))}
        missing = [n for n in names if n not in known]
        if missing:
            raise AwsError("ResourceNotFoundException",
                           f"{STREAM_NOT_FOUND} Log group '{group}' has no stream named '{missing[0]}' "
                           "(describe-log-streams lists them).", 400)
        where += f" AND stream_name IN ({','.join('?' * len(names))})"
        params += names
    elif prefix is not None:
        prefix = _stream_name(prefix, "logStreamNamePrefix")
        where += " AND substr(stream_name, 1, ?) = ?"
        params += [len(prefix), prefix]
    start, end = _int(doc, "startTime"), _int(doc, "endTime")
    if start is not None:
        where += " AND timestamp >= ?"
        params.append(start)
    if end is not None:
        where += " AND timestamp <= ?"  # FilterLogEvents: "later than this time are not returned"
        params.append(end)
    limit = _limit(doc, MAX_EVENTS)
    try:
        matches = compile_pattern(doc.get("filterPattern") or "")
    except FilterPatternError as exc:
        raise _invalid(str(exc)) from None
    after = ORIGIN
    if doc.get("nextToken") is not None:
        after = _parse_key_digits(str(_read_page_token(doc["nextToken"], "FilterLogEvents").get("after")))
        if after is None:
            raise _invalid(f"The specified nextToken is invalid: '{doc['nextToken']}'.")
    events: list[dict] = []
    size = 0
    more = False
    for row in _scan(ctx, where, params, after):
        if not matches(row["message"]):
            continue
        if len(events) >= limit or (events and size + _event_bytes(row) > PAGE_BYTES):
            more = True
            break
        size += _event_bytes(row)
        events.append({"logStreamName": row["stream_name"], "timestamp": row["timestamp"],
                       "message": row["message"], "ingestionTime": row["ingestion_time"],
                       "eventId": _key_digits((row["timestamp"], row["id"]))})
    result: dict[str, Any] = {"events": events, "searchedLogStreams": []}  # no longer supported: always empty
    if more:
        result["nextToken"] = _page_token({"k": "FilterLogEvents", "after": events[-1]["eventId"]})
    return _answer(req, result)


@router.route("GetLogEvents")
def get_log_events(req: core.Request, ctx: core.Context) -> core.Response:
    doc = req.json()
    group = _resolve_group(doc, ctx)
    stream = _stream_name(doc.get("logStreamName"))
    if ctx.store.one("SELECT 1 FROM log_streams WHERE group_name = ? AND name = ?", (group, stream)) is None:
        raise AwsError("ResourceNotFoundException", STREAM_NOT_FOUND, 400)
    where, params = "group_name = ? AND stream_name = ?", [group, stream]
    start, end = _int(doc, "startTime"), _int(doc, "endTime")
    if start is not None:
        where += " AND timestamp >= ?"
        params.append(start)
    if end is not None:
        where += " AND timestamp < ?"  # GetLogEvents: "equal to or later than this time are not included"
        params.append(end)
    limit = _limit(doc, MAX_EVENTS)
    token = doc.get("nextToken")
    if token is not None:
        m = re.fullmatch(r"([fb])/(\d{56})/s", str(token))
        if not m:
            raise _invalid(f"The specified nextToken is invalid: '{token}'. Pass a nextForwardToken or "
                           "nextBackwardToken from a previous GetLogEvents response on this stream unchanged.")
        forward, position = m.group(1) == "f", _parse_key_digits(m.group(2))
    else:
        forward, position = bool(doc.get("startFromHead", False)), None

    def take(rows) -> list:
        out, size = [], 0
        for row in rows:
            if len(out) >= limit or (out and size + _event_bytes(row) > PAGE_BYTES):
                break
            size += _event_bytes(row)
            out.append(row)
        return out

    if forward:
        rows = take(_scan(ctx, where, params, position or ORIGIN))
    else:
        rows = take(_scan(ctx, where, params, None, descending=True, before=position))[::-1]
    if rows:
        first, last = (rows[0]["timestamp"], rows[0]["id"]), (rows[-1]["timestamp"], rows[-1]["id"])
        fwd, bwd = f"f/{_key_digits(last)}/s", f"b/{_key_digits(first)}/s"
    elif token is not None:
        # Nothing further in the token's direction: return the same token (AWS's end-of-stream signal), and
        # for the other direction a token that starts at the same place.
        if forward:
            fwd, bwd = str(token), f"b/{_key_digits((position[0], position[1] + 1))}/s"
        else:
            back = (position[0], position[1] - 1) if position[1] > 0 else (position[0] - 1, 10 ** 36 - 1)
            fwd, bwd = f"f/{_key_digits(max(back, ORIGIN))}/s", str(token)
    else:
        fwd, bwd = f"f/{_key_digits(ORIGIN)}/s", f"b/{_key_digits(ORIGIN)}/s"
    return _answer(req, {"events": [{"timestamp": r["timestamp"], "message": r["message"],
                                     "ingestionTime": r["ingestion_time"]} for r in rows],
                         "nextForwardToken": fwd, "nextBackwardToken": bwd})


# --- Describing ----------------------------------------------------------------------------------------

def _offset(doc: dict, kind: str) -> int:
    if doc.get("nextToken") is None:
        return 0
    offset = _read_page_token(doc["nextToken"], kind).get("o")
    if not isinstance(offset, int) or offset < 0:
        raise _invalid(f"The specified nextToken is invalid: '{doc['nextToken']}'.")
    return offset


@router.route("DescribeLogGroups")
def describe_log_groups(req: core.Request, ctx: core.Context) -> core.Response:
    doc = req.json()
    prefix, pattern = doc.get("logGroupNamePrefix"), doc.get("logGroupNamePattern")
    if prefix is not None and pattern is not None:
        raise _invalid("logGroupNamePrefix and logGroupNamePattern are mutually exclusive: pass only one of them.")
    if doc.get("logGroupIdentifiers"):
        raise _invalid("The sandbox's DescribeLogGroups does not support logGroupIdentifiers; "
                       "use logGroupNamePrefix or logGroupNamePattern instead.")
    limit, offset = _limit(doc, MAX_DESCRIBE), _offset(doc, "DescribeLogGroups")
    where, params = "1 = 1", []
    if prefix is not None:
        prefix = _group_name(prefix, "logGroupNamePrefix")
        where, params = "substr(g.name, 1, ?) = ?", [len(prefix), prefix]
    elif pattern is not None:
        where, params = "instr(g.name, ?) > 0", [str(pattern)]  # case-sensitive substring, as documented
    if doc.get("logGroupClass") not in (None, "STANDARD"):
        where += " AND 0"  # every sandbox log group is of the STANDARD class
    rows = ctx.store.all(
        "SELECT g.name, g.creation_time, "
        "(SELECT COALESCE(SUM(length(CAST(message AS BLOB))), 0) FROM log_events e WHERE e.group_name = g.name) "
        f"AS stored FROM log_groups g WHERE {where} ORDER BY g.name LIMIT ? OFFSET ?",
        (*params, limit + 1, offset))
    groups = []
    for row in rows[:limit]:
        arn = _group_arn(ctx, row["name"])
        entry = {"logGroupName": row["name"], "creationTime": row["creation_time"], "arn": f"{arn}:*"}
        if pattern is None:  # with logGroupNamePattern AWS answers only name, creationTime and arn
            entry.update({"metricFilterCount": 0, "storedBytes": row["stored"], "logGroupClass": "STANDARD",
                          "logGroupArn": arn})
        groups.append(entry)
    result: dict[str, Any] = {"logGroups": groups}
    if len(rows) > limit:
        result["nextToken"] = _page_token({"k": "DescribeLogGroups", "o": offset + limit})
    return _answer(req, result)


@router.route("DescribeLogStreams")
def describe_log_streams(req: core.Request, ctx: core.Context) -> core.Response:
    doc = req.json()
    group = _resolve_group(doc, ctx)
    order_by = doc.get("orderBy", "LogStreamName")
    if order_by not in ("LogStreamName", "LastEventTime"):
        raise _validation(order_by, "orderBy", "Member must satisfy enum value set: [LogStreamName, LastEventTime]")
    prefix = doc.get("logStreamNamePrefix")
    if prefix is not None and order_by == "LastEventTime":
        raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
    limit, offset = _limit(doc, MAX_DESCRIBE), _offset(doc, "DescribeLogStreams")
    where, params = "group_name = ?", [group]
    if prefix is not None:
        prefix = _stream_name(prefix, "logStreamNamePrefix")
        where += " AND substr(name, 1, ?) = ?"
        params += [len(prefix), prefix]
    direction = "DESC" if doc.get("descending") else "ASC"
    order = (f"name {direction}" if order_by == "LogStreamName"
             else f"COALESCE(last_event, 0) {direction}, name {direction}")
    rows = ctx.store.all(f"SELECT * FROM log_streams WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                         (*params, limit + 1, offset))
    streams = []
    for row in rows[:limit]:
        entry = {"logStreamName": row["name"], "creationTime": row["creation_time"]}
        if row["first_event"] is not None:
            entry.update({"firstEventTimestamp": row["first_event"], "lastEventTimestamp": row["last_event"],
                          "lastIngestionTime": row["last_ingestion"]})
        entry["arn"] = f"{_group_arn(ctx, group)}:log-stream:{row['name']}"
        entry["storedBytes"] = 0  # documented: no longer supported for log streams, always zero
        streams.append(entry)
    result: dict[str, Any] = {"logStreams": streams}
    if len(rows) > limit:
        result["nextToken"] = _page_token({"k": "DescribeLogStreams", "o": offset + limit})
    return _answer(req, result)


# --- Creating, writing, deleting -----------------------------------------------------------------------

@router.route("CreateLogGroup")
def create_log_group(req: core.Request, ctx: core.Context) -> core.Response:
    doc = req.json()
    name = _group_name(doc.get("logGroupName"))
    with ctx.store.tx() as db:
        if db.execute("SELECT 1 FROM log_groups WHERE name = ?", (name,)).fetchone():
            raise AwsError("ResourceAlreadyExistsException", "The specified log group already exists", 400)
        ensure_group(db, name, now_ms())
    return _answer(req, {})


@router.route("CreateLogStream")
def create_log_stream(req: core.Request, ctx: core.Context) -> core.Response:
    doc = req.json()
    group, stream = _group_name(doc.get("logGroupName")), _stream_name(doc.get("logStreamName"))
    with ctx.store.tx() as db:
        if not db.execute("SELECT 1 FROM log_groups WHERE name = ?", (group,)).fetchone():
            raise AwsError("ResourceNotFoundException", GROUP_NOT_FOUND, 400)
        if db.execute("SELECT 1 FROM log_streams WHERE group_name = ? AND name = ?", (group, stream)).fetchone():
            raise AwsError("ResourceAlreadyExistsException", "The specified log stream already exists", 400)
        ensure_stream(db, group, stream, now_ms())
    return _answer(req, {})


@router.route("PutLogEvents")
def put_log_events(req: core.Request, ctx: core.Context) -> core.Response:
    doc = req.json()
    group, stream = _group_name(doc.get("logGroupName")), _stream_name(doc.get("logStreamName"))
    raw = doc.get("logEvents")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_EVENTS:
        raise _validation(f"{len(raw) if isinstance(raw, list) else raw} events", "logEvents",
                          f"Member must have length between 1 and {MAX_EVENTS}")
    events = []
    for i, e in enumerate(raw):
        if not isinstance(e, dict) or not isinstance(e.get("message"), str) or not e["message"]:
            raise _validation(e, f"logEvents.{i + 1}.member.message",
                              "Member must have length greater than or equal to 1")
        events.append((_int(e, "timestamp", 0), e["message"]))
    if any(b[0] < a[0] for a, b in zip(events, events[1:])):
        raise _invalid("Log events in a single PutLogEvents request must be in chronological order.")
    if sum(len(m.encode()) + EVENT_OVERHEAD for _, m in events) > PAGE_BYTES:
        raise _invalid("The batch of log events exceeds 1,048,576 bytes (messages in UTF-8 plus 26 bytes an event).")
    now = now_ms()
    too_old, too_new = now - 14 * 86_400_000, now + 2 * 3_600_000
    old_end = max((i for i, (ts, _) in enumerate(events) if ts < too_old), default=None)
    new_start = min((i for i, (ts, _) in enumerate(events) if ts > too_new), default=None)
    accepted = [ev for ev in events if too_old <= ev[0] <= too_new]
    if accepted and accepted[-1][0] - accepted[0][0] > 86_400_000:
        raise _invalid("The batch of log events in a single PutLogEvents request cannot span more than 24 hours.")
    with ctx.store.tx() as db:
        if not db.execute("SELECT 1 FROM log_groups WHERE name = ?", (group,)).fetchone():
            raise AwsError("ResourceNotFoundException", GROUP_NOT_FOUND, 400)
        if not db.execute("SELECT 1 FROM log_streams WHERE group_name = ? AND name = ?", (group, stream)).fetchone():
            raise AwsError("ResourceNotFoundException", STREAM_NOT_FOUND, 400)
        insert_events(db, group, stream, accepted, now)
    if isinstance(ctx.logs, logstore.LogSink):
        ctx.logs.notify()
    result: dict[str, Any] = {"nextSequenceToken": f"{now:056d}"}
    rejected = {}
    if old_end is not None:
        rejected["tooOldLogEventEndIndex"] = old_end
    if new_start is not None:
        rejected["tooNewLogEventStartIndex"] = new_start
    if rejected:
        result["rejectedLogEventsInfo"] = rejected
    return _answer(req, result)


@router.route("DeleteLogGroup")
def delete_log_group(req: core.Request, ctx: core.Context) -> core.Response:
    doc = req.json()
    name = _group_name(doc.get("logGroupName"))
    with ctx.store.tx() as db:
        if db.execute("DELETE FROM log_groups WHERE name = ?", (name,)).rowcount == 0:
            raise AwsError("ResourceNotFoundException", GROUP_NOT_FOUND, 400)
    return _answer(req, {})


@router.route("DeleteLogStream")
def delete_log_stream(req: core.Request, ctx: core.Context) -> core.Response:
    doc = req.json()
    group, stream = _group_name(doc.get("logGroupName")), _stream_name(doc.get("logStreamName"))
    with ctx.store.tx() as db:
        if not db.execute("SELECT 1 FROM log_groups WHERE name = ?", (group,)).fetchone():
            raise AwsError("ResourceNotFoundException", GROUP_NOT_FOUND, 400)
        if db.execute("DELETE FROM log_streams WHERE group_name = ? AND name = ?", (group, stream)).rowcount == 0:
            raise AwsError("ResourceNotFoundException", STREAM_NOT_FOUND, 400)
    return _answer(req, {})
