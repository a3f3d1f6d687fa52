#!/usr/bin/env python3
"""Benchmark the device gateway under real load generators, beside reference servers, in one run.

1. HTTPS publish under wrk (Debian's ``wrk``), 32 keep-alive connections, 2 threads, after a 2 s warm-up run
   (each wrk run opens new connections, so "cache on" still invokes the function once per connection):
   - a bare aiohttp HTTPS server answering the same POST with the same certificate (the ceiling for Python);
   - the sandbox's trivial route (POST /ping on the data endpoint, same stack, no work);
   - an authorized publish with enableCachingForHttp on, and with it off.
   Targets: cache on >= 0.5x the sandbox's /ping and >= 0.25x bare aiohttp; p99 <= 20 ms.
2. MQTT publish -> deliver through the sandbox's broker (custom auth over TLS with ALPN mqtt) beside
   Debian's ``mosquitto`` on loopback (TLS, same certificate): one paho publisher, one paho subscriber,
   QoS 0 and QoS 1, messages/s and p50/p99 latency. Target: QoS 0 >= 0.25x mosquitto.
3. Custom-auth MQTT connects per second (CONNECT, function answer cached by nothing: each one invokes it).
4. The sandbox's memory while 8 clients each start a 60 MB upload without credentials, on each endpoint
   (refused from the head, so the bodies are never buffered).

A part whose tool is missing prints why and is skipped. Usage: python bench/bench_gateway.py [--seconds 5]
"""
from __future__ import annotations

import argparse
import getpass
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from common import TOKEN, deploy  # noqa: E402
from helpers import sandbox  # noqa: E402
from helpers.sandbox import tls  # noqa: E402

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"temperature": 21.5}'
wrk.headers["Content-Type"] = "application/json"
%s
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- 1. HTTPS publish under wrk ------------------------------------------------------------------------------

def run_wrk(url: str, headers: dict[str, str], seconds: float, connections: int = 32) -> dict:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT % lines)
        script = fh.name
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", script, url],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(script)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return {"rate": rate, "p50": pct("50"), "p99": pct("99"), "non2xx": int(non2xx.group(1)) if non2xx else 0}


