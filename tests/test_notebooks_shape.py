"""Every notebook has the workbook's page shape, matches its source, and was committed executed and clean."""
from __future__ import annotations

import ast
import builtins
import re
import sys
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import nb as nbtool  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOURCES = sorted((ROOT / "notebooks" / "src").glob("*.py"))
NAME_RE = re.compile(r"^\d{2}-[a-z0-9]+(-[a-z0-9]+)*$")
SECRET_RES = [re.compile(p) for p in (r"-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----", r"AKIA[0-9A-Z]{16}",
                                       r"ASIA[0-9A-Z]{16}", r"sandbox-local-secret")]


def ids(paths):
    return [p.stem for p in paths]


def test_names_sort_into_reading_order_and_pair_with_sources():
    assert NOTEBOOKS, "no notebooks"
    assert ids(NOTEBOOKS) == ids(SOURCES), "each notebooks/NN-name.ipynb needs notebooks/src/NN-name.py"
    prefixes = [int(p.stem[:2]) for p in NOTEBOOKS]
    assert prefixes == list(range(len(prefixes))), "prefixes must run 00, 01, 02, ... without gaps"
    for p in NOTEBOOKS:
        assert NAME_RE.match(p.stem), f"{p.name}: use NN-lowercase-words"
    stray = [p.name for p in (ROOT / "notebooks").iterdir() if p.suffix == ".ipynb" and not NAME_RE.match(p.stem)]
    assert not stray


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_matches_its_source(path):
    nb = nbformat.read(path, as_version=4)
    built = nbtool.build_cells(ROOT / "notebooks" / "src" / f"{path.stem}.py", ids(SOURCES))
    got = [(c.cell_type, c.source, c.get("metadata", {}).get("tags", [])) for c in nb.cells]
    want = [(c.cell_type, c.source, c.get("metadata", {}).get("tags", [])) for c in built]
    assert got == want, f"{path.name} differs from its source: run python scripts/nb.py all {path.stem}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_page_shape(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith(f"# {path.stem[:2]} · "), "title: '# NN · Title'"
    assert re.search(r"## What you will learn\n(\d+\. .+\n)+", first.source), "a numbered 'What you will learn'"
    assert re.search(r"\*\*Time to learn:\*\* \d+ minutes", first.source)
    assert "## Prerequisites" in first.source and "| Concept |" in first.source
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("## Check your work", "## Questions", "## Summary", "## What's next"):
        assert heading in markdown, f"missing section {heading!r}"
    assert markdown.count("<details><summary>Solution</summary>") >= 2, "at least two questions with solutions"
    check_at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Check your work" in c.source)
    check_code = next(c for c in nb.cells[check_at:] if c.cell_type == "code")
    assert "assert" in check_code.source, "the final check must assert that the stage worked"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_committed_executed_in_order_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "execute top to bottom, fresh kernel"
    for cell in code:
        tags = cell.get("metadata", {}).get("tags", [])
        if "nbval-ignore-output" in tags:
            assert "# nbval-ignore-output:" in cell.source, "say why the output is not compared"
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                assert "raises-exception" in tags, f"unexpected error in {path.name}: {output.get('ename')}"
            text = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[output])]))
            for pattern in SECRET_RES:
                assert not pattern.search(text), f"{path.name} output holds something secret-looking"
            for account in re.findall(r"(?<!\d)\d{12}(?!\d)", text):
                assert account == "123456789012", f"{path.name} output holds an account id {account}"
    assert set(nb.metadata) <= {"kernelspec", "language_info"}


# --- Cells that teach: short cells -------------------------------------------------------------------------
#: A code cell's length is its lines of code: not blank, not only a comment (the `# CLI:` line beside each
#: boto3 call is prose the cell must keep, not code to read). The rule: fewer than MAX_CODE_LINES, except
#: the set-up cells (everything before the first numbered lesson section, `## 1.` or `## 0.`: restoring every
#: name after a kernel restart is their job) and the cells below, each with its reason. Keyed by the
#: notebook's name without its number (renumbering keeps the entry) and the cell's first line.
MAX_CODE_LINES = 10
LONG_CELLS_ALLOWED = {
    ("key-pair", "shown_path = wb.relative(pair.private_key_path)"):
        "one question (does git ignore the private key?) with its four answers side by side",
    ("test-invoke", "try:"): "Check your work: the stage's assertions, read as one list",
    ("watch-messages", "try:"): "Check your work: the assertions, and the watcher stopped whatever happens",
    ("experiments", "try:"): "Check your work: the assertions of five experiments, and the watcher stopped",
    ("mqtt-devices", "events = DeviceEvents()"):
        "the SDK builder call is the lesson: its eight custom-auth arguments belong together in one call",
    ("mqtt-devices", "try:"): "Check your work: the assertions of every connect and refusal, and every client stopped",
    ("cleanup", "def is_gone(call, gone_code):"): "Check your work: asks AWS that every recorded resource is gone",
}
LESSON_HEADING = re.compile(r"^## \d+\. ", re.MULTILINE)


def code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def lesson_cells(nb):
    """(index, cell) of the code cells from the first numbered section on; before it are the set-up cells."""
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and LESSON_HEADING.search(c.source))
    return [(i, c) for i, c in enumerate(nb.cells) if i > first and c.cell_type == "code"]


