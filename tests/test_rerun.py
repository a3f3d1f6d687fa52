"""The notebooks' re-run plumbing (helpers/rerun.py) and log readers (helpers/cloudwatch.py), against the
sandbox's IAM, Lambda and CloudWatch Logs answered in-process by real boto3 clients (tests/harness.py)."""
from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
from botocore.exceptions import ClientError

from helpers.cloudwatch import count_events, decision_for, entry_for_client, invocation_lines
from helpers.experiments import keep_alive_run
from helpers.rerun import differences, policy_statement, reuse_if_exists, source_arn_of
from helpers.sandbox import core, logstore
from helpers.sandbox.runtime import LambdaRuntime
from helpers.sandbox.services import awslambda, iam, logs
from helpers.sandbox.store import Store
from tests import harness

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
AUTHORIZER = f"arn:aws:iot:{core.REGION}:{core.ACCOUNT_ID}:authorizer/a"


@pytest.fixture
def ctx(tmp_path):
    runtime = LambdaRuntime(tmp_path / "rt")
    store = Store(tmp_path / "s.db", [iam.SCHEMA, awslambda.SCHEMA, logs.SCHEMA])
    ctx = core.Context(store=store, runtime=runtime)
    ctx.logs = logstore.LogSink(store)
    yield ctx
    runtime.shutdown()
    store.close()


@pytest.fixture
def iam_client(ctx):
    return harness.client("iam", iam, ctx)


@pytest.fixture
def lam(ctx, iam_client):
    role = iam_client.create_role(RoleName="fn-role", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    client = harness.client("lambda", awslambda, ctx)
    client.create_function(**function_args(role))
    return client


def function_args(role):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lambda_function.py", "def lambda_handler(event, context):\n    return {}\n")
    return dict(FunctionName="fn", Runtime="python3.12", Role=role, Handler="lambda_function.lambda_handler",
                Code={"ZipFile": buf.getvalue()})


def add(lam, source_arn=AUTHORIZER):
    return lam.add_permission(FunctionName="fn", StatementId="Id-1", Action="lambda:InvokeFunction",
                              Principal="iot.amazonaws.com", SourceArn=source_arn)


# --- reuse_if_exists --------------------------------------------------------------------------------

def test_a_second_create_role_is_a_reuse_not_an_error(iam_client):
    for expected in (True, False):
        with reuse_if_exists() as outcome:
            iam_client.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)
        assert outcome.created is expected
    assert "already exists" in outcome.message
    assert iam_client.get_role(RoleName="r")["Role"]["RoleName"] == "r"


def test_a_second_create_function_and_add_permission_are_reuses(lam):
    with reuse_if_exists() as outcome:
        lam.create_function(**function_args(f"arn:aws:iam::{core.ACCOUNT_ID}:role/fn-role"))
    assert outcome.created is False and "already exist" in outcome.message
    add(lam)
    with reuse_if_exists() as outcome:
        add(lam)
    assert outcome.created is False


def test_other_errors_still_stop_the_cell(iam_client):
    with pytest.raises(ClientError) as raised, reuse_if_exists():
        iam_client.create_role(RoleName="bad", AssumeRolePolicyDocument="{not json")
    assert raised.value.response["Error"]["Code"] == "MalformedPolicyDocument"
    # Lambda's "update in progress" shares the conflict code with "already exists": it is not a re-run
    busy = ClientError({"Error": {"Code": "ResourceConflictException", "Message": "The operation cannot be "
                                  "performed at this time. An update is in progress for resource: fn"}}, "UpdateX")
    with pytest.raises(ClientError), reuse_if_exists():
        raise busy
    with pytest.raises(ValueError), reuse_if_exists():
        raise ValueError("not an AWS error")


# --- differences, policy_statement ------------------------------------------------------------------

def test_differences_name_what_changed_and_ignore_outer_whitespace():
    current = {"authorizerFunctionArn": "arn:1", "status": "ACTIVE", "tokenSigningPublicKeys": {"FirstKey": "PEM\n"},
               "creationDate": "ignored: not wanted"}
    assert differences(current, {"authorizerFunctionArn": "arn:1", "tokenSigningPublicKeys": {"FirstKey": "PEM"}}) == []
    assert differences(current, {"authorizerFunctionArn": "arn:2", "status": "ACTIVE"}) == ["authorizerFunctionArn"]
    assert differences(current, {"tokenSigningPublicKeys": {"FirstKey": "PEM", "SecondKey": "P2"}}) == [
        "tokenSigningPublicKeys"]
    assert differences({}, {"status": "ACTIVE"}) == ["status"]


