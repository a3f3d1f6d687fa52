"""The notebooks' small interactive controls, each with a plain function twin.

A widget only collects input and shows output; the work is done by an ordinary
function that the next cell can call too. A headless run (nbval, CI) never
clicks anything, so it goes through the same code:

- :func:`target_chooser` (notebook 00): record sandbox or aws and the region.
  Twin: ``helpers.workbook.choose_target(target, region)``.
- :func:`arn_input`: an ARN box checked on every keystroke.
  Twins: :func:`validate_function_arn`, :func:`validate_authorizer_arn`.
- :func:`action_token_sender` (notebook 06): publish with actionToken allow or deny.
  Twin: ``helpers.publish.send``.
- :func:`message_view` (notebook 07): the messages on a watch, as they arrive.
  Twin: :func:`format_messages`.

Every widget works without a browser: building one and calling its handler
(``chooser.use()``, ``sender.send()``, ``view.refresh()``) never needs a
frontend, and each keeps its last result on itself for the next cell.

Where the live widget is not (the cell not run yet, a committed or reopened notebook, GitHub),
each shows one line instead: "Run this cell to show the target chooser." (its ``text/plain``
and ``text/html``). Saved notebooks keep only that line (``helpers/lab.py``), so JupyterLab never
reopens one as "Error displaying widget: model not found".

Usage:

>>> validate_function_arn("arn:aws:lambda:us-west-2:123456789012:function:custom-auth-function-abc123") is None
True
>>> validate_function_arn("arn:aws:lambda:us-west-2:12345:function:f")
"The account '12345' must be exactly 12 digits."
>>> box = arn_input("Function ARN", "arn:aws:lambda:us-west-2:123456789012:function:f", validate_function_arn)
>>> box.value = "arn:aws:iot:us-west-2:123456789012:function:f"
>>> box.error
"The service is 'iot', but a Lambda function ARN has 'lambda' (arn:aws:lambda:...)."
>>> from helpers.topics import Message
>>> print(format_messages([Message("test/topic", b'{"temperature": 40}', 1, False)]))
TIME  TOPIC       QOS  RETAIN  PAYLOAD
-     test/topic  1    no      {
                                 "temperature": 40
                               }
"""
from __future__ import annotations

import base64
import html
import json
import re
import threading
import time
from typing import Any, Callable, Iterable

import ipywidgets as widgets

from helpers.errors import WorkbookError
from helpers.tables import text_table
from helpers.targets import TARGETS

__all__ = ["ActionTokenSender", "ArnInput", "Hinted", "MessageView", "TargetChooser", "action_token_sender",
           "arn_input", "format_messages", "message_view", "messages_html", "target_chooser",
           "validate_authorizer_arn", "validate_function_arn"]

_LABEL_STYLE = {"description_width": "initial"}


def _set_text(output: widgets.Output, text: str) -> None:
    """Replace an Output's content with ``text`` (works with and without a frontend)."""
    output.outputs = ({"output_type": "stream", "name": "stdout", "text": text + "\n"},)


def _output_text(output: widgets.Output) -> str:
    return "".join(item.get("text", "") for item in output.outputs)


class Hinted:
    """A widget whose display carries, beside the live view, what a notebook shows without it.

    JupyterLab draws the live widget from ``application/vnd.jupyter.widget-view+json``. Where there
    is no live widget (the cell not run yet, a committed or reopened notebook, GitHub), the text
    beside it is what shows: the ``text/plain`` and ``text/html`` hint "Run this cell to show the
    ...". Saved notebooks keep only the hint (``helpers/lab.py``).
    """

    hint_name = "widget"

    def hint(self) -> str:
        """The one line an unrun or reopened cell shows in place of the widget."""
        return f"Run this cell to show the {self.hint_name}."

    def __repr__(self) -> str:
        return self.hint()

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self.hint()
        bundle["text/html"] = (f'<div style="padding: 4px 10px; border-left: 3px solid #999; color: #555">'
                               f"▶ {html.escape(self.hint())}</div>")
        return bundle


# --- notebook 00: the target ------------------------------------------------------------------------