def long_cells(nb, stem: str) -> list[str]:
    topic = stem[3:]
    return [f"cell {i} ({code_lines(c.source)} lines of code): {c.source.splitlines()[0][:60]}"
            for i, c in lesson_cells(nb)
            if code_lines(c.source) >= MAX_CODE_LINES and (topic, c.source.splitlines()[0]) not in LONG_CELLS_ALLOWED]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_lesson_cells_are_short(path):
    nb = nbformat.read(path, as_version=4)
    assert not long_cells(nb, path.stem), (
        f"{path.name}: cells of {MAX_CODE_LINES}+ lines of code; move plumbing into helpers/ or split them "
        f"(or allow-list one with its reason in LONG_CELLS_ALLOWED): {long_cells(nb, path.stem)}")


def test_most_cells_of_the_workbook_are_short_and_the_allow_list_is_used():
    cells = [(p.stem[3:], c) for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
    short = sum(1 for _, c in cells if code_lines(c.source) < MAX_CODE_LINES)
    assert short >= 0.85 * len(cells), f"only {short} of {len(cells)} code cells are under {MAX_CODE_LINES} lines"
    present = {(topic, c.source.splitlines()[0]) for topic, c in cells if c.source}
    assert set(LONG_CELLS_ALLOWED) <= present, f"stale allow-list entries: {set(LONG_CELLS_ALLOWED) - present}"


def test_the_length_rule_catches_a_long_lesson_cell():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import json\n" * 12),  # set-up: exempt
        nbformat.v4.new_markdown_cell("## 1. A section"),
        nbformat.v4.new_code_cell("# CLI: aws iot ...\n" * 20 + "x = 1\n"),  # comments do not count
        nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(10)))])
    assert [line.split(" (")[0] for line in long_cells(nb, "05-test-invoke")] == ["cell 3"]


# --- Kernel restarts: every name a cell uses is restored by running the notebook from the top -------------
#: After a restart the one-line message says "run this notebook from the top" (helpers/errors.py), so each
#: name a cell reads must be bound earlier in the *same* notebook: in the set-up cells (which restore the
#: workbook, its clients and what earlier notebooks left in the state file) or in a cell above. Never in
#: another notebook's kernel, never in a later cell. nbval cannot see every violation: a `raises-exception`
#: cell passes on a NameError too, and a name in a branch or a function body that did not run is never read.
#: A `raises-exception` cell binds only what its statements before the last (the one that raises) bind.
IPYTHON_NAMES = {"get_ipython", "display", "In", "Out", "exit", "quit"}


class _Bindings(ast.NodeVisitor):
    """The names a cell binds at the notebook's top level (not inside functions, lambdas, comprehensions)."""

    def __init__(self):
        self.names: set[str] = set()

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Store):
            self.names.add(node.id)

    def visit_FunctionDef(self, node):
        self.names.add(node.name)

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_Import(self, node):
        self.names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node):
        if node.name:
            self.names.add(node.name)
        self.generic_visit(node)

    def _skip(self, node):
        pass

    visit_Lambda = visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _skip


def _bound_anywhere(tree) -> set[str]:
    """Every name the cell binds at any depth (parameters, loop and comprehension variables, locals)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def parse_cell(source: str) -> ast.Module:
    """A code cell as Python, its IPython magics (``%config ...``) turned into the calls IPython makes."""
    return ast.parse(TransformerManager().transform_cell(source))


def unrestored_names(nb) -> list[str]:
    """'cell N: name' for each name a code cell reads that no earlier cell of the notebook (nor itself) binds."""
    known = set(dir(builtins)) | IPYTHON_NAMES
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tree = parse_cell(cell.source)
        read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        problems += [f"cell {index}: {name}" for name in sorted(read - known - _bound_anywhere(tree))]
        statements = tree.body[:-1] if "raises-exception" in cell.get("metadata", {}).get("tags", []) else tree.body
        binder = _Bindings()
        for statement in statements:
            binder.visit(statement)
        known |= binder.names
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_running_from_the_top_restores_every_name(path):
    nb = nbformat.read(path, as_version=4)
    assert not unrestored_names(nb), f"{path.name}: names no earlier cell binds: {unrestored_names(nb)}"
    setup = [c for i, c in enumerate(nb.cells) if c.cell_type == "code" and i < min(i for i, _ in lesson_cells(nb))]
    if path.stem[:2] != "00":  # 00 opens the workbook in its lesson: choosing the target is what it teaches
        binder = _Bindings()
        for cell in setup:
            binder.visit(parse_cell(cell.source))
        assert "wb" in binder.names, f"{path.name}: the set-up cells must open the workbook (wb = open_workbook())"


def test_the_restart_rule_catches_what_it_is_for():
    cells = [nbformat.v4.new_code_cell("import json\nfrom x import wb"),
             nbformat.v4.new_code_cell("def f(a):\n    return a + later_name\nseen = [i for i in range(3)]"),
             nbformat.v4.new_code_cell("partial = 1\nraise ValueError(never_bound)"),
             nbformat.v4.new_code_cell("print(json, seen, partial, f, other_kernel)"),
             nbformat.v4.new_code_cell("later_name = 2\nlambda: hidden\ni")]
    cells[2].metadata["tags"] = ["raises-exception"]
    nb = nbformat.v4.new_notebook(cells=cells)
    assert unrestored_names(nb) == ["cell 1: later_name", "cell 2: never_bound", "cell 3: other_kernel",
                                    "cell 4: hidden", "cell 4: i"]