def test_policy_statement_reads_back_what_add_permission_wrote(lam):
    assert policy_statement(lam, "fn", "Id-1") is None  # no policy yet: Lambda answers 404, read as none
    add(lam)
    statement = policy_statement(lam, "fn", "Id-1")
    assert statement["Principal"] == {"Service": "iot.amazonaws.com"}
    assert source_arn_of(statement) == AUTHORIZER
    assert policy_statement(lam, "fn", "Id-2") is None
    assert source_arn_of(None) is None and source_arn_of({"Sid": "x"}) is None


# --- helpers/cloudwatch.py ----------------------------------------------------------------------------

GROUP = "/aws/lambda/fn"


def test_log_readers_find_decisions_invocations_and_counts(ctx):
    client = harness.client("logs", logs, ctx)
    no_sleep = lambda _s: None  # noqa: E731
    with pytest.raises(client.exceptions.ResourceNotFoundException):  # logging off: a different answer
        decision_for(client, "trace-1", sleep=no_sleep)
    now = int(time.time() * 1000)
    ctx.logs.put_events("AWSIotLogsV2", "stream", [(now, json.dumps({"traceId": "trace-1", "status": "Failure"}))])
    assert decision_for(client, "trace-1", sleep=no_sleep) == {"traceId": "trace-1", "status": "Failure"}
    assert decision_for(client, "trace-2", attempts=2, sleep=no_sleep) is None

    ctx.logs.put_events(GROUP, "s", [(now - 60_000, "START RequestId: old"), (now - 60_000, "token tok-a ['allow']"),
                                     (now - 60_000, "END RequestId: old")])
    lines = [(now, "START RequestId: 1"), (now, "Event received: tok-a ['deny']"), (now, "END RequestId: 1"),
             (now + 1, "REPORT RequestId: 1"), (now + 2, "START RequestId: 2"),
             (now + 2, "Event received: tok-a ['allow']"), (now + 3, "END RequestId: 2")]
    ctx.logs.put_events(GROUP, "s", lines)
    assert invocation_lines(client, GROUP, now, "['allow']", sleep=no_sleep) == [
        "START RequestId: 2", "Event received: tok-a ['allow']", "END RequestId: 2"]
    assert invocation_lines(client, GROUP, now, "['nothing']", attempts=2, sleep=no_sleep) == []
    assert count_events(client, GROUP, '"tok-a"', now, sleep=no_sleep) == 2  # not the one before `now`
    waits = []
    assert count_events(client, GROUP, '"tok-a"', now, at_least=5, attempts=3, sleep=waits.append) == 2
    assert len(waits) == 2  # asked three times in all, then answered what it found


def test_entry_for_client_is_the_newest_of_that_client_and_event_type_since_a_time(ctx):
    client = harness.client("logs", logs, ctx)
    no_sleep = lambda _s: None  # noqa: E731
    now = int(time.time() * 1000)
    entry = lambda t, cid, kind, status: (t, json.dumps(  # noqa: E731
        {"clientId": cid, "eventType": kind, "status": status}))
    ctx.logs.put_events("AWSIotLogsV2", "s", [
        entry(now - 60_000, "dev", "Connect", "Old"),       # before `since`
        entry(now, "dev", "Connect", "Failure"),
        entry(now + 1, "dev-2", "Connect", "Other"),        # another client id that contains "dev"
        entry(now + 2, "dev", "Subscribe", "Failure"),      # another event type
        entry(now + 3, "dev", "Connect", "Success"),        # the newest
    ])
    assert entry_for_client(client, "dev", "Connect", now, sleep=no_sleep)["status"] == "Success"
    assert entry_for_client(client, "dev-2", "Connect", now, sleep=no_sleep)["status"] == "Other"
    assert entry_for_client(client, "dev", "Subscribe", now + 3, attempts=2, sleep=no_sleep) is None


def test_keep_alive_run_uses_one_session_for_every_request():
    sessions = []

    class Answer:
        status = 200

    def send_one(session):
        sessions.append(session)
        return Answer()

    run = keep_alive_run(send_one, 4)
    assert run.statuses == [200] * 4 and len(run.latencies_ms) == 4 and all(ms >= 0 for ms in run.latencies_ms)
    assert len({id(s) for s in sessions}) == 1
