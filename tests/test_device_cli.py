"""The device side from a terminal: the default authorizer, `subscribe` and `log` commands."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.test_dataplane import TUTORIAL_HANDLER, assert_forbidden, sign, unique_topic

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, home, timeout=60):
    return subprocess.Popen([sys.executable, "-m", "helpers.sandbox", *args, "--state-dir", str(home)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def post(settings, topic, headers, query="&actionToken=allow", body=b"hello"):
    return requests.post(f"https://{settings.data_endpoint}/topics/{topic}?qos=1{query}", data=body, headers=headers,
                         verify=str(settings.ca_bundle), timeout=30)


def test_default_authorizer_is_used_when_the_request_names_none(settings, deployer, rsa_key):
    fn = deployer.function(TUTORIAL_HANDLER)
    name, _ = deployer.authorizer(fn, rsa_key[1])
    headers = {"tokenKeyName": "tokenKeyValue", "x-amz-customauthorizer-signature": sign(rsa_key[0], "tokenKeyValue")}
    assert_forbidden(post(settings, unique_topic(), headers))  # no name, no default
    deployer.iot.set_default_authorizer(authorizerName=name)
    try:
        assert post(settings, unique_topic(), headers).status_code == 200
    finally:
        deployer.iot.clear_default_authorizer()
        deployer.iot.update_authorizer(authorizerName=name, status="INACTIVE")
        deployer.iot.delete_authorizer(authorizerName=name)
    assert_forbidden(post(settings, unique_topic(), headers))


def test_subscribe_command_prints_json_lines(settings, sandbox_home, deployer, rsa_key):
    fn = deployer.function(TUTORIAL_HANDLER)
    name, _ = deployer.authorizer(fn, rsa_key[1])
    topic = unique_topic()
    proc = cli("subscribe", topic.rsplit("/", 1)[0] + "/#", "--count", "2", "--timeout", "20", home=sandbox_home)
    try:
        headers = {"x-amz-customauthorizer-name": name, "tokenKeyName": "tokenKeyValue",
                   "x-amz-customauthorizer-signature": sign(rsa_key[0], "tokenKeyValue")}
        # the command says nothing until messages arrive: publish text and binary in turn until it has two
        deadline, i = time.monotonic() + 15, 0
        while proc.poll() is None and time.monotonic() < deadline:
            assert post(settings, topic, headers, body=b"text" if i % 2 == 0 else b"\xff\x00").status_code == 200
            i += 1
            time.sleep(0.3)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        deployer.iot.update_authorizer(authorizerName=name, status="INACTIVE")
        deployer.iot.delete_authorizer(authorizerName=name)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and all(line["topic"] == topic for line in lines)
    payloads = {line["payload"]: line.get("payloadEncoding") for line in lines}
    assert payloads == {"text": "utf-8", "/wA=": "base64"}  # consecutive messages: one of each


def test_subscribe_timeout_and_bad_filter(sandbox_home):
    proc = cli("subscribe", "nothing/ever", "--count", "1", "--timeout", "1", home=sandbox_home)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "0 of 1 message(s) arrived" in err
    proc = cli("subscribe", "a/#/b", home=sandbox_home)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "Invalid topic filter" in err and "Traceback" not in err


def test_log_command_shows_the_decision(settings, sandbox_home, deployer, rsa_key, iot_logging):
    fn = deployer.function(TUTORIAL_HANDLER)
    name, _ = deployer.authorizer(fn, rsa_key[1])
    try:
        headers = {"x-amz-customauthorizer-name": name, "tokenKeyName": "tokenKeyValue",
                   "x-amz-customauthorizer-signature": sign(rsa_key[0], "tokenKeyValue")[:-8] + "AAAAAAA="}
        topic = unique_topic()
        assert_forbidden(post(settings, topic, headers))
    finally:
        deployer.iot.update_authorizer(authorizerName=name, status="INACTIVE")
        deployer.iot.delete_authorizer(authorizerName=name)
    proc = cli("log", "--group", "AWSIotLogsV2", home=sandbox_home)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    line = next(line for line in out.splitlines() if topic in line)
    assert "Failure" in line and "AUTHENTICATION_FAILURE" in line and "signatureVerified=false" in line
    proc = cli("log", "--group", "AWSIotLogsV2", "--raw", home=sandbox_home)
    out, err = proc.communicate(timeout=60)
    raw = next(line for line in out.splitlines() if topic in line)
    entry = json.loads(raw[raw.index("{"):])
    assert entry["topicName"] == topic and entry["sandbox"]["lambdaInvoked"] is False
