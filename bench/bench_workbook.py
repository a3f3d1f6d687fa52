#!/usr/bin/env python3
"""Benchmark the main job (`make run`): its wall time beside the floor of executing notebooks at all.

In one run, with a fresh sandbox home and workbook state:
- the workbook: every notebook in order, executed the way `make run` does (nbclient, one fresh kernel each);
- the floor: the same number of trivial notebooks (one cell, `1 + 1`) executed the same way.
Prints both wall times and their ratio. Target: the workbook takes at most 2x the floor.

Usage: python bench/bench_workbook.py
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import nbformat  # noqa: E402

import nb as nbtool  # noqa: E402


def main() -> int:
    names = nbtool.all_names()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["IOT_SANDBOX_HOME"] = str(tmp / "sandbox")
        os.environ["WORKBOOK_STATE_DIR"] = str(tmp / "state")
        from helpers import sandbox

        timings: dict[str, float] = {}
        try:
            started = time.perf_counter()
            ok = nbtool.execute(names, out_dir=tmp / "executed",
                                report=lambda name, ok, s, d: timings.__setitem__(name, s))
            workbook = time.perf_counter() - started
        finally:
            sandbox.stop(tmp / "sandbox")
        if not ok:
            print("the workbook failed; see above", file=sys.stderr)
            return 1

        trivial_dir = tmp / "trivial"
        trivial_dir.mkdir()
        for i in range(len(names)):
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
            nb.metadata = {"kernelspec": nbtool.KERNELSPEC}
            nbformat.write(nb, trivial_dir / f"{i:02d}-trivial.ipynb")
        saved = nbtool.NOTEBOOKS
        nbtool.NOTEBOOKS = trivial_dir
        try:
            started = time.perf_counter()
            nbtool.execute([f"{i:02d}-trivial" for i in range(len(names))], report=lambda *a: None)
            floor = time.perf_counter() - started
        finally:
            nbtool.NOTEBOOKS = saved

    for name, seconds in timings.items():
        print(f"  {name:<28} {seconds:6.1f} s")
    print(f"workbook, {len(names)} notebooks:        {workbook:6.1f} s")
    print(f"floor, {len(names)} trivial notebooks:   {floor:6.1f} s")
    print(f"ratio: {workbook / floor:.2f}x the floor (target: at most 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
