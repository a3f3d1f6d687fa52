"""CloudWatch Logs through a real boto3 ``logs`` client (tests/harness.py), and the terminal log viewer."""
from __future__ import annotations

import io
import json
import time

import pytest

from helpers.sandbox import core, logstore, logview
from helpers.sandbox.services import logs
from helpers.sandbox.store import Store
from tests import harness

LAMBDA = "/aws/lambda/custom-auth-function"
STREAM_A = "2026/11/23/[$LATEST]" + "a" * 32
STREAM_B = "2026/11/23/[$LATEST]" + "b" * 32
T0 = int(time.time() * 1000) - 60_000


def make_ctx(path):
    ctx = core.Context(store=Store(path, [logs.SCHEMA]))
    ctx.logs = logstore.LogSink(ctx.store)
    return ctx


@pytest.fixture
def ctx(tmp_path):
    ctx = make_ctx(tmp_path / "s.db")
    yield ctx
    ctx.store.close()


@pytest.fixture
def c(ctx):
    return harness.client("logs", logs, ctx)


def iot_entry(status="Failure", topic="test/cust-auth/topic", **extra):
    entry = {"timestamp": "2026-11-23 13:02:11.123", "logLevel": "ERROR", "accountId": core.ACCOUNT_ID,
             "status": status, "eventType": "Publish-In", "protocol": "HTTP", "topicName": topic,
             "principalId": None, "sourcePort": 50123, **extra}
    return json.dumps(entry)


def messages(resp):
    return [e["message"] for e in resp["events"]]


def seed(ctx):
    ctx.logs.put_events(LAMBDA, STREAM_A, [(T0, "START RequestId: r1 Version: $LATEST"),
                                           (T0 + 10, "token is allow, principal user1"),
                                           (T0 + 20, "END RequestId: r1")])
    ctx.logs.put_events(LAMBDA, STREAM_B, [(T0 + 5, "START RequestId: r2 Version: $LATEST"),
                                           (T0 + 15, "ERROR bad request: missing token")])


# --- FilterLogEvents -------------------------------------------------------------------------------------

def test_filter_all_events_of_a_group_in_time_order_with_aws_shapes(ctx, c):
    seed(ctx)
    resp = c.filter_log_events(logGroupName=LAMBDA)
    assert [e["timestamp"] for e in resp["events"]] == [T0, T0 + 5, T0 + 10, T0 + 15, T0 + 20]
    first = resp["events"][0]
    assert first["logStreamName"] == STREAM_A and first["message"].startswith("START RequestId: r1")
    assert isinstance(first["ingestionTime"], int) and first["ingestionTime"] >= T0
    assert len({e["eventId"] for e in resp["events"]}) == 5 and all(len(e["eventId"]) == 56 for e in resp["events"])
    assert resp["searchedLogStreams"] == [] and "nextToken" not in resp


def test_filter_by_stream_names_prefix_and_time_range(ctx, c):
    seed(ctx)
    assert messages(c.filter_log_events(logGroupName=LAMBDA, logStreamNames=[STREAM_B])) == [
        "START RequestId: r2 Version: $LATEST", "ERROR bad request: missing token"]
    assert len(c.filter_log_events(logGroupName=LAMBDA, logStreamNamePrefix="2026/11/23/[$LATEST]a")["events"]) == 3
    assert c.filter_log_events(logGroupName=LAMBDA, logStreamNamePrefix="2025/")["events"] == []
    # startTime and endTime are both inclusive for FilterLogEvents
    ranged = c.filter_log_events(logGroupIdentifier=LAMBDA, startTime=T0 + 5, endTime=T0 + 15)
    assert [e["timestamp"] for e in ranged["events"]] == [T0 + 5, T0 + 10, T0 + 15]
    with pytest.raises(c.exceptions.InvalidParameterException, match="mutually exclusive"):
        c.filter_log_events(logGroupName=LAMBDA, logStreamNames=[STREAM_A], logStreamNamePrefix="2026")
    with pytest.raises(c.exceptions.ResourceNotFoundException, match="nope"):
        c.filter_log_events(logGroupName=LAMBDA, logStreamNames=["nope"])