class TargetChooser(Hinted, widgets.VBox):
    """sandbox/aws buttons, a region box and "Use this target"; :meth:`use` is the click handler.

    After a click, ``.workbook`` is the opened :class:`~helpers.workbook.Workbook` (or None) and
    ``.error`` the error text (or None); ``.output`` shows the same.
    """

    def __init__(self, state=None):
        from helpers.state import WorkbookState

        self._state = state
        current = state or WorkbookState.load()
        self.target = widgets.ToggleButtons(
            options=list(TARGETS), value=current.target, description="Target:",
            tooltips=["The local stand-in: offline, free", "Your AWS account (boto3's credentials)"],
            style=_LABEL_STYLE)
        self.region = widgets.Text(value=current.region, description="Region:", placeholder="us-west-2",
                                   style=_LABEL_STYLE)
        self.button = widgets.Button(description="Use this target", button_style="primary", icon="check")
        self.output = widgets.Output()
        self.workbook = None
        self.error: str | None = None
        self.button.on_click(lambda _button: self.use())
        super().__init__([self.target, self.region, self.button, self.output])

    def use(self):
        """Record the chosen target and region (``choose_target``) and show the result. Returns the Workbook."""
        from helpers.workbook import choose_target

        target, region = self.target.value, self.region.value.strip()
        expected: tuple[type[Exception], ...] = (WorkbookError,)
        if target == "sandbox":  # only then: the aws path never loads helpers.sandbox
            from helpers.sandbox import SandboxError
            expected += (SandboxError,)
        _set_text(self.output, f"Opening the workbook on {target} ({region})…")
        self.button.disabled = True
        try:
            self.workbook, self.error = choose_target(target, region, self._state), None
        except expected as error:
            self.workbook, self.error = None, f"{type(error).__name__}: {error}"
            _set_text(self.output, f"✗ {self.error}")
        else:
            self.region.value = region
            _set_text(self.output, f"✓ Recorded.\n{self.workbook.summary()}")
        finally:
            self.button.disabled = False
        return self.workbook

    # (not the recorded target: a committed notebook would show the author's, not the learner's)
    hint_name = "target chooser"


def target_chooser(state=None) -> TargetChooser:
    """Notebook 00's chooser. Plain twin: ``helpers.workbook.choose_target(target, region)``."""
    return TargetChooser(state)


# --- ARNs -------------------------------------------------------------------------------------------

_PARTITION = re.compile(r"aws[a-z-]*")
# botocore's lambda FunctionArn region part
_REGION = re.compile(r"[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d")
_ACCOUNT = re.compile(r"\d{12}")
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_QUALIFIER = re.compile(r"\$LATEST|[a-zA-Z0-9_-]{1,128}")
_AUTHORIZER_NAME = re.compile(r"[\w=,@-]{1,128}", re.ASCII)


def _arn_prefix_problem(text: Any, service: str, shape: str, what: str) -> tuple[str | None, list[str]]:
    """Check ``arn:PARTITION:SERVICE:REGION:ACCOUNT:``; return (problem, parts)."""
    if not isinstance(text, str) or not text:
        return f"Empty: paste an ARN like {shape}.", []
    if text != text.strip():
        return "Remove the spaces or line breaks before or after the ARN.", []
    parts = text.split(":")
    if parts[0] != "arn":
        return f"An ARN starts with 'arn:'; expected {shape}.", parts
    if len(parts) < 6:
        return f"Too few ':'-separated parts: expected {shape}.", parts
    if not _PARTITION.fullmatch(parts[1]):
        return f"The partition {parts[1]!r} is not one of AWS's (aws, aws-cn, aws-us-gov, ...).", parts
    if parts[2] != service:
        return f"The service is {parts[2]!r}, but {what} has {service!r} (arn:aws:{service}:...).", parts
    if not _REGION.fullmatch(parts[3]):
        return f"The region {parts[3]!r} is not a region name like us-west-2.", parts
    if not _ACCOUNT.fullmatch(parts[4]):
        return f"The account {parts[4]!r} must be exactly 12 digits.", parts
    return None, parts


def validate_function_arn(text: str) -> str | None:
    """None for a Lambda function ARN (``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]``), else why not.

    The pattern is botocore's ``FunctionArn`` (lambda service model).
    """
    shape = "arn:aws:lambda:REGION:ACCOUNT:function:NAME"
    problem, parts = _arn_prefix_problem(text, "lambda", shape, "a Lambda function ARN")
    if problem:
        return problem
    if parts[5] != "function":
        return f"After the account comes 'function', not {parts[5]!r}: expected {shape}."
    if len(parts) < 7 or not parts[6]:
        return f"The function name is missing: expected {shape}."
    if len(parts) > 8:
        return "Too many ':'-separated parts: only NAME and an optional :QUALIFIER may follow 'function:'."
    if not _FUNCTION_NAME.fullmatch(parts[6]):
        return (f"The function name {parts[6]!r} may only hold letters, digits, '-' and '_' "
                "(1 to 64 characters).")
    if len(parts) == 8 and not _QUALIFIER.fullmatch(parts[7]):
        return f"The qualifier {parts[7]!r} must be $LATEST, a version number or an alias name."
    return None


