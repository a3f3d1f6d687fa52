"""helpers.widgets without a frontend: validators, live ARN checking, the sender, the target chooser, the message view."""
from __future__ import annotations

import json
import re
import threading
import time

import pytest

from helpers import widgets
from helpers.publish import PublishConnectionError, PublishResult
from helpers.topics import Message
from helpers.state import WorkbookState

FUNCTION_ARN = "arn:aws:lambda:us-west-2:123456789012:function:custom-auth-function-abc123"
AUTHORIZER_ARN = "arn:aws:iot:us-west-2:123456789012:authorizer/my-new-authorizer-abc123"


# --- validators ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arn", [
    FUNCTION_ARN,
    FUNCTION_ARN + ":$LATEST",
    FUNCTION_ARN + ":prod",
    "arn:aws-cn:lambda:cn-north-1:123456789012:function:f_1",
    "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f",
])
def test_valid_function_arns(arn):
    assert widgets.validate_function_arn(arn) is None


@pytest.mark.parametrize("arn, message", [
    ("", "Empty"),
    (FUNCTION_ARN + "\n", "spaces or line breaks"),
    ("custom-auth-function-abc123", "starts with 'arn:'"),
    ("arn:aws:lambda:us-west-2", "Too few"),
    ("arn:azure:lambda:us-west-2:123456789012:function:f", "partition 'azure'"),
    ("arn:aws:iot:us-west-2:123456789012:function:f", "service is 'iot', but a Lambda function ARN has 'lambda'"),
    ("arn:aws:lambda:uswest2:123456789012:function:f", "region 'uswest2'"),
    ("arn:aws:lambda:us-west-2:1234567890:function:f", "account '1234567890' must be exactly 12 digits"),
    ("arn:aws:lambda:us-west-2:123456789012:layer:f", "'function', not 'layer'"),
    ("arn:aws:lambda:us-west-2:123456789012:function:", "function name is missing"),
    ("arn:aws:lambda:us-west-2:123456789012:function:my.function", "function name 'my.function'"),
    ("arn:aws:lambda:us-west-2:123456789012:function:" + "f" * 65, "1 to 64"),
    (FUNCTION_ARN + ":v!", "qualifier 'v!'"),
    (FUNCTION_ARN + ":1:2", "Too many"),
])
def test_invalid_function_arns_say_what_is_wrong(arn, message):
    assert message in widgets.validate_function_arn(arn)


@pytest.mark.parametrize("arn", [AUTHORIZER_ARN, "arn:aws:iot:eu-west-1:123456789012:authorizer/a=b,c@d_e-f"])
def test_valid_authorizer_arns(arn):
    assert widgets.validate_authorizer_arn(arn) is None


@pytest.mark.parametrize("arn, message", [
    (FUNCTION_ARN, "service is 'lambda', but an authorizer ARN has 'iot'"),
    ("arn:aws:iot:us-west-2:123456789012:thing/t", "'authorizer/NAME', not 'thing/t'"),
    ("arn:aws:iot:us-west-2:123456789012:authorizer/", "authorizer name is missing"),
    ("arn:aws:iot:us-west-2:123456789012:authorizer/a b", "authorizer name 'a b'"),
    ("arn:aws:iot:us-west-2:123456789012:authorizer/é", "authorizer name 'é'"),
    ("arn:aws:iot:us-west-2:123456789012:authorizer/" + "a" * 129, "1 to 128"),
    ("arn:aws:iot:us-west-2:42:authorizer/a", "account '42'"),
])
def test_invalid_authorizer_arns_say_what_is_wrong(arn, message):
    assert message in widgets.validate_authorizer_arn(arn)


# --- arn_input ----------------------------------------------------------------------------------------------

def test_arn_input_rechecks_on_every_change():
    box = widgets.arn_input("Function ARN", FUNCTION_ARN, widgets.validate_function_arn)
    assert box.value == FUNCTION_ARN and box.error is None and "✓" in box.status.value
    box.text.value = FUNCTION_ARN.replace("123456789012", "12345")  # as a keystroke would
    assert box.value.endswith("abc123") and "12 digits" in box.error
    assert "✗" in box.status.value and "12345" in box.status.value
    box.value = AUTHORIZER_ARN  # setting .value goes through the text box
    assert box.text.value == AUTHORIZER_ARN and "'iot'" in box.error
    assert widgets.arn_input("x", "<b>", widgets.validate_function_arn).status.value.count("<b>") == 0  # escaped


# --- action_token_sender ------------------------------------------------------------------------------------