def test_filter_by_group_arn_identifier(ctx, c):
    seed(ctx)
    arn = f"arn:aws:logs:{core.REGION}:{core.ACCOUNT_ID}:log-group:{LAMBDA}"
    assert len(c.filter_log_events(logGroupIdentifier=arn)["events"]) == 5
    with pytest.raises(c.exceptions.InvalidParameterException):
        c.filter_log_events(logGroupName=LAMBDA, logGroupIdentifier=LAMBDA)


def test_filter_terms_phrases_any_and_exclusion(ctx, c):
    seed(ctx)
    f = lambda p: messages(c.filter_log_events(logGroupName=LAMBDA, filterPattern=p))  # noqa: E731
    assert f("") == messages(c.filter_log_events(logGroupName=LAMBDA))
    assert f("START") == ["START RequestId: r1 Version: $LATEST", "START RequestId: r2 Version: $LATEST"]
    assert f("RequestId r1") == ["START RequestId: r1 Version: $LATEST", "END RequestId: r1"]  # all terms
    assert f("start") == []  # case-sensitive
    assert f("STAR") == []  # a term is a whole word
    assert f('"bad request"') == ["ERROR bad request: missing token"]
    assert f('"request bad"') == []
    assert f('"RequestId: r2"') == ["START RequestId: r2 Version: $LATEST"]
    assert f("?ERROR ?END") == ["ERROR bad request: missing token", "END RequestId: r1"]
    assert f("RequestId -START") == ["END RequestId: r1"]
    assert f("%r[12] Ver%") == ["START RequestId: r1 Version: $LATEST", "START RequestId: r2 Version: $LATEST"]


def test_filter_json_patterns(ctx, c):
    ctx.logs.put_events("AWSIotLogsV2", "2026/11/23/device-gateway", [
        (T0, iot_entry("Failure", reason="AUTHORIZATION_FAILURE")),
        (T0 + 1, iot_entry("Success", topic="test/other")),
        (T0 + 2, json.dumps({"eventType": "Connect", "status": "Success", "n": 5, "ok": True,
                             "sandbox": {"lambdaInvoked": True}, "list": [{"a": "x"}]})),
        (T0 + 3, "not json at all, status Failure"),
    ])
    f = lambda p: [json.loads(m).get("eventType", "") + "/" + json.loads(m)["status"]  # noqa: E731
                   for m in messages(c.filter_log_events(logGroupName="AWSIotLogsV2", filterPattern=p))]
    assert f('{ $.status = "Failure" }') == ["Publish-In/Failure"]
    assert f("{ $.status = Failure }") == ["Publish-In/Failure"]  # unquoted string value
    assert f('{ $.status != "Failure" }') == ["Publish-In/Success", "Connect/Success"]
    assert f('{ $.eventType = "Publish*" }') == ["Publish-In/Failure", "Publish-In/Success"]
    assert f('{ $.topicName = "*/other" }') == ["Publish-In/Success"]
    assert f("{ $.n > 3 }") == ["Connect/Success"]
    assert f("{ $.n < 3 }") == []
    assert f("{ $.sourcePort >= 50123 }") == ["Publish-In/Failure", "Publish-In/Success"]
    assert f('{ $.eventType = "Publish-In" && $.status = "Success" }') == ["Publish-In/Success"]
    assert f('{ $.status = "Failure" || $.eventType = "Connect" }') == ["Publish-In/Failure", "Connect/Success"]
    assert f('{ ($.status = "Failure" || $.n = 5) && $.ok IS TRUE }') == ["Connect/Success"]
    assert f("{ $.sandbox.lambdaInvoked IS TRUE }") == ["Connect/Success"]
    assert f('{ $.list[0].a = "x" }') == ["Connect/Success"]
    assert f("{ $.principalId IS NULL }") == ["Publish-In/Failure", "Publish-In/Success"]
    assert f("{ $.reason NOT EXISTS }") == ["Publish-In/Success", "Connect/Success"]


@pytest.mark.parametrize("pattern", [
    "[ip, user, status]",                 # space-delimited: not supported by the sandbox
    "{ $.status = ",                      # unfinished
    '{ $.status = "Failure"',             # no closing brace
    "user@example.com",                   # unquoted term with symbols (AWS: Invalid character(s) in term)
    '{ $.status > "Failure" }',           # ordering on a string
    '"unclosed',
])
def test_unsupported_or_invalid_patterns_are_invalid_parameter_naming_the_pattern(ctx, c, pattern):
    seed(ctx)
    with pytest.raises(c.exceptions.InvalidParameterException) as exc:
        c.filter_log_events(logGroupName=LAMBDA, filterPattern=pattern)
    assert repr(pattern) in exc.value.response["Error"]["Message"]


