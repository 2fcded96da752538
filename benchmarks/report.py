"""Printing a benchmark's result: JSON first (for machines), then a short table (for people)."""

from __future__ import annotations

import json
from typing import Sequence

from sideways_tf.core import text_table


def report(name: str, rows: Sequence[dict], columns: Sequence[str], summary: dict) -> None:
    """Prints the rows as JSON, then a short table, then the summary."""
    print(json.dumps({"benchmark": name, "rows": list(rows), "summary": summary}, indent=1))
    print()
    print(text_table.align([list(columns)] + [[_fmt(r.get(c)) for c in columns] for r in rows]))
    for key, value in summary.items():
        print(f"{key}: {_fmt(value)}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)
