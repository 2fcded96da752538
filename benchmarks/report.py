"""Printing a benchmark's result: JSON first (for machines), then a short table (for people)."""

from __future__ import annotations

import json
from typing import Sequence


def report(name: str, rows: Sequence[dict], columns: Sequence[str], summary: dict) -> None:
    """Prints the rows as JSON, then a short table, then the summary."""
    print(json.dumps({"benchmark": name, "rows": list(rows), "summary": summary}, indent=1))
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print()
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for key, value in summary.items():
        print(f"{key}: {_fmt(value)}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)