def test_unknown_group_is_resource_not_found(c):
    with pytest.raises(c.exceptions.ResourceNotFoundException, match="The specified log group does not exist."):
        c.filter_log_events(logGroupName="/aws/lambda/missing")
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.describe_log_streams(logGroupName="/aws/lambda/missing")
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.get_log_events(logGroupName="/aws/lambda/missing", logStreamName="s")


def test_paginator_walks_more_events_than_the_limit(ctx, c):
    ctx.logs.put_events("big", "s1", [(T0 + i, f"event {i} even" if i % 2 == 0 else f"event {i} odd")
                                      for i in range(0, 250, 2)])
    ctx.logs.put_events("big", "s2", [(T0 + i, f"event {i} odd") for i in range(1, 250, 2)])
    first = c.filter_log_events(logGroupName="big", limit=100)
    assert len(first["events"]) == 100 and "nextToken" in first
    pages = list(c.get_paginator("filter_log_events").paginate(logGroupName="big", PaginationConfig={"PageSize": 100}))
    assert [len(p["events"]) for p in pages] == [100, 100, 50]
    assert "nextToken" not in pages[-1]
    got = [e["timestamp"] for p in pages for e in p["events"]]
    assert got == [T0 + i for i in range(250)]
    evens = [e for p in c.get_paginator("filter_log_events").paginate(
        logGroupName="big", filterPattern="even", PaginationConfig={"PageSize": 40}) for e in p["events"]]
    assert len(evens) == 125 and all("even" in e["message"] for e in evens)
    with pytest.raises(c.exceptions.InvalidParameterException, match="nextToken"):
        c.filter_log_events(logGroupName="big", nextToken="garbage")
    with pytest.raises(c.exceptions.InvalidParameterException, match="less than or equal to 10000"):
        c.filter_log_events(logGroupName="big", limit=10001)


# --- GetLogEvents ----------------------------------------------------------------------------------------

def test_get_log_events_tail_head_and_tokens(ctx, c):
    ctx.logs.put_events("g", "s", [(T0 + i, f"m{i}") for i in range(10)])
    newest = c.get_log_events(logGroupName="g", logStreamName="s", limit=3)  # startFromHead defaults to false
    assert messages(newest) == ["m7", "m8", "m9"]
    head = c.get_log_events(logGroupName="g", logStreamName="s", limit=3, startFromHead=True)
    assert messages(head) == ["m0", "m1", "m2"]
    assert set(head["events"][0]) == {"timestamp", "message", "ingestionTime"}
    nxt = c.get_log_events(logGroupName="g", logStreamName="s", limit=3, startFromHead=True,
                           nextToken=head["nextForwardToken"])
    assert messages(nxt) == ["m3", "m4", "m5"]
    back = c.get_log_events(logGroupName="g", logStreamName="s", limit=2, nextToken=newest["nextBackwardToken"])
    assert messages(back) == ["m5", "m6"]
    # At the end, the same forward token comes back (that is how a tail loop knows to wait) ...
    end = c.get_log_events(logGroupName="g", logStreamName="s", startFromHead=True,
                           nextToken=newest["nextForwardToken"])
    assert end["events"] == [] and end["nextForwardToken"] == newest["nextForwardToken"]
    again = c.get_log_events(logGroupName="g", logStreamName="s", startFromHead=True, nextToken=end["nextForwardToken"])
    assert again["nextForwardToken"] == newest["nextForwardToken"]
    # ... and a new event then arrives through that token
    ctx.logs.put_events("g", "s", [(T0 + 100, "m100")])
    new = c.get_log_events(logGroupName="g", logStreamName="s", startFromHead=True, nextToken=end["nextForwardToken"])
    assert messages(new) == ["m100"] and new["nextForwardToken"] != end["nextForwardToken"]
    # the backward token at the start of the stream also repeats
    start = c.get_log_events(logGroupName="g", logStreamName="s", nextToken=head["nextBackwardToken"])
    assert start["events"] == [] and start["nextBackwardToken"] == head["nextBackwardToken"]


