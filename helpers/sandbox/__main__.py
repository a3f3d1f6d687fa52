"""Command line for the sandbox: ``python -m helpers.sandbox COMMAND``.

    eval "$(python -m helpers.sandbox start)"   # start (if needed) and point the AWS CLI/boto3 at it
    python -m helpers.sandbox status            # is it running, where
    python -m helpers.sandbox env               # the export lines again
    python -m helpers.sandbox subscribe 'test/#' --count 1 --timeout 30
    python -m helpers.sandbox log --follow      # Lambda output and authorization decisions
    python -m helpers.sandbox stop
    python -m helpers.sandbox serve             # run in the foreground (what start runs detached)

Every command takes ``--state-dir DIR`` (default: ``$IOT_SANDBOX_HOME`` or
``.workbook/sandbox`` in this checkout). Errors are one clear line on stderr and
a non-zero exit status, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from . import control
from .app import Sandbox, SandboxError

EXIT_NOT_RUNNING = 3


def _home(args) -> Path:
    return Path(args.state_dir).expanduser().resolve() if args.state_dir else control.default_home()


def _not_running(home: Path) -> int:
    print(f"No sandbox is running for {home}. Start one with: eval \"$(python -m helpers.sandbox start)\"",
          file=sys.stderr)
    return EXIT_NOT_RUNNING


def cmd_start(args) -> int:
    notes: list[str] = []
    settings = control.ensure_running(_home(args), port=args.port, notes=notes)
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    print(settings.export_lines())
    print(f"# sandbox running: pid {settings.pid}, API {settings.endpoint_url}, "
          f"data endpoint {settings.data_endpoint} (HTTPS, MQTT with ALPN mqtt, MQTT over WebSocket)", file=sys.stderr)
    return 0


def cmd_env(args) -> int:
    settings = control.status(_home(args))
    if settings is None:
        return _not_running(_home(args))
    print(settings.export_lines())
    return 0


def cmd_status(args) -> int:
    settings = control.status(_home(args))
    if settings is None:
        print(f"stopped (home {_home(args)})")
        return EXIT_NOT_RUNNING
    print(f"running (pid {settings.pid}, home {settings.home})\n"
          f"  API endpoint:   {settings.endpoint_url}\n"
          f"  data endpoint:  {settings.data_endpoint}\n"
          f"  MQTT:           {settings.data_endpoint} (TLS with ALPN mqtt, or WebSocket at /mqtt)\n"
          f"  CA bundle:      {settings.ca_bundle}\n"
          f"  account/region: {settings.account_id} / {settings.region}")
    return 0


def cmd_stop(args) -> int:
    if control.stop(_home(args)):
        print(f"stopped the sandbox for {_home(args)}")
    else:
        print(f"no sandbox was running for {_home(args)}")
    return 0


def cmd_serve(args) -> int:
    os.umask(0o077)  # before anything is written: sandbox.log rotations, database, WAL, keys are owner-only
    if sys.platform.startswith("linux"):  # other processes of this user cannot read its memory, cwd or fds via /proc
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(4, 0)  # PR_SET_DUMPABLE 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    sandbox = Sandbox(_home(args), port=args.port)
    info = sandbox.start()
    print(f"sandbox ready: API https://127.0.0.1:{info['api_port']} data {info['data_endpoint']} "
          f"(pid {info['pid']})", file=sys.stderr, flush=True)
    sandbox.serve_forever()
    return 0


def cmd_subscribe(args) -> int:
    """Print each message on the filter as one JSON line, through the workbook's MQTT client (SigV4, as
    the AWS console's MQTT test client connects), until ``--count`` messages, ``--timeout`` or Ctrl+C."""
    from helpers.mqtt import MqttError, MqttTimeoutError
    from helpers.topics import topic_filter_error

    problem = topic_filter_error(args.topic_filter)
    if problem:
        raise SandboxError(f"Invalid topic filter {args.topic_filter!r}: {problem}")
    settings = control.status(_home(args))
    if settings is None:
        return _not_running(_home(args))
    watch = settings.watch(args.topic_filter, on_message=lambda m: print(m.to_json_line(), flush=True))
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        watch.start()
        while args.count is None or len(watch.messages) < args.count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            with contextlib.suppress(MqttTimeoutError):  # short waits keep Ctrl+C responsive
                watch.wait_for(len(watch.messages) + 1, timeout=0.25 if left is None else min(left, 0.25))
    except MqttError as exc:
        raise SandboxError(str(exc)) from None
    except KeyboardInterrupt:  # the way to end an unbounded subscribe; else an interruption
        return 0 if args.count is None and args.timeout is None else 130
    finally:
        watch.stop()
    if args.count is not None and len(watch.messages) < args.count:
        print(f"# {len(watch.messages)} of {args.count} message(s) arrived within {args.timeout} s", file=sys.stderr)
        return 1
    return 0


def cmd_log(args) -> int:
    from .logview import show_log

    settings = control.status(_home(args))
    if settings is None:
        return _not_running(_home(args))
    return show_log(settings, follow=args.follow, group=args.group, since=args.since, raw=args.raw)


def _at_least(lowest, kind):
    """An argparse type: a number of ``kind`` not below ``lowest`` (argparse says so in one line)."""
    def parse(text: str):
        value = kind(text)
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, not {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value: ..."
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.sandbox",
                                     description="A local AWS stand-in for the IoT custom authorizer workbook.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str, port: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--state-dir", metavar="DIR", help="sandbox home (default: $IOT_SANDBOX_HOME or "
                       ".workbook/sandbox in this checkout)")
        if port:
            p.add_argument("--port", type=int, metavar="N",
                           help="API port on 127.0.0.1 (0 = any free port; default: the last one used, if free)")
        p.set_defaults(func=func)
        return p

    add("start", cmd_start, "start the sandbox in the background (if needed) and print export lines", port=True)
    add("stop", cmd_stop, "stop the sandbox")
    add("status", cmd_status, "say whether the sandbox runs, and where")
    add("env", cmd_env, "print the export lines for the running sandbox")
    add("serve", cmd_serve, "run the sandbox in the foreground", port=True)
    p = add("subscribe", cmd_subscribe, "print messages on an MQTT topic filter, one JSON line each")
    p.add_argument("topic_filter", help="MQTT topic filter, e.g. test/cust-auth/topic or 'test/#'")
    p.add_argument("--count", type=_at_least(1, int), metavar="N", help="exit after N messages")
    p.add_argument("--timeout", type=_at_least(0, float), metavar="S", help="exit after S seconds")
    p = add("log", cmd_log, "print Lambda output and authorization decisions")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new entries")
    p.add_argument("--group", help="only this log group (e.g. AWSIotLogsV2 or /aws/lambda/NAME)")
    p.add_argument("--since", type=float, default=3600.0, metavar="S", help="from S seconds ago (default 3600)")
    p.add_argument("--raw", action="store_true", help="print each entry's message as stored (full JSON)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "port", None) is not None and not 0 <= args.port <= 65535:
        print(f"error: --port must be between 0 and 65535, not {args.port}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