def validate_authorizer_arn(text: str) -> str | None:
    """None for an IoT authorizer ARN (``arn:aws:iot:REGION:ACCOUNT:authorizer/NAME``), else why not.

    NAME follows botocore's ``AuthorizerName``: ``[\\w=,@-]+``, 1 to 128 characters.
    """
    shape = "arn:aws:iot:REGION:ACCOUNT:authorizer/NAME"
    problem, parts = _arn_prefix_problem(text, "iot", shape, "an authorizer ARN")
    if problem:
        return problem
    resource = ":".join(parts[5:])
    kind, slash, name = resource.partition("/")
    if kind != "authorizer" or not slash:
        return f"After the account comes 'authorizer/NAME', not {resource!r}: expected {shape}."
    if not name:
        return f"The authorizer name is missing: expected {shape}."
    if not _AUTHORIZER_NAME.fullmatch(name):
        return (f"The authorizer name {name!r} may only hold letters, digits and _ = , @ - "
                "(1 to 128 characters).")
    return None


class ArnInput(Hinted, widgets.VBox):
    """A text box and a status line that re-checks the text on every change.

    Read ``.value`` (the text, as typed) and ``.error`` (None when valid) from the next cell;
    ``.text`` is the Text widget and ``.status`` the HTML status line.
    """

    def __init__(self, label: str, value: str, validator: Callable[[str], str | None],
                 exists: Callable[[str], str | None] | None = None):
        self.validator = validator
        self.exists = exists
        # width auto: the box stretches to the output's width, margins included (width 100% plus the
        # widget's margins overflowed into a horizontal scrollbar in JupyterLab)
        self.text = widgets.Text(value=value, description=label, continuous_update=True,
                                 layout=widgets.Layout(width="auto"),
                                 style=_LABEL_STYLE)
        self.status = widgets.HTML()
        self.error: str | None = None
        self.text.observe(self._check, names="value")
        super().__init__([self.text, self.status])
        self._check()

    def _check(self, _change=None) -> None:
        self.error = self.validator(self.text.value)
        if self.error is None and self.exists is not None:
            try:
                self.error = self.exists(self.text.value)
            except Exception as exc:  # the box must keep working whatever the service says
                from helpers.errors import one_line

                self.error = one_line(exc) or f"could not check that it exists: {exc}"
        if self.error is None:
            found = ", and it exists" if self.exists is not None else ""
            self.status.value = f'<span style="color: green">✓ valid{found}</span>'
        else:
            self.status.value = f'<span style="color: #b00">✗ {html.escape(self.error)}</span>'

    @property
    def value(self) -> str:
        return self.text.value

    @value.setter
    def value(self, new: str) -> None:
        self.text.value = new

    @property
    def hint_name(self) -> str:
        return f"{self.text.description.rstrip(':')} box"

    def checked(self) -> str:
        """The value, or an :class:`ArnError` saying in one line what is wrong with it (shape or existence)."""
        self._check()
        if self.error is not None:
            raise ArnError(f"{self.text.description.rstrip(':')}: {self.error} Fix the box above, then run this "
                           "cell again.")
        return self.value


class ArnError(WorkbookError):
    """An ARN box holds something that is not a usable ARN (wrong shape, or nothing by that ARN exists)."""


def arn_input(label: str, value: str, validator: Callable[[str], str | None],
              exists: Callable[[str], str | None] | None = None) -> ArnInput:
    """A pre-filled ARN box with live checking (``exists``: also ask AWS, see :func:`function_exists`).

    Plain twin: the ``validator`` itself."""
    return ArnInput(label, value, validator, exists)


def _not_found(error) -> bool:
    from helpers.workbook import error_code

    return error_code(error) == "ResourceNotFoundException"