def start_aiohttp(certs) -> tuple[subprocess.Popen, int]:
    """A bare aiohttp HTTPS server in its own process (as the sandbox is), answering POST /topics/{tail:.*}."""
    port = free_port()
    code = f"""
import ssl
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({{"message": "OK", "traceId": "x"}})
app = web.Application()
app.router.add_post("/topics/{{tail:.*}}", ok)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain({str(certs.server_cert)!r}, {str(certs.server_key)!r})
web.run_app(app, host="127.0.0.1", port={port}, ssl_context=ctx, print=None, access_log=None)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def bench_https(settings, signature: str, seconds: float) -> None:
    print("\n## HTTPS publish, wrk -t2 -c32")
    if shutil.which("wrk") is None:
        print("skipped: wrk is not installed (apt-get install wrk)")
        return
    certs = tls.ensure_certificates(settings.home)
    proc, port = start_aiohttp(certs)
    auth = {"x-amz-customauthorizer-signature": signature, "tokenKeyName": TOKEN}
    data = f"https://{settings.data_endpoint}"
    try:
        cases = [
            ("bare aiohttp", f"https://127.0.0.1:{port}/topics/bench/x?qos=0", {}),
            ("sandbox /ping", f"{data}/ping?qos=0", {}),
            ("publish, cache on", f"{data}/topics/bench/on?qos=0&actionToken=allow",
             {**auth, "x-amz-customauthorizer-name": "bench-cache-on"}),
            ("publish, cache off", f"{data}/topics/bench/off?qos=0&actionToken=allow",
             {**auth, "x-amz-customauthorizer-name": "bench-cache-off"}),
        ]
        results = {}
        print(f"{'case':<20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
        for label, url, headers in cases:
            run_wrk(url, headers, 2)  # warm-up: Lambda workers started, caches filled
            r = results[label] = run_wrk(url, headers, seconds)
            print(f"{label:<20} {r['rate']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['non2xx']:8d}")
        on = results["publish, cache on"]["rate"]
        print(f"cache on / sandbox /ping = {on / results['sandbox /ping']['rate']:.2f} (target >= 0.5); "
              f"cache on / bare aiohttp = {on / results['bare aiohttp']['rate']:.2f} (target >= 0.25); "
              f"cache on p99 = {results['publish, cache on']['p99']:.1f} ms (target <= 20)")
    finally:
        proc.terminate()
        proc.wait(10)


# --- 2. MQTT publish -> deliver --------------------------------------------------------------------------

class MqttPair:
    """A subscriber and a publisher (paho, TLS); the publisher stamps each payload with its send time."""

    def __init__(self, host: str, port: int, ca: str, *, alpn: list[str] | None, username=None, password=None,
                 ids=("sub", "pub")):
        self.received: list[float] = []
        self.done = threading.Event()
        self.expected = 0
        self.clients = []
        for client_id in ids:
            ctx = ssl.create_default_context(cafile=ca)
            if alpn:
                ctx.set_alpn_protocols(alpn)
            c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
            c.tls_set_context(ctx)
            if username:
                c.username_pw_set(username(client_id), password)
            c.max_inflight_messages_set(100)  # AWS IoT's in-flight window for QoS 1
            c.max_queued_messages_set(0)
            self.clients.append(c)
        self.sub, self.pub = self.clients
        self.sub.on_message = self._on_message
        subscribed = threading.Event()
        self.sub.on_subscribe = lambda *a: subscribed.set()
        connected = [threading.Event(), threading.Event()]
        for c, ev in zip(self.clients, connected):
            c.on_connect = (lambda e: lambda client, u, f, rc, p: e.set() if not rc.is_failure else None)(ev)
            c.connect(host, port, keepalive=60)
            c.loop_start()
        for ev in connected:
            if not ev.wait(15):
                raise RuntimeError("MQTT connect failed")
        self.topic = f"dev/{ids[0]}/bench"
        self.sub.subscribe(self.topic, qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("subscribe failed")

    def _on_message(self, client, userdata, msg) -> None:
        self.received.append(time.perf_counter() - float(msg.payload[:20]))
        if len(self.received) >= self.expected:
            self.done.set()

    def run(self, n: int, qos: int, window: int = 200) -> dict:
        """Publish ``n`` messages keeping at most ``window`` sent but not yet delivered (a closed loop, so
        both brokers are measured at the rate they sustain rather than by how much they queue)."""
        self.received, self.expected = [], n
        self.done.clear()
        t0 = time.perf_counter()
        deadline = t0 + 120
        sent = 0
        while sent < n and time.perf_counter() < deadline:
            if sent - len(self.received) >= window:
                time.sleep(0.0005)
                continue
            self.pub.publish(self.topic, b"%020.6f" % time.perf_counter() + b"x" * 44, qos=qos)
            sent += 1
        self.done.wait(max(0.0, deadline - time.perf_counter()))
        elapsed = time.perf_counter() - t0
        lat = sorted(self.received)
        return {"rate": len(lat) / elapsed, "p50": lat[len(lat) // 2] * 1000 if lat else float("nan"),
                "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan"),
                "delivered": len(lat), "sent": sent}

    def close(self) -> None:
        for c in self.clients:
            c.disconnect()
            c.loop_stop()


def start_mosquitto(certs) -> tuple[subprocess.Popen, int, str] | None:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if exe is None:
        return None
    port = free_port()
    tmp = tempfile.mkdtemp()
    conf = Path(tmp) / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\ncertfile {certs.server_cert}\n"
                    f"keyfile {certs.server_key}\nmax_inflight_messages 100\nmax_queued_messages 100000\n"
                    "persistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port, tmp


def bench_mqtt(settings, authorizer: str, signature: str, messages: int) -> None:
    print(f"\n## MQTT publish -> deliver, {messages} messages of 64 bytes, one publisher, one subscriber (TLS), "
          "at most 200 in flight")
    host, port = settings.data_endpoint.rsplit(":", 1)
    ca = str(settings.ca_bundle)
    username = (lambda cid: f"bench?x-amz-customauthorizer-name={authorizer}"
                f"&x-amz-customauthorizer-signature={quote(signature, safe='')}&tokenKeyName={TOKEN}")
    sid = f"bench{uuid.uuid4().hex[:6]}"
    results = {}
    pair = MqttPair(host, int(port), ca, alpn=["mqtt"], username=username, password="allow", ids=(sid, sid + "p"))
    try:
        for qos in (0, 1):
            results[("sandbox", qos)] = pair.run(messages, qos)
    finally:
        pair.close()
    certs = tls.ensure_certificates(settings.home)
    mosq = start_mosquitto(certs)
    if mosq is None:
        print("mosquitto is not installed (apt-get install mosquitto): no reference figures")
    else:
        proc, mport, tmp = mosq
        try:
            ref = MqttPair("localhost", mport, ca, alpn=None, ids=(sid + "m", sid + "mp"))
            try:
                for qos in (0, 1):
                    results[("mosquitto", qos)] = ref.run(messages, qos)
            finally:
                ref.close()
        finally:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'broker':<10} {'qos':>3} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'delivered/sent':>15}")
    for (broker, qos), r in results.items():
        print(f"{broker:<10} {qos:>3} {r['rate']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} "
              f"{r['delivered']:>7}/{r['sent']:<7}")
    for qos in (0, 1):
        if ("mosquitto", qos) in results:
            print(f"QoS {qos}: sandbox / mosquitto = "
                  f"{results[('sandbox', qos)]['rate'] / results[('mosquitto', qos)]['rate']:.2f}"
                  + (" (target >= 0.25)" if qos == 0 else ""))


# --- 3. custom-auth connects ---------------------------------------------------------------------------

def bench_connects(settings, authorizer: str, signature: str, n: int) -> None:
    print(f"\n## custom-auth MQTT connects, {n} in sequence then 4 at a time (each invokes the function)")
    host, port = settings.data_endpoint.rsplit(":", 1)
    ca = str(settings.ca_bundle)
    username = (f"bench?x-amz-customauthorizer-name={authorizer}"
                f"&x-amz-customauthorizer-signature={quote(signature, safe='')}&tokenKeyName={TOKEN}")

    def connect_once(i: int) -> float:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["mqtt"])
        done = threading.Event()
        ok = []
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev{i}{uuid.uuid4().hex[:6]}",
                        protocol=paho.MQTTv311)
        c.tls_set_context(ctx)
        c.username_pw_set(username, "allow")
        c.on_connect = lambda cl, u, f, rc, p: (ok.append(not rc.is_failure), done.set())
        t0 = time.perf_counter()
        c.connect(host, int(port))
        c.loop_start()
        done.wait(15)
        elapsed = time.perf_counter() - t0
        c.disconnect()
        c.loop_stop()
        if not ok or not ok[0]:
            raise RuntimeError("a benchmark connect was refused")
        return elapsed

    t0 = time.perf_counter()
    times = [connect_once(i) for i in range(n)]
    seq = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=lambda k=k: [connect_once(1000 + k * n + j) for j in range(n // 4)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    par = (n // 4 * 4) / (time.perf_counter() - t0)
    print(f"sequential: {seq:.0f} connects/s (median {statistics.median(times) * 1000:.1f} ms); "
          f"4 at a time: {par:.0f} connects/s")


# --- 4. memory under oversized uploads ------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_uploads(settings, count: int = 8, size: int = 60 * 1024 * 1024) -> None:
    print(f"\n## memory: {count} concurrent {size >> 20} MB uploads without credentials, to each endpoint")
    if not Path(f"/proc/{settings.pid}/status").exists():
        print("skipped: needs /proc (Linux)")
        return
    ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
    chunk = b"x" * (1 << 20)

    def upload(port: int, path: str, statuses: list) -> None:
        try:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                                 server_hostname="localhost") as sock:
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n\r\n".encode())
                try:
                    for _ in range(size >> 20):
                        sock.sendall(chunk)
                except OSError:
                    pass  # refused and closed before the body: what should happen
                statuses.append(sock.recv(64).split(b" ")[1].decode())
        except OSError as exc:
            statuses.append(type(exc).__name__)

    for label, port, path in (("API", int(settings.endpoint_url.rsplit(":", 1)[1]), "/2015-03-31/functions"),
                              ("data", int(settings.data_endpoint.rsplit(":", 1)[1]), "/topics/big")):
        before, peak, statuses = rss_mb(settings.pid), 0.0, []
        threads = [threading.Thread(target=upload, args=(port, path, statuses)) for _ in range(count)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mb(settings.pid))
            time.sleep(0.02)
        print(f"{label:<5} RSS before {before:6.1f} MB, peak {peak:6.1f} MB; answers {sorted(set(statuses))}")


DEVICE_POLICY_FN = '''
def lambda_handler(event, context):
    region, account = context.invoked_function_arn.split(":")[3:5]
    arn = f"arn:aws:iot:{region}:{account}"
    return {"isAuthenticated": True, "principalId": "bench", "disconnectAfterInSeconds": 3600,
            "refreshAfterInSeconds": 3600, "policyDocuments": [{"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}]}
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--connects", type=int, default=100)
    parser.add_argument("--only", default="https,mqtt,connects,uploads", help="comma-separated parts to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = sandbox.ensure_running(home)
        try:
            signature = deploy(settings, {"bench-cache-on": True, "bench-cache-off": False},
                               mqtt_authorizer=("bench-mqtt", DEVICE_POLICY_FN))
            parts = set(args.only.split(","))
            if "https" in parts:
                bench_https(settings, signature, args.seconds)
            if "mqtt" in parts:
                bench_mqtt(settings, "bench-mqtt", signature, args.messages)
            if "connects" in parts:
                bench_connects(settings, "bench-mqtt", signature, args.connects)
            if "uploads" in parts:
                bench_uploads(settings)
        finally:
            sandbox.stop(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
