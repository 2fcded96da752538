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


def variant_report(name: str, rows: Sequence[dict], summary: dict, png, ylabel: str, title: str) -> None:
    """`report` of rows of frames/s per variant (columns model, mode, B, T, variant, fps, vs_default),
    and with `png` a plot of them there (`variant_bars`)."""
    report(name, rows, ["model", "mode", "B", "T", "variant", "fps", "vs_default"], summary)
    if png and rows:
        variant_bars(png, rows, ylabel, title)
        print(f"plot: {png}")


def variant_bars(path: str, rows: Sequence[dict], ylabel: str, title: str) -> None:
    """A PNG of each row's `fps`, one bar per `variant`, one group of bars per model, mode and batch `B`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cases = list(dict.fromkeys((r["model"], r["mode"], r["B"]) for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    figure, axis = plt.subplots(figsize=(max(5.0, 2.2 + 1.8 * len(cases)), 3.8))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        fps = [next((r["fps"] for r in rows if (r["model"], r["mode"], r["B"]) == c and r["variant"] == variant), 0)
               for c in cases]
        bars = axis.bar(np.arange(len(cases)) + (i - (len(variants) - 1) / 2) * width, fps, width, label=variant)
        axis.bar_label(bars, fmt="%.0f", fontsize=7)
    axis.set_xticks(np.arange(len(cases)), [f"{m}\n{mode}, B {b}" for m, mode, b in cases], fontsize=8)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
