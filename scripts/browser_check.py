#!/usr/bin/env python3
"""Open the workbook in JupyterLab in a real (headless) Chromium and check what a learner sees.

    .venv/bin/python scripts/browser_check.py [OUT_DIR]     # screenshots and a report in OUT_DIR

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``apt-get install chromium
chromium-driver``) and the pinned ``selenium``. It starts its own JupyterLab on ``notebooks/`` (as
``make lab`` serves it, from a copy under ``build/browser-run/``) with its own sandbox home and workbook state under ``build/browser/``, then:

1. opens 00-set-up as saved: no "Error displaying widget", the unrun widget says "Run this cell";
2. follows every relative link of the rendered Markdown in 00 and 10 (JupyterLab serves only
   ``notebooks/``: a link out of it, such as ``../README.md``, answers 404);
3. runs 00's first cells (Shift+Enter) and checks that the target chooser renders as a widget;
4. saves a screenshot of each step.

Exit status 0 when every check passed; each failure is one line on stderr.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def missing() -> str | None:
    """Why the check cannot run here, or None."""
    if not CHROMIUM or not Path(DRIVER).exists():
        return "Chromium is not installed: apt-get install chromium chromium-driver (Debian's packages)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: make venv (requirements.txt pins it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(work: Path) -> tuple[subprocess.Popen, str]:
    port, token = free_port(), secrets.token_hex(16)
    served = work / "notebooks"  # a copy: running cells and JupyterLab's autosave never touch the committed files
    shutil.copytree(ROOT / "notebooks", served, ignore=shutil.ignore_patterns("kernel-*", ".ipynb_checkpoints"))
    env = dict(os.environ, IOT_SANDBOX_HOME=str(work / "sandbox"), WORKBOOK_STATE_DIR=str(work / "state"),
               JUPYTER_CONFIG_DIR=str(work / "jupyter-config"), WORKBOOK_TARGET="sandbox")
    for var in ("AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "AWS_PROFILE"):
        env.pop(var, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={served}", "--allow-root"],
        env=env, stdout=(work / "lab.log").open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    import requests

    for _ in range(120):
        try:
            if requests.get(f"{base}/api/status?token={token}", timeout=1).ok:
                return proc, f"{base}|{token}"
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"JupyterLab did not start; see {work / 'lab.log'}")


def main(argv: list[str]) -> int:
    reason = missing()
    if reason:
        print(f"browser check skipped: {reason}", file=sys.stderr)
        return 77
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    import requests

    out = Path(argv[0]) if argv else ROOT / "build" / "browser"
    out.mkdir(parents=True, exist_ok=True)
    work = ROOT / "build" / "browser-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    lab, where = start_lab(work)
    base, token = where.split("|")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    failures: list[str] = []
    report: list[str] = []
    try:
        wait = WebDriverWait(driver, 60)

        def open_notebook(name: str) -> None:
            driver.get(f"{base}/lab/tree/{name}?token={token}&reset")
            wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
            time.sleep(3)  # let outputs and Markdown (Mermaid) render

        open_notebook("00-set-up.ipynb")
        driver.save_screenshot(str(out / "00-as-saved.png"))
        body = driver.find_element(By.TAG_NAME, "body").text
        if "Error displaying widget" in body:
            failures.append("00 as saved shows 'Error displaying widget'")
        if "Run this cell to show the target chooser" not in body:
            failures.append("00 as saved: the unrun widget does not say 'Run this cell to show the target chooser'")
        report.append("00 opened as saved; unrun widget text present: "
                      f"{'Run this cell to show the target chooser' in body}")

        for name in ("00-set-up.ipynb", "10-cleanup.ipynb"):
            open_notebook(name)
            hrefs = {a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, ".jp-RenderedMarkdown a")}
            for href in sorted(h for h in hrefs if h and h.startswith(base)):
                path = href.split("?")[0].split("#")[0].replace(f"{base}/lab/tree/", f"{base}/api/contents/")
                status = requests.get(path, params={"token": token, "content": 0}, timeout=10).status_code
                if status != 200:
                    failures.append(f"{name}: link {href.replace(base, '')} answers {status}")
            report.append(f"{name}: {len(hrefs)} link(s) checked")

        open_notebook("00-set-up.ipynb")
        first = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")[0]
        first.click()
        for _ in range(4):  # title, set-up cell, the chooser's prose, the chooser
            driver.switch_to.active_element.send_keys(Keys.SHIFT, Keys.ENTER)
            time.sleep(2)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea .widget-toggle-buttons, .jp-OutputArea .jupyter-widgets"):
            time.sleep(1)
        time.sleep(2)
        driver.save_screenshot(str(out / "00-chooser-run.png"))
        widgets = driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea .jupyter-widgets")
        if not widgets:
            failures.append("00: running the chooser cell rendered no widget")
        report.append(f"00 run: {len(widgets)} widget element(s) rendered")
    finally:
        driver.quit()
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()
        from helpers import sandbox

        sandbox.stop(work / "sandbox")
    (out / "report.txt").write_text("\n".join(report + [f"FAIL: {f}" for f in failures]) + "\n")
    for line in report:
        print(line)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
