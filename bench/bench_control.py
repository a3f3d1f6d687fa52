#!/usr/bin/env python3
"""Benchmark the control plane: start-up latency and warm test-invoke throughput.

Prints (medians over repeated runs in this one process):
- start → first answered request: from `python -m helpers.sandbox start` being run to the first successful
  signed GetCallerIdentity, with a fresh home each time (so it includes CA and certificate creation) and
  with a warm home (restart);
- warm TestInvokeAuthorizer round trips per second through a Python handler (signature check, permission
  check, Lambda worker invocation, response validation), one client, keep-alive.

Usage: python bench/bench_control.py [--starts 5] [--batches 5] [--batch-size 200]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import deploy  # noqa: E402
from helpers import sandbox  # noqa: E402

def time_start(home: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "helpers.sandbox", "start", "--state-dir", str(home)], cwd=ROOT,
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    settings = sandbox.status(home)
    settings.client("sts").get_caller_identity()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args()

    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.starts):
            home = Path(tmp) / f"cold-{i}"
            cold.append(time_start(home))
            sandbox.stop(home)
            warm.append(time_start(home))  # same home again: CA and database already there
            sandbox.stop(home)

        home = Path(tmp) / "invoke"
        settings = sandbox.ensure_running(home)
        try:
            name = "bench-auth"
            signature = deploy(settings, {name: False})
            iot = settings.client("iot")
            call = dict(authorizerName=name, token="tokenKeyValue", tokenSignature=signature)
            iot.test_invoke_authorizer(**call)  # warm the worker
            rates = []
            for _ in range(args.batches):
                t0 = time.perf_counter()
                for _ in range(args.batch_size):
                    iot.test_invoke_authorizer(**call)
                rates.append(args.batch_size / (time.perf_counter() - t0))
            baseline = []
            for _ in range(args.batches):
                t0 = time.perf_counter()
                for _ in range(args.batch_size):
                    iot.describe_authorizer(authorizerName=name)
                baseline.append(args.batch_size / (time.perf_counter() - t0))
        finally:
            sandbox.stop(home)

    print(f"start → first answered request, fresh home:  median {statistics.median(cold) * 1000:7.0f} ms "
          f"(n={len(cold)}, min {min(cold) * 1000:.0f}, max {max(cold) * 1000:.0f})")
    print(f"start → first answered request, warm home:   median {statistics.median(warm) * 1000:7.0f} ms "
          f"(n={len(warm)}, min {min(warm) * 1000:.0f}, max {max(warm) * 1000:.0f})")
    print(f"warm test-invoke-authorizer (Python handler): median {statistics.median(rates):7.0f} calls/s "
          f"({args.batches} batches of {args.batch_size}, one keep-alive client)")
    print(f"describe-authorizer, same client (no Lambda): median {statistics.median(baseline):7.0f} calls/s "
          f"→ test-invoke runs at {statistics.median(rates) / statistics.median(baseline):.2f}× that rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
