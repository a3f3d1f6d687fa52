#!/usr/bin/env python3
"""Benchmark the Lambda engine on its own (helpers/sandbox/runtime), no HTTP in between.

    .venv/bin/python bench/bench_runtime.py [--rounds 5] [--calls 200]

Prints medians over rounds, each figure measured in this one run:
- a warm invoke (the worker process already running): milliseconds per call;
- a 0.5 s function timeout: how long the caller waits until the timed-out answer;
- four 0.4 s invocations started at once: wall time (one after the other would be 1.6 s);
- the first call of new code (a cold worker): milliseconds.
These were timing asserts in tests/test_runtime.py; on a loaded 2-core machine they flaked, so the
tests now assert the behaviour (reuse, timeout, concurrency) and the durations are measured here.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers.sandbox.runtime import FunctionSpec, LambdaRuntime  # noqa: E402

HANDLER = """import os, time
def lambda_handler(event, context):
    time.sleep(event.get("seconds", 0))
    return os.getpid()
"""


def spec(sha: str, timeout: float = 3.0) -> FunctionSpec:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("lambda_function.py", HANDLER)
    return FunctionSpec(name="bench", arn="arn:aws:lambda:us-west-2:123456789012:function:bench",
                        runtime=f"python{sys.version_info.major}.{sys.version_info.minor}",
                        handler="lambda_function.lambda_handler", code_sha256=sha, code_zip=buf.getvalue(),
                        timeout=timeout)


def invoke(rt: LambdaRuntime, s: FunctionSpec, event: dict, **kw):
    return rt.invoke(s, json.dumps(event).encode(), **kw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    warm, timeouts, parallel, cold = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        rt = LambdaRuntime(Path(tmp) / "lambda", namespaces=False)
        try:
            for r in range(args.rounds):
                s = spec(f"bench-{r}")
                started = time.perf_counter()
                invoke(rt, s, {})
                cold.append(time.perf_counter() - started)
                started = time.perf_counter()
                for _ in range(args.calls):
                    invoke(rt, s, {})
                warm.append((time.perf_counter() - started) / args.calls)
                started = time.perf_counter()
                answer = invoke(rt, s, {"seconds": 5}, timeout=0.5)
                timeouts.append(time.perf_counter() - started)
                assert answer.function_error == "Unhandled", answer
                threads = [threading.Thread(target=invoke, args=(rt, s, {"seconds": 0.4})) for _ in range(4)]
                started = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                parallel.append(time.perf_counter() - started)
        finally:
            rt.shutdown()
    ms = lambda xs: f"median {statistics.median(xs) * 1000:7.1f} ms (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})"  # noqa: E731
    print(f"rounds: {args.rounds}; warm calls per round: {args.calls}")
    print(f"first call of new code (cold worker):      {ms(cold)}")
    print(f"warm invoke, per call:                     {ms(warm)}")
    print(f"0.5 s timeout, caller waits:               {ms(timeouts)}")
    print(f"4 × 0.4 s at once, wall:                   {ms(parallel)}  (in sequence: 1600 ms)")


if __name__ == "__main__":
    main()
