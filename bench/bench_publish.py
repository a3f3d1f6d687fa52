#!/usr/bin/env python3
"""Benchmark the device side: HTTPS publishes through a custom authorizer, against a baseline.

For C = 1, 8, 32 concurrent keep-alive clients (threads, one requests.Session each) it measures, in one run:
- baseline: the same HTTPS stack answering a trivial route (POST /ping on the data endpoint, with the same
  headers and body as a publish, so client-side costs are equal);
- publish, cache on: enableCachingForHttp, so the function runs once per connection;
- publish, cache off: the function runs for every publish.
Each prints publishes/s, p50 and p99 latency, and delivered/accepted (a paho subscriber counts what the broker
delivered; every accepted message must arrive). Targets: cache on >= 50% of the baseline's rate; zero lost.

Usage: python bench/bench_publish.py [--seconds 3] [--clients 1,8,32]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from common import deploy  # noqa: E402
from helpers import sandbox  # noqa: E402


def run(settings, clients: int, seconds: float, request) -> dict:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    accepted = [0] * clients
    failures = [0] * clients
    stop_at = time.perf_counter() + seconds
    start_gate = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        with requests.Session() as session:
            request(session, i, 0)  # open the keep-alive connection (and fill the cache) before timing
            start_gate.wait()
            n = 1
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                ok = request(session, i, n)
                latencies[i].append(time.perf_counter() - t0)
                accepted[i] += ok
                failures[i] += not ok
                n += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = sorted(x for lat in latencies for x in lat)
    return {"rate": len(flat) / elapsed, "p50": flat[len(flat) // 2] * 1000,
            "p99": flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000,
            "accepted": sum(accepted) + clients, "failures": sum(failures)}  # + the warm-up publish per client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = sandbox.ensure_running(home)
        try:
            names = {True: "bench-cache-on", False: "bench-cache-off"}
            signature = deploy(settings, {name: caching for caching, name in names.items()})
            base = f"https://{settings.data_endpoint}"
            verify = str(settings.ca_bundle)
            baseline_headers = {"x-amz-customauthorizer-name": names[True], "tokenKeyName": "tokenKeyValue",
                                "x-amz-customauthorizer-signature": signature}

            def ping(session, i, n):  # the same request shape as a publish, to a route that only answers
                return session.post(f"{base}/ping?qos=1&actionToken=allow", data=b'{"n": %d}' % n,
                                    headers=baseline_headers, verify=verify, timeout=30).status_code == 200

            def publisher(caching: bool, label: str):
                headers = {"x-amz-customauthorizer-name": names[caching], "tokenKeyName": "tokenKeyValue",
                           "x-amz-customauthorizer-signature": signature}

                def send(session, i, n):
                    url = f"{base}/topics/bench/{label}/{i}?qos=1&actionToken=allow"
                    return session.post(url, data=b'{"n": %d}' % n, headers=headers, verify=verify,
                                        timeout=30).status_code == 200
                return send

            print(f"{'clients':>7}  {'case':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  {'delivered/accepted':>18}"
                  f"  {'vs baseline':>11}")
            for clients in levels:
                base_result = run(settings, clients, args.seconds, ping)
                print(f"{clients:>7}  {'baseline':<16} {base_result['rate']:8.0f} {base_result['p50']:8.2f} "
                      f"{base_result['p99']:8.2f}  {'-':>18}  {'1.00':>11}")
                for caching in (True, False):
                    label = f"c{clients}-{'on' if caching else 'off'}"
                    with settings.watch(f"bench/{label}/#") as sub:
                        result = run(settings, clients, args.seconds, publisher(caching, label))
                        deadline = time.monotonic() + 10
                        while len(sub.messages) < result["accepted"] and time.monotonic() < deadline:
                            time.sleep(0.05)
                        delivered = len(sub.messages)
                    case = f"cache {'on' if caching else 'off'}"
                    flag = "" if delivered == result["accepted"] and not result["failures"] else "  LOST/FAILED"
                    print(f"{clients:>7}  {case:<16} {result['rate']:8.0f} {result['p50']:8.2f} {result['p99']:8.2f}"
                          f"  {delivered:>8}/{result['accepted']:<9}  {result['rate'] / base_result['rate']:11.2f}"
                          f"{flag}")
        finally:
            sandbox.stop(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
