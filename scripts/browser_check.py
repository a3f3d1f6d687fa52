#!/usr/bin/env python3
"""Open the workbook in JupyterLab in a real (headless) Chromium and check what a learner sees.

    .venv/bin/python scripts/browser_check.py [OUT_DIR] [--work DIR] [--no-save-hook] [--screenshots]

OUT_DIR (default build/browser/) gets report.txt and the screenshots. Needs Debian's ``chromium``
and ``chromium-driver`` packages (``apt-get install chromium chromium-driver``) and the pinned
``selenium``. It serves a copy of ``notebooks/`` (under ``--work``, default build/browser-run/, so
running cells and saving never touch the committed files) with JupyterLab exactly as ``make lab``
does (the ``helpers.lab`` server extension included; ``--no-save-hook`` leaves it out, to see the
"before"), with its own sandbox home, workbook state, Jupyter config and runtime folders, then, in
one browser tab, opening the notebooks one after another as a learner does from the file browser:

1. opens each notebook with a widget as committed: no "Error displaying widget", the unrun widget
   says "Run this cell to show the ...";
2. follows every relative link of the rendered Markdown in every notebook (JupyterLab serves only
   ``notebooks/``: a link out of it, such as ``../README.md``, answers 404); the links are fetched
   from the server, all at once, while the browser goes on;
3. runs notebooks 00 to 09 in order (Run > Run All Cells), as a learner would, and checks that the
   widgets render, that no ARN box or message table overflows into a horizontal scrollbar, that
   the live message view in 07 shows the messages, and that the widgets answer in the browser
   (00's "Use this target" and 06's "Send" clicked, a mistyped ARN typed into 03's box);
4. saves each notebook, restarts its kernel (a workshop's next morning), reloads the page and
   checks, notebook by notebook, that no output says "Error displaying widget: model not found"
   and that the hints show;
5. saves screenshots in OUT_DIR: 03's ARN box after its run always (the test reads it); every step
   (whole window, and each widget alone) with ``--screenshots``, and those of a step that failed.

It waits on what JupyterLab reports, never for a fixed time: the notebook's model loaded and every
cell, Markdown text and Mermaid diagram rendered; the kernel idle; the promise of the Run menu's
command settled; the widget's answer shown. The report ends with the time each step took.

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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from helpers import processes

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
#: JavaScript: how many rows the live message view (07) shows
MESSAGE_ROWS = "return document.querySelectorAll('.jp-OutputArea-output .widget-html-content tbody tr').length"
#: the screenshot tests/test_browser.py reads: always taken
ALWAYS_SHOT = {("03-create-authorizer", "run")}
#: how long a concrete signal may take to come (a loaded 2-core machine), before it counts as missing
SETTLE_S, ANSWER_S, RUN_S = 60, 30, 240
#: JavaScript, once per page load: keep the promise of each notebook:run-* command (the Run menu's
#: "Run All Cells" and "Run Selected Cell and All Below"), which settles when its cells have run
WATCH_RUNS = """
window.checkRuns = [];
window.jupyterapp.commands.commandExecuted.connect((_, executed) => {
  if (executed.id.startsWith('notebook:run')) window.checkRuns.push(Promise.resolve(executed.result));
});
"""
#: JavaScript, once per notebook, its kernel connected: keep the execute requests sent to the kernel
#: that still wait for their reply or for the kernel's idle after them. JupyterLab sends all of a Run
#: All's cells at once, and the command's promise settles as soon as one cell fails: a cell tagged
#: raises-exception leaves the kernel running the ones after it.
WATCH_REQUESTS = """
const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
const pending = window.checkPending = new Map();
kernel.anyMessage.connect((_, {msg, direction}) => {
  if (direction === 'send' && msg.header.msg_type === 'execute_request') pending.set(msg.header.msg_id, 2);
  const parent = msg.parent_header && msg.parent_header.msg_id;
  if (direction !== 'recv' || !pending.has(parent)) return;
  if (msg.header.msg_type === 'execute_reply' || (msg.header.msg_type === 'status' && msg.content.execution_state === 'idle')) {
    if (pending.get(parent) === 1) pending.delete(parent); else pending.set(parent, 1);
  }
});
"""
#: JavaScript (async): '' once the runs started from the menu have settled and every request they
#: sent is answered, or what went wrong
RUNS_SETTLED = """
const done = arguments[arguments.length - 1];
const started = Date.now();
const answered = () => window.checkPending.size ? setTimeout(answered, 50) : done('');
const poll = () => {
  if (!window.checkRuns || !window.checkPending) done('the page reloaded: its run watchers are gone');
  else if (window.checkRuns.length) Promise.allSettled(window.checkRuns).then(answered);
  else if (Date.now() - started > 10000) done('the Run menu started no run within 10 s');
  else setTimeout(poll, 50);
};
poll();
"""
#: JavaScript (async): open the notebook at arguments[0] as the file browser does, then close what
#: else the main area shows (each notebook saved or unchanged; its kernel goes on; closed first, an
#: empty main area would get a Launcher); '' or what went wrong
OPEN_NOTEBOOK = """
const [path, done] = [arguments[0], arguments[arguments.length - 1]];
const app = window.jupyterapp;
app.commands.execute('docmanager:open', {path, factory: 'Notebook'})
  .then(panel => panel.context.ready.then(() => {
    for (const widget of [...app.shell.widgets('main')]) if (widget !== panel) widget.dispose();
    app.shell.activateById(panel.id);
    done('');
  }))
  .catch(error => done(String(error)));
