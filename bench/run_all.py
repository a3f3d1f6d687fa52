#!/usr/bin/env python3
"""Run every benchmark in turn (what `make bench` does); each prints its own figures."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
failed = 0
for script in ("bench_runtime.py", "bench_control.py", "bench_publish.py", "bench_gateway.py", "bench_workbook.py"):
    print(f"== {script}", flush=True)
    failed |= subprocess.call([sys.executable, str(HERE / script)]) != 0
sys.exit(failed)
