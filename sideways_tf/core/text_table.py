"""Plain-text tables: rows of cells in left-aligned columns (the schedule's timeline, a sweep's runs, benchmarks)."""

from __future__ import annotations

from typing import Sequence


def align(rows: Sequence[Sequence[object]]) -> str:
    """The rows (header first) as lines of left-aligned columns two spaces apart, without trailing blanks.

    Raises:
      ValueError: when the rows have different lengths.
    """
    cells = [[str(c) for c in row] for row in rows]
    if len({len(row) for row in cells}) > 1:
        raise ValueError(f"every row needs the same number of cells; got lengths {sorted({len(r) for r in cells})}.")
    widths = [max(len(c) for c in column) for column in zip(*cells, strict=True)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
