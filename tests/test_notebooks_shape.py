"""Every notebook has the workbook's page shape, matches its source, and was committed executed and clean."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

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