def test_action_token_sender_sends_the_chosen_token_and_shows_the_answer():
    calls = []

    def fake_send(action_token):
        calls.append(action_token)
        ok = action_token == "allow"
        return PublishResult(status=200 if ok else 403, body={"message": "OK" if ok else "Forbidden",
                                                              "traceId": "t-1"},
                             trace_id="t-1", ok=ok, curl=f"curl --request POST 'https://h/topics/t?actionToken={action_token}'")

    sender = widgets.action_token_sender(fake_send)
    assert sender.last_result is None
    sender.button.click()  # what a click does, without a browser
    assert calls == ["allow"] and sender.last_result.status == 200
    sender.action_token.value = "deny"
    result = sender.send()
    assert calls == ["allow", "deny"] and result is sender.last_result and result.status == 403
    shown = widgets._output_text(sender.output)
    assert "HTTP 403 (refused)" in shown and '"message": "Forbidden"' in shown
    assert "curl --request POST 'https://h/topics/t?actionToken=deny'" in shown
    assert not sender.button.disabled


def test_action_token_sender_shows_errors_instead_of_raising():
    def unreachable(action_token):
        raise PublishConnectionError("Could not reach localhost:1. Is the sandbox running?")

    sender = widgets.action_token_sender(unreachable)
    assert sender.send() is None
    assert sender.last_error.startswith("PublishConnectionError: Could not reach")
    assert "Is the sandbox running?" in widgets._output_text(sender.output)


# --- target_chooser -----------------------------------------------------------------------------------------

@pytest.fixture
def dirs(sandbox_home, tmp_path, monkeypatch):
    monkeypatch.setenv("IOT_SANDBOX_HOME", str(sandbox_home))
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("WORKBOOK_TARGET", raising=False)
    return tmp_path


def test_target_chooser_records_the_sandbox_target(dirs):
    chooser = widgets.target_chooser()
    assert (chooser.target.value, chooser.region.value) == ("sandbox", "us-west-2")
    chooser.region.value = " eu-west-1 "
    chooser.button.click()
    state = WorkbookState.load()
    assert (state.get("target"), state.region) == ("sandbox", "eu-west-1")
    assert chooser.error is None and chooser.workbook.target == "sandbox"
    shown = widgets._output_text(chooser.output)
    assert shown.startswith("✓ Recorded.") and "target:   sandbox" in shown and state.suffix in shown
    assert repr(chooser) == "Run this cell to show the target chooser."  # never the recorded (author's) target
    assert chooser._repr_mimebundle_()["text/plain"] == repr(chooser)


def test_target_chooser_shows_a_bad_region_without_raising(dirs):
    chooser = widgets.target_chooser()
    chooser.region.value = "mars-1"
    assert chooser.use() is None
    assert "ConfigurationError" in chooser.error and "does not look like an AWS region" in chooser.error
    assert widgets._output_text(chooser.output).startswith("✗ ConfigurationError")
    assert WorkbookState.load().get("region") is None


def test_target_chooser_aws_without_credentials_says_what_to_do(dirs, no_aws_credentials):
    chooser = widgets.target_chooser()
    chooser.target.value = "aws"
    chooser.button.click()
    assert chooser.workbook is None and chooser.error.startswith("AwsSetupError:") and "aws configure" in chooser.error


# --- message_view / format_messages ------------------------------------------------------------------------

MESSAGES = [Message("test/a", b'{"temperature": 40}', 1, False), Message("test/b", b"\x00\xff", 0, True),
            Message("test/c", "line1\nline2 °C".encode(), 0, False)]


def test_format_messages():
    assert widgets.format_messages([]) == "No messages yet."
    lines = widgets.format_messages(MESSAGES).splitlines()
    assert lines[0].split() == ["TIME", "TOPIC", "QOS", "RETAIN", "PAYLOAD"]
    payload_column = lines[0].index("PAYLOAD")
    # JSON is pretty-printed, its lines under the payload column
    assert lines[1].split(None, 4) == ["-", "test/a", "1", "no", "{"]
    assert lines[2] == " " * payload_column + '  "temperature": 40' and lines[3] == " " * payload_column + "}"
    assert lines[4].split(None, 4) == ["-", "test/b", "0", "yes", "(binary, 2 bytes, base64) AP8="]
    assert lines[5].split(None, 4) == ["-", "test/c", "0", "no", "line1\\nline2 °C"]
    assert len(lines) == 6
    long = widgets.format_messages([Message("t", b"x" * 500)])
    assert long.endswith("x…") and len(long.splitlines()[1]) < 250
    long_json = widgets.format_messages([Message("t", json.dumps(list(range(100))).encode())]).splitlines()
    assert len(long_json) == 1 + widgets._JSON_LINES + 1 and long_json[-1].strip() == "…"


