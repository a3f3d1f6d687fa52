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
import logging
import os
import sys
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
    from .subscriber import SubscribeError, subscribe, validate_topic_filter

    try:
        validate_topic_filter(args.topic_filter)
    except ValueError as exc:
        raise SandboxError(f"Invalid topic filter {args.topic_filter!r}: {exc}") from None
    settings = control.status(_home(args))
    if settings is None:
        return _not_running(_home(args))
    try:
        messages = subscribe(settings, args.topic_filter, count=args.count,
                             timeout=args.timeout, on_message=lambda m: print(m.to_json_line(), flush=True))
    except SubscribeError as exc:
        raise SandboxError(str(exc)) from None
    except KeyboardInterrupt:
        return 130
    if args.count is not None and len(messages) < args.count:
        print(f"# {len(messages)} of {args.count} message(s) arrived within {args.timeout} s", file=sys.stderr)
        return 1
    return 0


def cmd_log(args) -> int:
    from .logview import show_log

    settings = control.status(_home(args))
    if settings is None:
        return _not_running(_home(args))
    return show_log(settings, follow=args.follow, group=args.group, since=args.since, raw=args.raw)


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
    p.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    p.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds")
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