"""
#: JavaScript: '' once the notebook at arguments[0] shows in full, else what it still waits for:
#: its model loaded, a cell for each, every Markdown cell (and Mermaid diagram, drawn or its parse error
#: shown, and local link, which JupyterLab resolves after the text) rendered, every widget view either a
#: widget or an error
SETTLED = """
const app = window.jupyterapp;
const panel = app && app.shell.currentWidget;
if (!panel || !panel.context || panel.context.path !== arguments[0] || !panel.context.isReady) return 'the notebook';
const notebook = panel.content;
if (notebook.widgets.length !== notebook.model.cells.length) return 'its cells';
let diagrams = 0;
for (const cell of notebook.widgets) {
  if (cell.model.type !== 'markdown') continue;
  const source = cell.model.sharedModel.getSource();
  diagrams += (source.match(/^```mermaid/gm) || []).length;
  if (source.trim() && !cell.node.querySelector('.jp-RenderedMarkdown > *')) return 'its Markdown';
}
if (notebook.node.querySelectorAll('.jp-RenderedMermaid img, .jp-RenderedMermaid svg, .jp-RenderedMermaid.jp-mod-warning').length < diagrams)
  return 'its Mermaid diagrams';
for (const a of notebook.node.querySelectorAll('.jp-RenderedMarkdown a[href]')) {
  const href = a.getAttribute('href');
  if (!href.startsWith('#') && !/^[a-z][a-z0-9+.-]*:/i.test(href)) return `its link ${href} resolved`;
}
for (const out of notebook.node.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.widget-view+json"]'))
  if (!out.querySelector('.jupyter-widgets') && !out.textContent.includes('Error displaying widget')) return 'its widget views';
if (notebook.node.textContent.includes('Loading widget...')) return 'its widgets to load';
return '';
"""
#: JavaScript: the first two lines of each Mermaid diagram's parse error that JupyterLab shows instead of it
MERMAID_ERRORS = """
return [...document.querySelectorAll('.jp-Notebook .jp-RenderedMermaid.jp-mod-warning details > pre')]
  .map(pre => pre.innerHTML.split('<br>').slice(0, 2).join(' ').replace(/&[a-z]+;/g, ' '));
"""
#: JavaScript: the open notebook's kernel status, 'idle' when it is connected and idle
KERNEL_STATUS = """
const panel = window.jupyterapp.shell.currentWidget;
const session = panel && panel.sessionContext && panel.sessionContext.session;
if (!session || !session.kernel) return 'no kernel yet';
return session.kernel.connectionStatus === 'connected' ? session.kernel.status : session.kernel.connectionStatus;
"""
#: JavaScript: the execution count of each code cell of the open notebook (null: not run)
EXECUTION_COUNTS = """
return window.jupyterapp.shell.currentWidget.content.widgets
  .filter(cell => cell.model.type === 'code').map(cell => cell.model.executionCount);
"""
#: JavaScript: the outputs that hold a widget
WIDGET_OUTPUTS = """
return [...document.querySelectorAll('.jp-OutputArea-output')].filter(out => out.querySelector('.jupyter-widgets'));
"""
#: JavaScript (async): scroll arguments[0] to the window's centre, then wait until it stays put for
#: two animation frames (the layout done) before a screenshot or click
BRING_INTO_VIEW = """
const [el, done] = [arguments[0], arguments[arguments.length - 1]];
el.scrollIntoView({block: 'center'});
let last = '', same = 0, frames = 0;
const step = () => {
  const r = el.getBoundingClientRect();
  const now = `${r.top} ${r.left} ${r.width} ${r.height}`;
  same = now === last ? same + 1 : 0;
  last = now;
  if (same >= 2 || ++frames > 120) { el.scrollIntoView({block: 'center'}); done(); } else requestAnimationFrame(step);
};
requestAnimationFrame(step);
"""
#: JavaScript (async): fonts loaded and two frames drawn, so that sizes read next are the final ones
LAID_OUT = """
const done = arguments[arguments.length - 1];
document.fonts.ready.then(() => requestAnimationFrame(() => requestAnimationFrame(() => done())));
"""
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
    return [pid for pid, argv in processes.running()
            if pid != os.getpid() and text in b" ".join(argv).decode(errors="replace")]


def gone(pids: list[int], seconds: float) -> bool:
    """Wait until none of ``pids`` is in the process table any more (exited and reaped); False after ``seconds``."""
    deadline = time.monotonic() + seconds
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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

    def api(self, method: str, path: str, timeout: float = 10, **params):
        import requests

        return requests.request(method, self.base + path, params={"token": self.token, **params}, timeout=timeout)

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

    def shutdown_kernel_of(self, path: str) -> None:
        """Shut down the kernel of the notebook at ``path`` (relative to the served folder), if it has one."""
        try:
            sessions = self.api("GET", "/api/sessions").json()
        except (OSError, ValueError):
            return
        for session in sessions:
            if session.get("path") == path and session.get("kernel"):
                try:
                    self.api("DELETE", f"/api/kernels/{session['kernel']['id']}", timeout=60)
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
    parser.add_argument("--screenshots", action="store_true", help="a screenshot of every step, not only of failed ones")
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
    pool = ThreadPoolExecutor(max_workers=4)  # link fetches, kernel restarts and shut-downs, beside the browser
    try:
        with clock("start JupyterLab and Chromium, side by side"):
            starting = pool.submit(Lab, work, save_hook=not args.no_save_hook)
            try:
                driver, service = start_chromium(work)
            finally:
                lab = starting.result()
        check(driver, lab, out, report, failures, clock, pool, args.screenshots)
    except SystemExit:
        raise
    except Exception as exc:  # a broken step is a failed check, reported in one line; clean-up still runs
        failures.append(f"the check itself failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        with clock("clean up"):
            pool.shutdown(wait=True, cancel_futures=True)
            browser = processes_naming(str(work / "chromium-profile"))
            if driver is not None:
                driver.quit()
            if service is not None:
                service.stop()
            gone(browser, 10)  # Chromium's processes ended and reaped, not zombies beside the next test
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
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_script_timeout(RUN_S)  # the async scripts below end on their signal or their own time limit
    return driver, service


def check(driver, lab: Lab, out: Path, report: list[str], failures: list[str], clock: Clock,
          pool: ThreadPoolExecutor, screenshots: bool) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    def until(seconds: float, condition, what: str) -> bool:
        """Wait for ``condition`` (polled every 0.1 s); False, with a line in the report, if it did not come."""
        try:
            WebDriverWait(driver, seconds, poll_frequency=0.1).until(lambda d: condition())
            return True
        except TimeoutException:
            report.append(f"waited {seconds} s in vain for {what}")
            return False

    def notebook_text() -> str:
        return driver.execute_script("const n = document.querySelector('.jp-Notebook'); return n ? n.textContent : '';")

    def settle(name: str) -> None:
        """Wait until the notebook shows in full (SETTLED); what it still waited for goes to the report."""
        pending = [""]

        def shown() -> bool:
            pending[0] = driver.execute_script(SETTLED, f"{name}.ipynb")
            return pending[0] == ""

        with clock("wait: notebook rendered (model, Markdown, Mermaid, links, widgets)", name):
            if not until(SETTLE_S, shown, f"{name} to render"):
                report.append(f"{name}: still waiting for {pending[0]} after {SETTLE_S} s")

    def load_page(name: str) -> None:
        """A page load of JupyterLab showing ``name`` (the first, and the next morning's reload)."""
        with clock("page load", name):
            driver.get(lab.url(name))
            WebDriverWait(driver, SETTLE_S, poll_frequency=0.1).until(lambda d: d.execute_script(
                "return !!(window.jupyterapp && window.jupyterapp.shell.currentWidget)"))
            driver.execute_script(WATCH_RUNS)
        settle(name)

    def open_notebook(name: str) -> None:
        """Open ``name`` in the same tab, as a double click in the file browser does."""
        with clock("open notebook", name):
            problem = driver.execute_async_script(OPEN_NOTEBOOK, f"{name}.ipynb")
        if problem:
            raise RuntimeError(f"JupyterLab did not open {name}: {problem}")
        settle(name)

    def kernel_idle(name: str) -> bool:
        with clock("wait: kernel connected and idle", name):
            return until(SETTLE_S, lambda: driver.execute_script(KERNEL_STATUS) == "idle", f"{name}'s kernel to be idle")

    def menu(top: str, item: str) -> None:
        driver.find_element(By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')][.//div[text()='{top}']]").click()
        entry = WebDriverWait(driver, ANSWER_S).until(EC.element_to_be_clickable(
            (By.XPATH, f"//li[contains(@class,'lm-Menu-item')][.//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']]")))
        entry.click()

    def saved_since(name: str, before: float, seconds: float) -> bool:
        path = lab.served / f"{name}.ipynb"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and path.stat().st_mtime == before:
            time.sleep(0.1)
        return path.stat().st_mtime != before

    def run_all(name: str) -> str:
        """Run > Run All Cells, as a learner would; '' or what went wrong.

        Done is when the promise of the menu's command has settled, every execute request sent to
        the kernel has its reply and the kernel's idle after it (WATCH_REQUESTS), and the kernel is
        idle. JupyterLab's Run All gives up on the cells after one that raises, even one tagged
        raises-exception (the tag only keeps the kernel from dropping the queue, and it ran them in
        this check's runs): if any is left unrun after such a cell, this goes on with Run > Run
        Selected Cell and All Below from the next one, as the learner reading on would.
        """
        code = [c for c in lab.saved(name)["cells"] if c["cell_type"] == "code"]
        expected = {i + 1 for i, c in enumerate(code) if "raises-exception" in c.get("metadata", {}).get("tags", [])}
        item = "Run All Cells"
        while True:
            driver.execute_script("window.checkRuns = [];")
            menu("Run", item)
            try:
                problem = driver.execute_async_script(RUNS_SETTLED)
            except TimeoutException:
                return f"still running after {RUN_S} s"
            if problem:
                return problem
            if not until(SETTLE_S, lambda: driver.execute_script(KERNEL_STATUS) == "idle", f"{name}'s kernel to be idle"):
                return f"the kernel was not idle {SETTLE_S} s after the cells ran"
            counts = driver.execute_script(EXECUTION_COUNTS)
            unrun = [i for i, count in enumerate(counts) if count is None]
            if not unrun:
                return ""
            if unrun[0] in expected:  # the cell before it raised on purpose: read on
                expected.discard(unrun[0])
                # Make that cell the active one through JupyterLab's own model: a click on its prompt can
                # land on another cell while offscreen cells render and the layout shifts (it did: 08 ran
                # its caching section and final check before its section 4, then timed out).
                driver.execute_script(SELECT_CODE_CELL, unrun[0])
                item = "Run Selected Cell and All Below"
                continue
            # what the cell before the first unrun one printed last (its error, if it raised)
            driver.execute_script(SELECT_CODE_CELL, unrun[0] - 1)
            driver.save_screenshot(str(out / f"{name}-stopped.png"))
            last = driver.execute_script(
                "const cell = window.jupyterapp.shell.currentWidget.content.activeCell;"
                "const outs = [...cell.node.querySelectorAll('.jp-OutputArea-output')];"
                "return outs.length ? outs[outs.length - 1].textContent.trim().split('\\n').pop() : '(no output)';")
            return (f"stopped: code cell {unrun[0] + 1} of {len(counts)} did not run; code cell {unrun[0]} "
                    f"(prompt [{counts[unrun[0] - 1]}]) printed last: {last[-300:]}")

    def bring_into_view(el) -> None:
        driver.execute_async_script(BRING_INTO_VIEW, el)

    def output_of(el) -> str:
        return el.find_element(By.XPATH, "ancestor::div[contains(@class,'jp-OutputArea-output')]").text

    def shoot(name: str, stage: str, failed_before: int) -> None:
        """Screenshots of a step: each widget output alone, then the window around the first; only
        with --screenshots, for a step that failed, or for what the test reads (ALWAYS_SHOT)."""
        if not (screenshots or len(failures) > failed_before or (name, stage) in ALWAYS_SHOT):
            return
        with clock("screenshots", f"{name}-{stage}"):
            outputs = driver.execute_script(WIDGET_OUTPUTS)
            for i, el in enumerate(outputs, 1):
                bring_into_view(el)
                el.screenshot(str(out / f"{name}-{stage}-widget{i}.png"))
            if outputs:
                bring_into_view(outputs[0])
            driver.save_screenshot(str(out / f"{name}-{stage}.png"))

    link_checks: list[tuple[str, int, object]] = []

    def fetch_links(name: str, hrefs: list[str]) -> list[str]:
        """The relative links that do not answer 200 (run in the pool, while the browser goes on)."""
        broken = []
        for href in hrefs:
            path = href.split("?")[0].split("#")[0].replace(f"{lab.base}/lab/tree/", "/api/contents/")
            status = lab.api("GET", path.replace(lab.base, ""), content=0).status_code
            if status != 200:
                broken.append(f"{name}: link {href.replace(lab.base, '')} answers {status}")
        return broken

    def as_committed_and_links(name: str) -> None:
        """1. the notebook as committed (widgets' hints), 2. its links, sent to the pool."""
        failed_before = len(failures)
        with clock("check: as committed, links collected", name):
            text = notebook_text()
            if name in HINTS:
                hint = HINTS[name]
                if MODEL_NOT_FOUND in text:
                    failures.append(f"{name} as committed shows '{MODEL_NOT_FOUND}'")
                if hint not in text:
                    failures.append(f"{name} as committed: the unrun widget does not say '{hint}'")
                report.append(f"{name} as committed: hint shown {hint in text}; '{MODEL_NOT_FOUND}' shown {MODEL_NOT_FOUND in text}")
            hrefs = set(driver.execute_script(
                "return [...document.querySelectorAll('.jp-Notebook .jp-RenderedMarkdown a')].map(a => a.href)"))
            local = sorted(h for h in hrefs if h and h.startswith(lab.base))
            link_checks.append((name, len(hrefs), pool.submit(fetch_links, name, local)))
            for error in driver.execute_script(MERMAID_ERRORS):
                failures.append(f"{name}: a Mermaid diagram does not draw, JupyterLab shows its {error}")
        if name == "00-set-up" and (screenshots or len(failures) > failed_before):
            driver.save_screenshot(str(out / "00-as-committed.png"))

    def check_overflow(name: str, what: str) -> None:
        with clock("check: overflow", name):
            driver.execute_async_script(LAID_OUT)
            for overflow in driver.execute_script(OVERFLOW_JS):
                failures.append(f"{name}: {what}: {overflow}")

    def kernel_id() -> str | None:
        return driver.execute_script(
            "const s = window.jupyterapp.shell.currentWidget.sessionContext.session; return s && s.kernel ? s.kernel.id : null;")

    # 1.-3. each notebook as committed, its links, then run it as a learner would; 4. save, restart its kernel
    restarts = []
    for name in RUN + ["10-cleanup"]:
        with clock("notebook, all steps before the reload", name):
            if name == RUN[0]:
                load_page(name)
            else:
                open_notebook(name)
            as_committed_and_links(name)
            if name not in RUN:
                lab.shutdown_kernel_of(f"{name}.ipynb")
                continue
            failed_before = len(failures)
            if not kernel_idle(name):
                failures.append(f"{name}: its kernel was not connected and idle {SETTLE_S} s after it opened")
                continue
            driver.execute_script(WATCH_REQUESTS)
            started = time.monotonic()
            with clock("run all (menu to the command's promise, kernel idle)", name):
                problem = run_all(name)
            seconds = time.monotonic() - started
            if problem:
                failures.append(f"{name} in JupyterLab: {problem}")
            if name in HINTS:
                with clock("wait: widgets rendered", name):
                    # a widget in an output, and every widget view a widget (or an error): SETTLED
                    until(ANSWER_S, lambda: driver.execute_script(WIDGET_OUTPUTS)
                          and driver.execute_script(SETTLED, f"{name}.ipynb") == "", f"{name}'s widgets to render")
            if name == "07-watch-messages":  # the live view's rows come from its poller, after the run
                with clock("wait: 07's message rows", name):
                    until(ANSWER_S, lambda: driver.execute_script(MESSAGE_ROWS) > 0, "07's message rows")
            shown = driver.execute_script(WIDGET_OUTPUTS)
            if name in HINTS:
                if not shown:
                    failures.append(f"{name}: running the notebook rendered no widget")
                check_overflow(name, "a widget overflows")
                shoot(name, "run", failed_before)
            if name in CLICKS:
                label, answer = CLICKS[name]
                with clock("check: click until the answer shows", name):
                    button = driver.find_element(By.XPATH, f"//div[contains(@class,'jp-OutputArea-output')]//button[normalize-space()='{label}']")
                    bring_into_view(button)
                    button.click()
                    until(ANSWER_S, lambda: answer in output_of(button), f"{name}'s '{answer}'")
                    shown_answer = answer in output_of(button)
                if not shown_answer:
                    failures.append(f"{name}: clicking '{label}' did not show '{answer}'")
                report.append(f"{name}: clicked '{label}', the widget showed '{answer}': {shown_answer}")
                shoot(name, "clicked", failed_before)
            if name in TYPE_INTO:
                typed, answer = TYPE_INTO[name]
                with clock("check: type until the answer shows", name):
                    box = driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea-output .widget-text input")
                    bring_into_view(box)
                    box.click()
                    box.send_keys(Keys.CONTROL, "a")
                    box.send_keys(typed)
                    until(ANSWER_S, lambda: answer in output_of(box), f"{name}'s '{answer}'")
                    status = output_of(box)
                if answer not in status:
                    failures.append(f"{name}: typing {typed!r} into the ARN box did not show '{answer}' ({status!r})")
                report.append(f"{name}: typed a 5-digit account into the ARN box, it said '{answer}': {answer in status}")
                check_overflow(name, "with an error showing, a widget overflows")
                shoot(name, "typed", failed_before)
            if name == "07-watch-messages":
                rows = driver.execute_script(MESSAGE_ROWS)
                if not rows:
                    failures.append("07: the live message view shows no message after the notebook ran")
                report.append(f"07: {rows} message row(s) in the live views")
            report.append(f"{name} run in JupyterLab in {seconds:.0f} s: {len(shown)} widget output(s)"
                          f"{'; ' + problem if problem else ''}")
            with clock("save (Ctrl+S until the file changes)", name):
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
            views = sum("application/vnd.jupyter.widget-view+json" in (o.get("data") or {})
                        for c in lab.saved(name)["cells"] for o in c.get("outputs", []))
            if name in HINTS:
                report.append(f"{name} saved: {views} widget view(s) in the file")
            # the next morning's kernel: restarted in the pool while the next notebook opens
            kernel = kernel_id()
            if kernel is None:
                failures.append(f"{name}: no kernel to restart after its run")
            else:
                restarts.append((name, pool.submit(lab.api, "POST", f"/api/kernels/{kernel}/restart", timeout=120)))

    with clock("wait: kernel restarts (in the pool)"):
        for name, restart in restarts:
            try:
                ok = restart.result().ok
            except OSError:
                ok = False
            if not ok:
                failures.append(f"{name}: its kernel did not restart")
    # 4. the next morning: the page reloaded, each notebook reopened on its restarted kernel
    shutdowns = []
    for name in RUN:
        with clock("notebook reopened after the reload", name):
            failed_before = len(failures)
            if name == RUN[0]:
                # close what is open first (each notebook saved; the kernels go on), so that leaving the
                # page asks nothing, then load it afresh
                driver.execute_script("for (const w of [...window.jupyterapp.shell.widgets('main')]) w.dispose();")
                load_page(name)
            else:
                open_notebook(name)
            text = notebook_text()
            if MODEL_NOT_FOUND in text:
                failures.append(f"{name} saved and reopened after a kernel restart shows '{MODEL_NOT_FOUND}: model not found'")
            if name in HINTS:
                if HINTS[name] not in text:
                    failures.append(f"{name} reopened: no '{HINTS[name]}' hint")
                report.append(f"{name} reopened after a kernel restart: hint shown {HINTS[name] in text}; "
                              f"'{MODEL_NOT_FOUND}' shown {text.count(MODEL_NOT_FOUND)} time(s)")
                if screenshots or len(failures) > failed_before:
                    with clock("screenshots", f"{name}-reopened"):
                        hinted = [el for el in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")
                                  if any(t in (el.get_attribute("textContent") or "") for t in (HINTS[name], MODEL_NOT_FOUND))]
                        if hinted:
                            bring_into_view(hinted[0])
                            hinted[0].screenshot(str(out / f"{name}-reopened-cell.png"))
                        driver.save_screenshot(str(out / f"{name}-reopened.png"))
            shutdowns.append(pool.submit(lab.shutdown_kernel_of, f"{name}.ipynb"))
    with clock("wait: links fetched (in the pool)"):
        for name, count, fetched in link_checks:
            failures.extend(fetched.result())
            report.append(f"{name}: {count} link(s) checked")
    with clock("wait: kernels shut down (in the pool)"):
        for shutdown in shutdowns:
            shutdown.result()
        lab.shutdown_kernels()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
