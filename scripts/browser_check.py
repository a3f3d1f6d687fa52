#!/usr/bin/env python3
"""Open the workbook in JupyterLab in a real (headless) Chromium and check what a learner sees.

    .venv/bin/python scripts/browser_check.py [OUT_DIR] [--work DIR] [--no-save-hook]

OUT_DIR (default build/browser/) gets the screenshots and report.txt. Needs Debian's ``chromium``
and ``chromium-driver`` packages (``apt-get install chromium chromium-driver``) and the pinned
``selenium``. It serves a copy of ``notebooks/`` (under ``--work``, default build/browser-run/, so
running cells and saving never touch the committed files) with JupyterLab exactly as ``make lab``
does (the ``helpers.lab`` server extension included; ``--no-save-hook`` leaves it out, to see the
"before"), with its own sandbox home, workbook state, Jupyter config and runtime folders, then:

1. opens each notebook with a widget as committed: no "Error displaying widget", the unrun widget
   says "Run this cell to show the ...";
2. follows every relative link of the rendered Markdown in every notebook (JupyterLab serves only
   ``notebooks/``: a link out of it, such as ``../README.md``, answers 404);
3. runs notebooks 00 to 09 in order (Run > Run All Cells), as a learner would, and checks that the
   widgets render, that no ARN box or message table overflows into a horizontal scrollbar, that
   the live message view in 07 shows the messages, and that the widgets answer in the browser
   (00's "Use this target" and 06's "Send" clicked, a mistyped ARN typed into 03's box);
4. saves each notebook, restarts its kernel (a workshop's next morning), reloads the page and
   checks that no output says "Error displaying widget: model not found" and that the hints show;
5. saves a screenshot of each step (whole window, and each widget alone) in OUT_DIR.

It leaves nothing running: kernels are shut down through JupyterLab's API, JupyterLab is stopped,
and any process still naming the work folder (a kernel, Chromium) is ended by its id, also after a
failure or SIGTERM. Exit status 0 when every check passed, 1 otherwise (each failure one line on
stderr), 77 when Chromium or selenium is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: notebook -> the hint its unrun widget shows
HINTS = {"00-set-up": "Run this cell to show the target chooser",
         "03-create-authorizer": "Run this cell to show the Function ARN box",
         "04-grant-permission": "Run this cell to show the Authorizer ARN box",
         "06-publish-https": "Run this cell to show the allow/deny sender",
         "07-watch-messages": "Run this cell to show the live message view",
         "09-mqtt-devices": "Run this cell to show the device console"}
#: notebook -> (button to click in its widget, text its output then shows): the widget's round trip to the kernel
CLICKS = {"00-set-up": ("Use this target", "✓ Recorded."), "06-publish-https": ("Send", "HTTP 200 (published)")}
#: notebook -> (what to type into its ARN box, the status line's answer): live checking in the browser
TYPE_INTO = {"03-create-authorizer": ("arn:aws:lambda:us-west-2:12345:function:f", "must be exactly 12 digits")}
RUN = ["00-set-up", "01-authorizer-function", "02-key-pair", "03-create-authorizer", "04-grant-permission",
       "05-test-invoke", "06-publish-https", "07-watch-messages", "08-experiments", "09-mqtt-devices"]
MODEL_NOT_FOUND = "Error displaying widget"
#: JavaScript: make the N-th code cell of the open notebook the active (and only selected) cell
SELECT_CODE_CELL = """
const notebook = window.jupyterapp.shell.currentWidget.content;
const index = notebook.widgets.map((cell, i) => [cell, i]).filter(([cell]) => cell.model.type === 'code')[arguments[0]][1];
notebook.activeCellIndex = index;
notebook.deselectAll();
notebook.activeCell.node.scrollIntoView({block: 'center'});
"""
#: JavaScript: outputs (or widgets inside them) wider than their box, i.e. with a horizontal scrollbar
OVERFLOW_JS = """
const found = [];
for (const out of document.querySelectorAll('.jp-OutputArea-output')) {
  if (!out.querySelector('.jupyter-widgets')) continue;
  const box = out.getBoundingClientRect();
  for (const el of [out, ...out.querySelectorAll('.jupyter-widgets, .widget-html-content')]) {
    const r = el.getBoundingClientRect();
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible')
      found.push(`${el.className.split(' ')[0]} scrolls: ${el.scrollWidth}px of content in ${el.clientWidth}px`);
    else if (r.right > box.right + 1)
      found.push(`${el.className.split(' ')[0]} sticks out ${Math.round(r.right - box.right)}px past the output`);
  }
}
return found;
"""


class Clock:
    """Wall time per step, for the report: each timed span, and the total per kind of step."""

    def __init__(self):
        self.spans: list[tuple[str, str, float]] = []
        self.started = time.monotonic()

    @contextmanager
    def __call__(self, kind: str, what: str = ""):
        started = time.monotonic()
        try:
            yield
        finally:
            self.spans.append((kind, what, time.monotonic() - started))

    def lines(self) -> list[str]:
        totals: dict[str, list[float]] = {}
        for kind, _, seconds in self.spans:
            totals.setdefault(kind, []).append(seconds)
        lines = [f"time: {kind}: {sum(s):.1f} s in {len(s)} step(s)" for kind, s in totals.items()]
        lines += [f"time:   {kind} {what}: {seconds:.1f} s" for kind, what, seconds in self.spans if what]
        return lines + [f"time: whole check: {time.monotonic() - self.started:.1f} s"]


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


def processes_naming(text: str) -> list[int]:
    """Ids of this machine's processes whose command line contains ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class Lab:
    """JupyterLab on a copy of notebooks/, served as `make lab` serves it."""

    def __init__(self, work: Path, save_hook: bool):
        self.work = work
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.served = work / "notebooks"
        shutil.copytree(ROOT / "notebooks", self.served, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        env = dict(os.environ, IOT_SANDBOX_HOME=str(work / "sandbox"), WORKBOOK_STATE_DIR=str(work / "state"),
                   JUPYTER_CONFIG_DIR=str(work / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
                   JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
                   JUPYTERLAB_SETTINGS_DIR=str(work / "lab-settings"), WORKBOOK_TARGET="sandbox")
        settings = {
            # no "get notified about Jupyter news?" toast over the screenshots (the learner's own setting)
            "apputils-extension/notification": {"fetchNews": "false"},
            # Every cell in the page: JupyterLab's default windowing ("contentVisibility") renders a long
            # notebook's far cells only near the viewport, so their prompts read "" and their outputs are
            # missing from the page text (08's and 09's later cells looked unrun, 09's hint absent).
            "notebook-extension/tracker": {"windowingMode": "none"},
        }
        for plugin, values in settings.items():
            path = work / "lab-settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        for var in ("AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "AWS_PROFILE", "JUPYTER_CONFIG_PATH"):
            env.pop(var, None)
        # The command line of `make lab` (Makefile), plus what a headless, root, random-port run needs.
        command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={self.port}", "--ip=127.0.0.1",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.served}", "--allow-root"]
        # window.jupyterapp, so the check can pick a cell through JupyterLab's model (changes nothing else)
        command.append("--LabApp.expose_app_in_browser=True")
        if save_hook:
            command.insert(4, "--ServerApp.jpserver_extensions=helpers.lab=True")
        self.proc = subprocess.Popen(command, env=env, stdout=(work / "lab.log").open("w"), stderr=subprocess.STDOUT)
        for _ in range(120):
            try:
                if self.api("GET", "/api/status").ok:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"JupyterLab did not start; see {work / 'lab.log'}")

    def api(self, method: str, path: str, **params):
        import requests

        return requests.request(method, self.base + path, params={"token": self.token, **params}, timeout=10)

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}.ipynb?token={self.token}&reset"

    def saved(self, notebook: str) -> dict:
        return json.loads((self.served / f"{notebook}.ipynb").read_text())

    def kernels(self) -> list[dict]:
        try:
            return self.api("GET", "/api/kernels").json()
        except (OSError, ValueError):
            return []

    def shutdown_kernels(self) -> None:
        for kernel in self.kernels():
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
            except OSError:
                pass

    def stop(self) -> None:
        self.shutdown_kernels()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # JupyterLab asks to confirm the first; a second stops it
            time.sleep(0.3)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "build" / "browser")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "browser-run")
    parser.add_argument("--no-save-hook", action="store_true", help="serve without helpers.lab (the 'before')")
    args = parser.parse_args(argv)
    reason = missing()
    if reason:
        print(f"browser check skipped: {reason}", file=sys.stderr)
        return 77
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the clean-up below runs
    out, work = args.out.resolve(), args.work.resolve()
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    failures: list[str] = []
    report: list[str] = [f"JupyterLab served {'without' if args.no_save_hook else 'with'} the helpers.lab save hook"]
    lab = driver = service = None
    clock = Clock()
    try:
        with clock("start JupyterLab"):
            lab = Lab(work, save_hook=not args.no_save_hook)
        with clock("start Chromium"):
            driver, service = start_chromium(work)
        check(driver, lab, out, report, failures, clock)
    except SystemExit:
        raise
    except Exception as exc:  # a broken step is a failed check, reported in one line; clean-up still runs
        failures.append(f"the check itself failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
      with clock("clean up"):
        if driver is not None:
            driver.quit()
        if service is not None:
            service.stop()
        if lab is not None:
            lab.stop()
        from helpers import sandbox

        sandbox.stop(work / "sandbox")
        left = processes_naming(str(work))
        for pid in left:  # a kernel or Chromium that outlived its parent: ours, by the folder it names
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        report.append(f"processes left naming the work folder after clean-up: {len(left)} (ended)")
        report.extend(clock.lines())
        (out / "report.txt").write_text("\n".join(report + [f"FAIL: {f}" for f in failures]) + "\n")
    for line in report:
        print(line)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def start_chromium(work: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                "--disable-dev-shm-usage", f"--user-data-dir={work / 'chromium-profile'}"):
        options.add_argument(arg)
    service = Service(DRIVER, log_output=str(work / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options), service


def check(driver, lab: Lab, out: Path, report: list[str], failures: list[str], clock: Clock) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 90)

    def notebook_text() -> str:
        return driver.execute_script("const n = document.querySelector('.jp-Notebook'); return n ? n.textContent : '';")

    def open_notebook(name: str) -> None:
      with clock("open notebook", name):
        driver.get(lab.url(name))
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "Loading widget..." in notebook_text():
            time.sleep(0.5)
      with clock("sleep: settle after open"):
        time.sleep(2)  # let Markdown (Mermaid) and outputs settle

    def menu(top: str, item: str) -> None:
        driver.find_element(By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')][.//div[text()='{top}']]").click()
        entry = wait.until(EC.element_to_be_clickable(
            (By.XPATH, f"//li[contains(@class,'lm-Menu-item')][.//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']]")))
        entry.click()

    def saved_since(name: str, before: float, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (lab.served / f"{name}.ipynb").stat().st_mtime == before:
            time.sleep(0.5)
        return (lab.served / f"{name}.ipynb").stat().st_mtime != before

    def wait_idle(seconds: float = 240) -> list[str] | None:
        """The code cells' prompts once none is queued or running, or None after ``seconds``.

        JupyterLab sends a Run All's cells one after another, so between two cells no prompt shows
        ``*`` for a moment: idle counts only when it holds, with the kernel idle, for three seconds.
        """
        with clock("sleep: before idle polling"):
            time.sleep(2)
        deadline, idle_since = time.monotonic() + seconds, None
        while time.monotonic() < deadline:
            prompts = driver.execute_script(
                "return [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent)")
            kernel = driver.execute_script(
                "const s = window.jupyterapp.shell.currentWidget.sessionContext.session;"
                "return s && s.kernel ? s.kernel.status : 'unknown';")
            if prompts and not any("*" in p for p in prompts) and kernel == "idle":
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= 3:
                    clock.spans.append(("sleep: idle must hold 3 s", "", 3.0))
                    return prompts
            else:
                idle_since = None
            time.sleep(0.5)
        return None

    def run_all(name: str) -> str:
        """Run > Run All Cells, as a learner would; '' or what went wrong.

        JupyterLab's Run All stops after a cell that raises, even one tagged raises-exception (the
        tag only keeps the kernel from dropping the queue), so after such a cell this goes on with
        Run > Run Selected Cell and All Below from the next one, as the learner reading on would.
        """
        code = [c for c in lab.saved(name)["cells"] if c["cell_type"] == "code"]
        expected = {i + 1 for i, c in enumerate(code) if "raises-exception" in c.get("metadata", {}).get("tags", [])}
        menu("Run", "Run All Cells")
        while True:
            prompts = wait_idle()
            if prompts is None:
                return "still running after 240 s"
            unrun = [i for i, p in enumerate(prompts) if p.strip() in ("[ ]:", "")]
            if not unrun:
                return ""
            if unrun[0] in expected:  # the cell before it raised on purpose: read on
                expected.discard(unrun[0])
                # Make that cell the active one through JupyterLab's own model: a click on its prompt can
                # land on another cell while offscreen cells render and the layout shifts (it did: 08 ran
                # its caching section and final check before its section 4, then timed out).
                driver.execute_script(SELECT_CODE_CELL, unrun[0])
                menu("Run", "Run Selected Cell and All Below")
                continue
            # what the cell before the first unrun one printed last (its error, if it raised)
            driver.execute_script(SELECT_CODE_CELL, unrun[0] - 1)
            driver.save_screenshot(str(out / f"{name}-stopped.png"))
            last = driver.execute_script(
                "const cell = window.jupyterapp.shell.currentWidget.content.activeCell;"
                "const outs = [...cell.node.querySelectorAll('.jp-OutputArea-output')];"
                "return outs.length ? outs[outs.length - 1].textContent.trim().split('\\n').pop() : '(no output)';")
            return (f"stopped: code cell {unrun[0] + 1} of {len(prompts)} did not run; code cell {unrun[0]} "
                    f"(prompt {prompts[unrun[0] - 1].strip()!r}) printed last: {last[-300:]}")

    def widget_outputs():
        return [el for el in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
                if el.find_elements(By.CSS_SELECTOR, ".jupyter-widgets")]

    def bring_into_view(el) -> None:
        # twice: JupyterLab's notebook sizes cells lazily, so the first scroll can land short
        for pause in (1.0, 0.5):
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
            with clock("sleep: scroll into view"):
                time.sleep(pause)

    def shoot_widgets(name: str, stage: str) -> int:
        """A screenshot of each widget output alone, then of the window around the first."""
        with clock("screenshots (incl. scrolling)", f"{name}-{stage}"):
            outputs = widget_outputs()
            for i, el in enumerate(outputs, 1):
                bring_into_view(el)
                el.screenshot(str(out / f"{name}-{stage}-widget{i}.png"))
            if outputs:
                bring_into_view(outputs[0])
            driver.save_screenshot(str(out / f"{name}-{stage}.png"))
            return len(outputs)

    # 1. as committed
    for name, hint in HINTS.items():
      with clock("1. as committed (whole step)", name):
        open_notebook(name)
        text = notebook_text()
        if name == "00-set-up":
            driver.save_screenshot(str(out / "00-as-committed.png"))
        if MODEL_NOT_FOUND in text:
            failures.append(f"{name} as committed shows '{MODEL_NOT_FOUND}'")
        if hint not in text:
            failures.append(f"{name} as committed: the unrun widget does not say '{hint}'")
        report.append(f"{name} as committed: hint shown {hint in text}; '{MODEL_NOT_FOUND}' shown {MODEL_NOT_FOUND in text}")

    # 2. links
    for name in sorted(p.stem for p in lab.served.glob("[0-9][0-9]-*.ipynb")):
      with clock("2. links (whole step)", name):
        open_notebook(name)
        hrefs = {a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, ".jp-RenderedMarkdown a")}
        for href in sorted(h for h in hrefs if h and h.startswith(lab.base)):
            path = href.split("?")[0].split("#")[0].replace(f"{lab.base}/lab/tree/", "/api/contents/")
            status = lab.api("GET", path.replace(lab.base, ""), content=0).status_code
            if status != 200:
                failures.append(f"{name}: link {href.replace(lab.base, '')} answers {status}")
        report.append(f"{name}: {len(hrefs)} link(s) checked")
    with clock("shut down kernels"):
        lab.shutdown_kernels()

    # 3. run 00..09 as a learner would; 4. save, restart the kernel, reload
    for name in RUN:
      with clock("3./4. run, save, reload (whole step)", name):
        open_notebook(name)
        started = time.monotonic()
        with clock("run all", name):
            problem = run_all(name)
        seconds = time.monotonic() - started
        if problem:
            failures.append(f"{name} in JupyterLab: {problem}")
        if name == "07-watch-messages":
            with clock("sleep: 07 before reading rows"):
                time.sleep(1)
        shown = widget_outputs()
        if name in HINTS:
            if not shown:
                failures.append(f"{name}: running the notebook rendered no widget")
            shoot_widgets(name, "run")
            for overflow in driver.execute_script(OVERFLOW_JS):
                failures.append(f"{name}: a widget overflows: {overflow}")
        if name in CLICKS:
            label, answer = CLICKS[name]
            button = driver.find_element(By.XPATH, f"//div[contains(@class,'jp-OutputArea-output')]//button[normalize-space()='{label}']")
            bring_into_view(button)
            button.click()
            clicked = time.monotonic()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and answer not in button.find_element(
                    By.XPATH, "ancestor::div[contains(@class,'jp-OutputArea-output')]").text:
                time.sleep(0.5)
            clock.spans.append(("click until answer", name, time.monotonic() - clicked))
            shown_answer = answer in button.find_element(By.XPATH, "ancestor::div[contains(@class,'jp-OutputArea-output')]").text
            if not shown_answer:
                failures.append(f"{name}: clicking '{label}' did not show '{answer}'")
            report.append(f"{name}: clicked '{label}', the widget showed '{answer}': {shown_answer}")
            shoot_widgets(name, "clicked")
        if name in TYPE_INTO:
            typed, answer = TYPE_INTO[name]
            box = driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea-output .widget-text input")
            bring_into_view(box)
            box.click()
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(typed)
            with clock("sleep: after typing"):
                time.sleep(1.5)
            status = box.find_element(By.XPATH, "ancestor::div[contains(@class,'jp-OutputArea-output')]").text
            if answer not in status:
                failures.append(f"{name}: typing {typed!r} into the ARN box did not show '{answer}' ({status!r})")
            report.append(f"{name}: typed a 5-digit account into the ARN box, it said '{answer}': {answer in status}")
            shoot_widgets(name, "typed")
            for overflow in driver.execute_script(OVERFLOW_JS):
                failures.append(f"{name}: with an error showing, a widget overflows: {overflow}")
        if name == "07-watch-messages":
            rows = driver.execute_script(
                "return [...document.querySelectorAll('.jp-OutputArea-output .widget-html-content tbody tr')].length")
            if not rows:
                failures.append("07: the live message view shows no message after the notebook ran")
            report.append(f"07: {rows} message row(s) in the live views")
        report.append(f"{name} run in JupyterLab in {seconds:.0f} s: {len(shown)} widget output(s)"
                      f"{'; ' + problem if problem else ''}")
        # save (Ctrl+S in command mode), then wait for the file to change
        saving = time.monotonic()
        before = (lab.served / f"{name}.ipynb").stat().st_mtime
        # focus through the notebook's own tab: a click in the notebook can land on a Markdown link
        # (it did: 02's centre was a link to 03, and Ctrl+S saved 03)
        driver.find_element(By.CSS_SELECTOR, "#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current").click()
        current = driver.execute_script("return window.jupyterapp.shell.currentWidget.context.path")
        if current != f"{name}.ipynb":
            failures.append(f"{name}: before saving, JupyterLab showed {current!r} instead")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.CONTROL, "s")
        if not saved_since(name, before, 10):
            # the key press can miss the notebook's focus on a loaded machine: save from the File menu
            report.append(f"{name}: Ctrl+S did not save within 10 s; saved from File > Save Notebook")
            menu("File", "Save Notebook")
            if not saved_since(name, before, 20):
                failures.append(f"{name}: neither Ctrl+S nor File > Save Notebook saved the notebook")
        clock.spans.append(("save", name, time.monotonic() - saving))
        views = sum("application/vnd.jupyter.widget-view+json" in (o.get("data") or {})
                    for c in lab.saved(name)["cells"] for o in c.get("outputs", []))
        if name in HINTS:
            report.append(f"{name} saved: {views} widget view(s) in the file")
        # the next morning: the kernel restarted, the page reloaded
        with clock("restart kernel + refresh", name):
          for kernel in lab.kernels():
            lab.api("POST", f"/api/kernels/{kernel['id']}/restart")
          try:
            driver.refresh()
          except WebDriverException:
            pass
        open_notebook(name)
        text = notebook_text()
        if MODEL_NOT_FOUND in text:
            failures.append(f"{name} saved and reopened after a kernel restart shows '{MODEL_NOT_FOUND}: model not found'")
        if name in HINTS:
            hinted = [el for el in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")
                      if any(t in (el.get_attribute("textContent") or "") for t in (HINTS[name], MODEL_NOT_FOUND))]
            if hinted:
                bring_into_view(hinted[0])
                with clock("screenshots (incl. scrolling)", f"{name}-reopened"):
                    hinted[0].screenshot(str(out / f"{name}-reopened-cell.png"))
            with clock("screenshots (incl. scrolling)", f"{name}-reopened-window"):
                driver.save_screenshot(str(out / f"{name}-reopened.png"))
            if HINTS[name] not in text:
                failures.append(f"{name} reopened: no '{HINTS[name]}' hint")
            report.append(f"{name} reopened after a kernel restart: hint shown {HINTS[name] in text}; "
                          f"'{MODEL_NOT_FOUND}' shown {text.count(MODEL_NOT_FOUND)} time(s)")
        with clock("shut down kernels", name):
            lab.shutdown_kernels()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
