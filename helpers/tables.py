"""Plain-text tables, the one layout the helpers print: columns padded to their widest cell, two spaces apart.

The last column is not padded and may hold several lines; they continue under it. Standard library
only, so ``python -m helpers.doctor`` can print with it before anything is installed.

>>> print(text_table([("KIND", "ID", "NOTE"), ("role", "r-1", "ok"), ("function", "f", "line 1\\nline 2")]))
KIND      ID   NOTE
role      r-1  ok
function  f    line 1
               line 2
"""
from __future__ import annotations

from typing import Iterable, Sequence


def text_table(rows: Iterable[Sequence[str]]) -> str:
    """``rows`` (a header, if any, first) as aligned lines; every row has the same number of cells."""
    rows = [tuple(row) for row in rows]
    if not rows:
        return ""
    padded = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(padded)]
    indent = " " * (sum(widths) + 2 * padded)
    lines = []
    for row in rows:
        first, *rest = row[-1].split("\n")
        lines.append("".join(cell.ljust(width) + "  " for cell, width in zip(row[:padded], widths)) + first)
        lines.extend(indent + line for line in rest)
    return "\n".join(lines)