def function_exists(wb) -> Callable[[str], str | None]:
    """A checker for :func:`arn_input`: None when Lambda has a function by that ARN, else why not."""
    def check(arn: str) -> str | None:
        import botocore.exceptions
        try:
            # CLI: aws lambda get-function-configuration --function-name ARN
            wb.client("lambda").get_function_configuration(FunctionName=arn)
        except botocore.exceptions.ClientError as error:
            if _not_found(error):
                return (f"No Lambda function has this ARN in {wb.region} (a typo, another account or region?): "
                        "copy it from notebook 01's output.")
            raise
        return None
    return check


def authorizer_exists(wb) -> Callable[[str], str | None]:
    """A checker for :func:`arn_input`: None when AWS IoT has an authorizer by that ARN, else why not."""
    def check(arn: str) -> str | None:
        import botocore.exceptions
        name = arn.split(":", 5)[5].partition("/")[2]
        try:
            # CLI: aws iot describe-authorizer --authorizer-name NAME
            found = wb.client("iot").describe_authorizer(authorizerName=name)["authorizerDescription"]
        except botocore.exceptions.ClientError as error:
            if _not_found(error):
                return (f"No authorizer called {name!r} exists in {wb.region}: copy the ARN from notebook 03's "
                        "output.")
            raise
        if found.get("authorizerArn") != arn:
            return f"The authorizer {name!r} exists, but its ARN is {found.get('authorizerArn')}."
        return None
    return check


# --- notebook 06: allow / deny ------------------------------------------------------------------------

class ActionTokenSender(Hinted, widgets.VBox):
    """allow/deny buttons, Send, and what the endpoint answered (status, body, curl line).

    :meth:`send` is the click handler; ``.last_result`` is the last
    :class:`helpers.publish.PublishResult` and ``.last_error`` the last error text.
    """

    def __init__(self, send_fn: Callable[[str], Any]):
        self.send_fn = send_fn
        self.action_token = widgets.ToggleButtons(options=["allow", "deny"], value="allow",
                                                  description="actionToken:", style=_LABEL_STYLE)
        self.button = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
        self.output = widgets.Output()
        self.last_result = None
        self.last_error: str | None = None
        self.button.on_click(lambda _button: self.send())
        super().__init__([self.action_token, self.button, self.output])

    def send(self):
        """Call ``send_fn(action_token)``, show and keep the result. Errors are shown, not raised."""
        token = self.action_token.value
        self.button.disabled = True
        try:
            result = self.send_fn(token)
        except Exception as error:  # a button callback's exception would vanish into the kernel log
            self.last_error = f"{type(error).__name__}: {error}"
            _set_text(self.output, f"actionToken={token}: ✗ {self.last_error}")
            return None
        finally:
            self.button.disabled = False
        self.last_result, self.last_error = result, None
        body = json.dumps(result.body, indent=2, sort_keys=True) if isinstance(result.body, dict) else result.body
        verdict = "published" if result.ok else "refused"
        _set_text(self.output, f"actionToken={token} → HTTP {result.status} ({verdict})\n{body}\n\n"
                               f"The same request with curl:\n{result.curl}")
        return result

    hint_name = "allow/deny sender"


def action_token_sender(send_fn: Callable[[str], Any]) -> ActionTokenSender:
    """Notebook 06's sender. ``send_fn(action_token)`` returns a PublishResult. Plain twin: ``publish.send``."""
    return ActionTokenSender(send_fn)


# --- notebook 07: messages ------------------------------------------------------------------------------

_PAYLOAD_LIMIT = 200  # characters of a one-line payload
_JSON_LINES = 30  # lines of a pretty-printed JSON payload
_COLUMNS = ("time", "topic", "QoS", "retain", "payload")