def test_format_messages_shows_the_time_received():
    received = time.mktime((2026, 12, 6, 4, 5, 6, 0, 0, -1)) + 0.789  # local time 04:05:06.789
    line = widgets.format_messages([Message("t", b"42", received_at=received)]).splitlines()[1]
    assert line.split() == ["04:05:06.789", "t", "0", "no", "42"]  # a JSON number stays on its line
    assert Message("t", b"x", received_at=1.0) == Message("t", b"x")  # the time is not part of the message


def test_message_table_html_is_left_aligned_padded_and_newest_first():
    table = widgets.messages_html(MESSAGES, 50)
    heads = re.findall(r'<th style="([^"]*)">([^<]*)</th>', table)
    assert [name for _, name in heads] == ["time", "topic", "QoS", "retain", "payload"]
    assert all("text-align: left" in style and "padding" in style for style, _ in heads)
    cells = re.findall(r'<td style="([^"]*)">', table)
    assert len(cells) == 15 and all("text-align: left" in style and "padding" in style for style in cells)
    assert table.index("test/c") < table.index("test/b") < table.index("test/a")  # newest first
    assert "<pre" in table and "&quot;temperature&quot;: 40\n}" in table  # pretty JSON kept as lines
    assert "3 messages, newest first." in table


class HookedWatch:
    """Like helpers.mqtt.MqttWatch: a messages snapshot and an on_message hook called on another thread."""

    def __init__(self):
        self._messages: list[Message] = []
        self.on_message = None

    @property
    def messages(self):
        return list(self._messages)

    def arrive(self, message):
        self._messages.append(message)
        if self.on_message is not None:
            self.on_message(message)


def test_message_view_fills_through_the_hook_and_unhooks():
    watch = HookedWatch()
    earlier = []
    watch.on_message = earlier.append  # a hook already there keeps working
    view = widgets.message_view(watch)
    assert "No messages yet" in view.html.value
    arrival = threading.Thread(target=watch.arrive, args=(MESSAGES[0],))
    arrival.start()
    arrival.join()
    assert "test/a" in view.html.value and "&quot;temperature&quot;: 40" in view.html.value
    assert earlier == [MESSAGES[0]]
    assert view.text == widgets.format_messages([MESSAGES[0]])
    view.stop()
    assert watch.on_message == earlier.append
    watch.arrive(MESSAGES[2])
    assert "test/c" not in view.html.value
    view.stop()  # twice is fine


def test_message_view_polls_a_plain_list_and_stops_its_thread():
    watch = type("ListWatch", (), {})()
    watch.messages = []
    view = widgets.message_view(watch, interval=0.02)
    watch.messages.append(MESSAGES[1])
    deadline = time.monotonic() + 5
    while "test/b" not in view.html.value and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "test/b" in view.html.value and "AP8=" in view.html.value
    view.close()
    assert not view._thread.is_alive()


def test_message_view_shows_only_the_latest():
    watch = HookedWatch()
    view = widgets.message_view(watch)
    for i in range(view.SHOWN + 5):
        watch.arrive(Message(f"t/{i}", b"x"))
    assert f"newest {view.SHOWN} of {view.SHOWN + 5}" in view.html.value
    assert ">t/4<" not in view.html.value and f">t/{view.SHOWN + 4}<" in view.html.value
    view.stop()


def test_arn_boxes_check_that_the_resource_exists(wb, deployer):
    from helpers.widgets import (ArnError, arn_input, authorizer_exists, function_exists, validate_authorizer_arn,
                                 validate_function_arn)

    fn = deployer.function("def lambda_handler(event, context):\n    return {}\n")
    box = arn_input("Function ARN", fn, validate_function_arn, function_exists(wb))
    assert box.error is None and "and it exists" in box.status.value and box.checked() == fn
    box.value = fn[:-1] + "x"  # well-formed, but no such function
    assert "No Lambda function has this ARN" in box.error
    with pytest.raises(ArnError, match="Function ARN: No Lambda function has this ARN"):
        box.checked()
    _, auth_arn = deployer.authorizer(fn, None)
    box = arn_input("Authorizer ARN", auth_arn, validate_authorizer_arn, authorizer_exists(wb))
    assert box.error is None
    box.value = auth_arn + "-typo"
    assert "No authorizer called" in box.error