def test_get_log_events_time_range_end_is_exclusive_and_errors(ctx, c):
    ctx.logs.put_events("g", "s", [(T0 + i, f"m{i}") for i in range(5)])
    r = c.get_log_events(logGroupName="g", logStreamName="s", startTime=T0 + 1, endTime=T0 + 3, startFromHead=True)
    assert messages(r) == ["m1", "m2"]
    with pytest.raises(c.exceptions.ResourceNotFoundException, match="log stream does not exist"):
        c.get_log_events(logGroupName="g", logStreamName="other")
    with pytest.raises(c.exceptions.InvalidParameterException, match="nextToken"):
        c.get_log_events(logGroupName="g", logStreamName="s", nextToken="f/123")


def test_get_log_events_on_empty_stream_then_follow_forward(ctx, c):
    c.create_log_group(logGroupName="empty")
    c.create_log_stream(logGroupName="empty", logStreamName="s")
    r = c.get_log_events(logGroupName="empty", logStreamName="s", startFromHead=True)
    assert r["events"] == [] and r["nextForwardToken"].startswith("f/") and r["nextBackwardToken"].startswith("b/")
    c.put_log_events(logGroupName="empty", logStreamName="s", logEvents=[{"timestamp": T0, "message": "hello"}])
    r2 = c.get_log_events(logGroupName="empty", logStreamName="s", startFromHead=True, nextToken=r["nextForwardToken"])
    assert messages(r2) == ["hello"]


# --- Describe, create, put, delete ---------------------------------------------------------------------

def test_describe_log_groups_with_prefix_and_pages(ctx, c):
    seed(ctx)
    ctx.logs.put_events("AWSIotLogsV2", "x", [(T0, "{}")])
    for i in range(3):
        c.create_log_group(logGroupName=f"/aws/lambda/fn{i}")
    groups = c.describe_log_groups()["logGroups"]
    assert [g["logGroupName"] for g in groups] == sorted(g["logGroupName"] for g in groups)
    g = next(g for g in groups if g["logGroupName"] == LAMBDA)
    assert g["arn"] == f"arn:aws:logs:{core.REGION}:{core.ACCOUNT_ID}:log-group:{LAMBDA}:*"
    assert g["logGroupArn"] == g["arn"][:-2] and g["metricFilterCount"] == 0
    assert g["storedBytes"] == sum(len(m) for m in messages(c.filter_log_events(logGroupName=LAMBDA)))
    assert isinstance(g["creationTime"], int)
    lambdas = c.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]
    assert [x["logGroupName"] for x in lambdas] == [LAMBDA] + [f"/aws/lambda/fn{i}" for i in range(3)]
    pages = list(c.get_paginator("describe_log_groups").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["logGroups"]) for p in pages] == [2, 2, 1]
    by_pattern = c.describe_log_groups(logGroupNamePattern="Iot")["logGroups"]
    assert [x["logGroupName"] for x in by_pattern] == ["AWSIotLogsV2"] and set(by_pattern[0]) == {
        "logGroupName", "creationTime", "arn"}
    with pytest.raises(c.exceptions.InvalidParameterException):
        c.describe_log_groups(limit=51)


