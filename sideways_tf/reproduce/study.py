"""Checking a set of claims end to end: plan the runs, train them, judge, write the table and the plots."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from typing import Callable, Optional, Sequence

from sideways_tf.reproduce import claims as claims_lib
from sideways_tf.reproduce import execute, report

RESULTS_MD = "miniature.md"
RESULTS_JSON = "miniature.json"
KEPT_CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")


def reproduce(names: Sequence[str], seeds: int, out: str, runs_dir: str, workers: int = 1, size: str = "full",
              print_fn: Optional[Callable] = print) -> dict:
    """Runs the claims and writes the results into `out`; returns `{claim: verdict}`.

    Args:
      names: claim names (`claims.CLAIMS`).
      seeds: seeds per arm.
      out: the folder of `miniature.md`, `miniature.json` and `miniature_<claim>.png`.
      runs_dir: the folder of the runs (resumed if it holds some).
      workers: runs at a time.
      size: `"full"` or `"tiny"` (`execute.SIZES`).
      print_fn: progress lines (None: silent).
    """
    start = time.perf_counter()
    chosen = claims_lib.get(names)
    jobs = execute.plan(chosen, seeds, size, runs_dir)
    results = execute.execute(jobs, runs_dir, workers, print_fn)
    os.makedirs(out, exist_ok=True)
    sections, verdicts, numbers = [], {}, {}
    for claim in chosen:
        mine = sorted((j for j in jobs if j.claim == claim.name), key=lambda j: (j.arm, j.seed))
        runs = {arm.name: [results[j.key] for j in mine if j.arm == arm.name] for arm in claim.arms}
        values = execute.claim_values(claim, jobs, results)
        png = f"miniature_{claim.name}.png"
        chance = 1.0 / claim.config(claim.arms[0], 0).num_classes if claim.metric == "accuracy" else None
        drawn = report.plot(os.path.join(out, png), claim, runs, chance)
        decided, text = report.claim_section(claim, values, runs, png if drawn else None)
        sections.append((claim, decided, text))
        verdicts[claim.name] = decided
        numbers[claim.name] = {"verdict": decided, "runs": {arm: [{"seed": j.seed, "run": j.key,
                                                                    **_compact(results[j.key])}
                                                                   for j in mine if j.arm == arm]
                                                             for arm in runs}}
    minutes = (time.perf_counter() - start) / 60
    trained = sum(m["minutes"] for m in results.values())
    header = _header(seeds, size, names, minutes, trained, workers)
    with open(os.path.join(out, RESULTS_MD), "w") as f:
        f.write(report.document(sections, header))
    with open(os.path.join(out, RESULTS_JSON), "w") as f:
        json.dump(numbers, f, indent=1, default=float)
    return verdicts


def _compact(metrics: dict) -> dict:
    """A run's metrics with only the learning curves of its table and plot (not every per-unit statistic)."""
    history = {k: v for k, v in metrics.get("history", {}).items() if k in KEPT_CURVES}
    return {**metrics, "history": history}


def _header(seeds: int, size: str, names: Sequence[str], minutes: float, trained: float, workers: int) -> str:
    import keras
    import tensorflow as tf

    m = claims_lib.MINIATURE
    everything = list(names) == list(claims_lib.CLAIMS)
    command = "sideways-reproduce" + ("" if everything else f" --claims {','.join(names)}") + \
        ("" if seeds == 3 else f" --seeds {seeds}") + ("" if size == "full" else f" --size {size}")
    return "\n".join([
        "# The papers' claims in miniature (measured here)", "",
        f"    {command}", "",
        f"Measured on {datetime.date.today().isoformat()}: {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__} "
        f"({keras.backend.backend()}); {seeds} seeds per arm, {workers} runs at a time; {minutes:.1f} min "
        f"in all ({trained:.1f} min of training summed over runs, read back runs included).", "",
        f"Every arm is the quickstart's setting made smaller (moving shapes, {m.num_frames} frames of "
        f"{m.resolution}x{m.resolution} at stride {m.stride}, the 6-unit small CNN, Adam {m.learning_rate:g}, batch "
        f"{m.batch_size}, {m.num_examples} clips, {m.epochs} epochs, {m.validation_steps * m.batch_size} held-out "
        f"clips{'' if size == 'full' else '; here at the tiny size: 2 steps per run, no science'}) with the "
        "claim's changes; the checks were fixed before the runs and nothing was tuned until they held. "
        "`a > b` holds when the means differ by more than the margin and twice the standard error of their "
        "difference; `a ~ b` when they are within the tolerance.",
    ])
