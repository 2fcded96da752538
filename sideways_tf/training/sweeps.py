"""A named sweep (`experiments.SWEEPS`) run as one training run per combination, with a summary.

    <model_dir>/<key=value,key=value>/        one run each (results.json, TensorBoard logs, backups)
    <model_dir>/sweep.json                    every combination's settings and evaluation

A combination whose folder holds a finished run is read back, not trained again, so an
interrupted sweep resumes where it stopped (`runner.run`'s own resume).
"""

from __future__ import annotations

import json
import os
from typing import Callable, Sequence

from sideways_tf.core import text_table

SUMMARY_FILE = "sweep.json"


def run(name: str, combinations: Sequence[tuple], model_dir: str, train: Callable[[object, str], dict],
        print_fn: Callable[[str], None] = print, write: bool = True) -> list[dict]:
    """Trains (or reads back) every combination and writes `model_dir/sweep.json`.

    Args:
      name: the sweep's name (for the summary).
      combinations: `(settings, config)` per combination, the settings `key=value` overrides
        (`experiments.sweep`); its folder is `key=value,key=value`.
      model_dir: the sweep's folder.
      train: `(config, run folder) -> results` (`runner.run`'s results dict).
      print_fn: where progress and the table go.
      write: write the summary (False in the processes of a multi-worker run but the chief).

    Returns:
      Per combination `{"settings": {key: value}, "folder", "evaluation"}`, in order.
    """
    rows = []
    for index, (settings, config) in enumerate(combinations):
        folder = ",".join(settings)
        print_fn(f"[{index + 1}/{len(combinations)}] {name}: {folder}")
        results = train(config, os.path.join(model_dir, folder))
        rows.append({"settings": dict(setting.split("=", 1) for setting in settings), "folder": folder,
                     "evaluation": results.get("evaluation", {})})
        if write:
            _write(model_dir, name, rows, len(combinations))
    print_fn(table(rows))
    print_fn(f"summary: {os.path.join(model_dir, SUMMARY_FILE)}")
    return rows


def _write(model_dir: str, name: str, rows: list, total: int) -> None:
    """The summary so far (rewritten after every run, so a stopped sweep leaves what it finished)."""
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, SUMMARY_FILE), "w") as f:
        json.dump({"sweep": name, "finished": len(rows), "combinations": total, "runs": rows}, f, indent=1)


def table(rows: Sequence[dict]) -> str:
    """A plain-text table: the settings, then every evaluation metric, one row per combination."""
    if not rows:
        return "(no runs)"
    keys = list(rows[0]["settings"])
    metrics = sorted({m for row in rows for m in row["evaluation"]})
    header = keys + metrics
    lines = [[row["settings"][k] for k in keys] + [_number(row["evaluation"].get(m)) for m in metrics]
             for row in rows]
    return text_table.align([header] + lines)


def _number(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