def test_describe_log_streams_prefix_ordering_and_fields(ctx, c):
    ctx.logs.put_events("g", "b-stream", [(T0 + 50, "x"), (T0 + 60, "y")])
    ctx.logs.put_events("g", "a-stream", [(T0 + 70, "z")])
    c.create_log_stream(logGroupName="g", logStreamName="c-empty")
    streams = c.describe_log_streams(logGroupName="g")["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["a-stream", "b-stream", "c-empty"]
    b = streams[1]
    assert (b["firstEventTimestamp"], b["lastEventTimestamp"]) == (T0 + 50, T0 + 60)
    assert b["lastIngestionTime"] >= T0 and b["storedBytes"] == 0
    assert b["arn"] == f"arn:aws:logs:{core.REGION}:{core.ACCOUNT_ID}:log-group:g:log-stream:b-stream"
    assert "firstEventTimestamp" not in streams[2]
    by_time = c.describe_log_streams(logGroupName="g", orderBy="LastEventTime", descending=True)["logStreams"]
    assert [s["logStreamName"] for s in by_time] == ["a-stream", "b-stream", "c-empty"]
    desc = c.describe_log_streams(logGroupName="g", descending=True, logStreamNamePrefix="a")["logStreams"]
    assert [s["logStreamName"] for s in desc] == ["a-stream"]
    with pytest.raises(c.exceptions.InvalidParameterException, match="LastEventTime"):
        c.describe_log_streams(logGroupName="g", orderBy="LastEventTime", logStreamNamePrefix="a")
    pages = list(c.get_paginator("describe_log_streams").paginate(logGroupName="g", PaginationConfig={"PageSize": 2}))
    assert [len(p["logStreams"]) for p in pages] == [2, 1]


def test_create_put_delete(ctx, c):
    c.create_log_group(logGroupName="mine")
    with pytest.raises(c.exceptions.ResourceAlreadyExistsException):
        c.create_log_group(logGroupName="mine")
    with pytest.raises(c.exceptions.ResourceNotFoundException, match="log group does not exist"):
        c.create_log_stream(logGroupName="nope", logStreamName="s")
    c.create_log_stream(logGroupName="mine", logStreamName="s")
    with pytest.raises(c.exceptions.ResourceAlreadyExistsException):
        c.create_log_stream(logGroupName="mine", logStreamName="s")
    now = int(time.time() * 1000)
    resp = c.put_log_events(logGroupName="mine", logStreamName="s", logEvents=[
        {"timestamp": now - 20 * 86_400_000, "message": "ancient"},
        {"timestamp": now, "message": "fresh"}])
    assert resp["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 0}
    assert messages(c.filter_log_events(logGroupName="mine")) == ["fresh"]
    with pytest.raises(c.exceptions.InvalidParameterException, match="chronological"):
        c.put_log_events(logGroupName="mine", logStreamName="s", logEvents=[
            {"timestamp": now, "message": "b"}, {"timestamp": now - 1, "message": "a"}])
    with pytest.raises(c.exceptions.ResourceNotFoundException, match="log stream does not exist"):
        c.put_log_events(logGroupName="mine", logStreamName="nope", logEvents=[{"timestamp": now, "message": "x"}])
    with pytest.raises(c.exceptions.InvalidParameterException, match="logGroupName"):
        c.create_log_group(logGroupName="bad name!")
    c.delete_log_stream(logGroupName="mine", logStreamName="s")
    assert c.describe_log_streams(logGroupName="mine")["logStreams"] == []
    ctx.logs.put_events("mine", "s2", [(now, "kept until the group goes")])
    assert messages(c.filter_log_events(logGroupName="mine")) == ["kept until the group goes"]
    c.delete_log_group(logGroupName="mine")
    assert c.describe_log_groups(logGroupNamePrefix="mine")["logGroups"] == []
    c.create_log_group(logGroupName="mine")  # a new group of the same name starts empty
    assert c.filter_log_events(logGroupName="mine")["events"] == []
    assert ctx.store.one("SELECT COUNT(*) AS n FROM log_events WHERE group_name = 'mine'")["n"] == 0
    c.delete_log_group(logGroupName="mine")
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.delete_log_group(logGroupName="mine")


def test_unknown_operation(ctx):
    req = core.Request("POST", "/", "", {"x-amz-target": "Logs_20140328.StartLiveTail"}, b"{}", service="logs")
    with pytest.raises(core.AwsError) as exc:
        logs.handle(req, ctx)
    assert exc.value.code == "UnknownOperationException" and exc.value.status == 400


def test_events_persist_across_a_new_store_on_the_same_file(tmp_path):
    first = make_ctx(tmp_path / "s.db")
    seed(first)
    first.logs.close()  # the sink writes in the background: close it (it flushes) before its store
    first.store.close()
    second = make_ctx(tmp_path / "s.db")
    c = harness.client("logs", logs, second)
    assert len(c.filter_log_events(logGroupName=LAMBDA)["events"]) == 5
    second.logs.put_events(LAMBDA, STREAM_A, [(T0 + 30, "later")])
    ids = [e["eventId"] for e in c.filter_log_events(logGroupName=LAMBDA)["events"]]
    assert len(set(ids)) == 6
    second.logs.close()
    second.store.close()


def test_sink_wait_for_events(ctx):
    assert ctx.logs.wait_for_events("g", T0, 0.01) is False
    ctx.logs.put_events("g", "s", [(T0 + 1, "x")])
    assert ctx.logs.wait_for_events("g", T0, 10) is True  # returns as soon as the writer has it
    assert ctx.logs.wait_for_events("g", T0 + 1, 0.01) is False


# --- show_log --------------------------------------------------------------------------------------------

class FakeSettings:
    def __init__(self, client):
        self._client = client

    def client(self, service):
        assert service == "logs"
        return self._client


def clock(ts):
    return logview.format_line(ts, "x", "", 1)[:12]


def test_show_log_merges_groups_in_time_order_with_labels(ctx, c):
    seed(ctx)
    ctx.logs.put_events("AWSIotLogsV2", "2026/11/23/device-gateway", [(T0 + 12, iot_entry(
        reason="AUTHORIZATION_FAILURE", details="Authorization Failure",
        sandbox={"signatureVerified": False, "lambdaInvoked": False}))])
    out = io.StringIO()
    assert logview.show_log(FakeSettings(c), since=3600, out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    assert [line[:12] for line in lines] == [clock(T0 + d) for d in (0, 5, 10, 12, 15, 20)]
    assert lines[0].split()[1:3] == ["lambda/custom-auth-function", "START"]
    assert lines[3].split("  ", 2)[1].strip() == "iot"
    assert lines[3].endswith("Publish-In Failure AUTHORIZATION_FAILURE topic=test/cust-auth/topic principal=- "
                             "signatureVerified=false lambdaInvoked=false  (Authorization Failure)")
    only = io.StringIO()
    assert logview.show_log(FakeSettings(c), group="AWSIotLogsV2", out=only) == 0
    assert len(only.getvalue().splitlines()) == 1
    raw = io.StringIO()
    logview.show_log(FakeSettings(c), group="AWSIotLogsV2", out=raw, raw=True)
    assert json.loads(raw.getvalue().split("  ", 2)[2])["reason"] == "AUTHORIZATION_FAILURE"


def test_show_log_since_window_and_empty_and_missing_group(ctx, c):
    ctx.logs.put_events("g", "s", [(int(time.time() * 1000) - 7200_000, "too old")])
    out = io.StringIO()
    assert logview.show_log(FakeSettings(c), since=3600, out=out) == 0
    assert "too old" not in out.getvalue() and "no events" in out.getvalue()
    missing = io.StringIO()
    assert logview.show_log(FakeSettings(c), group="/aws/lambda/none", out=missing) == 1
    assert "/aws/lambda/none" in missing.getvalue() and "g" in missing.getvalue()


def test_show_log_lambda_lines_are_compacted(ctx, c):
    ctx.logs.put_events(LAMBDA, STREAM_A, [(T0, "2026-11-23T13:02:11.123Z\t6f0c5c2e-1111-2222-3333-444455556666\t"
                                               "INFO\tdecision Allow\nsecond line\n")])
    out = io.StringIO()
    logview.show_log(FakeSettings(c), out=out)
    first, second = out.getvalue().splitlines()
    assert first.endswith("lambda/custom-auth-function  INFO decision Allow")
    assert second.strip() == "second line" and second.index("second") == first.index("INFO")


def test_show_log_follow_picks_up_new_events_once(ctx, c, monkeypatch):
    ctx.logs.put_events(LAMBDA, STREAM_A, [(T0, "first")])
    added = []

    def fake_sleep(_seconds):  # between polls: one new event in a brand-new group, once
        if not added:
            ctx.logs.put_events("AWSIotLogsV2", "s", [(T0 + 1, iot_entry("Success", principalId="user1"))])
            added.append(True)

    monkeypatch.setattr(logview.time, "sleep", fake_sleep)
    out = io.StringIO()
    assert logview.show_log(FakeSettings(c), follow=True, out=out, poll_interval=0, max_polls=3) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("first")
    assert "iot" in lines[1] and lines[1].endswith("Publish-In Success topic=test/cust-auth/topic principal=user1")


def test_show_log_follow_ctrl_c_returns_130(ctx, c, monkeypatch):
    def interrupt(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(logview.time, "sleep", interrupt)
    assert logview.show_log(FakeSettings(c), follow=True, out=io.StringIO(), poll_interval=0) == 130