def _payload_text(payload: bytes) -> str:
    """The payload as shown: pretty-printed JSON when it parses as an object or array (the AWS
    console's MQTT test client does the same), else UTF-8 text on one line (control characters
    escaped), else a base64 note."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = f"(binary, {len(payload)} bytes, base64) {base64.b64encode(payload).decode('ascii')}"
    else:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, (dict, list)):
            lines = json.dumps(parsed, indent=2, ensure_ascii=False).splitlines()
            if len(lines) > _JSON_LINES:
                lines = lines[:_JSON_LINES] + ["…"]
            return "\n".join(lines)
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _PAYLOAD_LIMIT else text[:_PAYLOAD_LIMIT] + "…"


def _time_text(received_at: float | None) -> str:
    """Local time of day with milliseconds (HH:MM:SS.mmm), or '-' for a message never received."""
    if received_at is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(received_at)) + f".{int(received_at % 1 * 1000):03d}"


def _rows(messages: Iterable) -> list[tuple[str, str, str, str, str]]:
    return [(_time_text(getattr(m, "received_at", None)), m.topic, str(m.qos), "yes" if m.retain else "no",
             _payload_text(m.payload)) for m in messages]


def format_messages(messages) -> str:
    """A plain-text table of messages, oldest first: time received, topic, QoS, retain, payload.

    A JSON payload is pretty-printed on the lines below, in the payload column.
    """
    rows = _rows(messages)
    if not rows:
        return "No messages yet."
    return text_table([tuple(name.upper() for name in _COLUMNS), *rows])


class MessageView(Hinted, widgets.VBox):
    """A table of the messages on ``watch`` that fills as they arrive.

    If ``watch`` has an ``on_message`` attribute (like :class:`helpers.mqtt.MqttWatch`), the view
    hooks into it (keeping any hook already there); otherwise a background thread polls
    ``watch.messages`` every ``interval`` seconds. :meth:`stop` (or ``close()``) undoes either.
    """

    SHOWN = 50

    def __init__(self, watch, interval: float = 0.5):
        self.watch = watch
        # compact: newest first in a box that scrolls, so the latest message stays in sight
        self.html = widgets.HTML(layout=widgets.Layout(max_height="20em", overflow="auto"))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_hook = None
        self._hooked = hasattr(watch, "on_message")
        super().__init__([self.html])
        if self._hooked:
            self._previous_hook = watch.on_message
            watch.on_message = self._on_message
        else:
            self._thread = threading.Thread(target=self._poll, args=(interval,), name="message-view", daemon=True)
            self._thread.start()
        self.refresh()

    def _on_message(self, message) -> None:
        if self._previous_hook is not None:
            self._previous_hook(message)
        self.refresh()

    def _poll(self, interval: float) -> None:
        seen = -1
        while not self._stop.wait(interval):
            count = len(self.watch.messages)
            if count != seen:
                seen = count
                self.refresh()

    def refresh(self) -> None:
        """Redraw the table from ``watch.messages``."""
        with self._lock:
            messages = list(self.watch.messages)
            self.html.value = messages_html(messages, self.SHOWN)

    @property
    def text(self) -> str:
        """What the view shows, as plain text (:func:`format_messages`)."""
        return format_messages(self.watch.messages)

    def stop(self) -> None:
        """Stop updating: unhook from the watch or end the polling thread. Safe to call twice."""
        self._stop.set()
        if self._hooked and getattr(self.watch, "on_message", None) == self._on_message:
            self.watch.on_message = self._previous_hook
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def close(self) -> None:
        self.stop()
        super().close()

    hint_name = "live message view"


_CELL = "text-align: left; vertical-align: top; padding: 3px 12px 3px 0; border: none"
_HEAD = _CELL + "; border-bottom: 1px solid #bbb; font-weight: 600; white-space: nowrap"
_PRE = ("margin: 0; padding: 0; background: none; white-space: pre-wrap; overflow-wrap: anywhere; "
        "font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 13px)")


def messages_html(messages: list, shown: int) -> str:
    """The message table's HTML (the live view's, the device console's): newest first (as in the AWS console's MQTT test client), the latest ``shown``."""
    if not messages:
        return "<i>No messages yet: they appear here, newest first, as they arrive.</i>"
    rows = _rows(messages)[-shown:][::-1]
    note = (f"Showing the newest {shown} of {len(messages)} messages." if len(messages) > shown
            else f"{len(messages)} message{'s' if len(messages) != 1 else ''}, newest first.")
    head = "".join(f'<th style="{_HEAD}">{name}</th>' for name in _COLUMNS)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}; white-space: nowrap">{html.escape(cell)}</td>' for cell in row[:4])
        + f'<td style="{_CELL}"><pre style="{_PRE}">{html.escape(row[4])}</pre></td></tr>'
        for row in rows)
    return (f'<div style="font-size: 90%; color: #555; margin-bottom: 4px">{note}</div>'
            f'<table style="border-collapse: collapse; margin: 0; table-layout: auto">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def message_view(watch, interval: float = 0.5) -> MessageView:
    """Notebook 07's live view of ``watch.messages``. Plain twin: :func:`format_messages`."""
    return MessageView(watch, interval)
