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
        drawn = report.plot(os.path.join(out, png), claim, runs, _chance(claim))
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


def rejudge(out: str) -> dict:
    """Judges the runs recorded in `out/miniature.json` again with the current checks, without training,
    and rewrites `miniature.md` and the verdicts in `miniature.json`; returns `{claim: verdict}`.

    The header of the existing `miniature.md` (how and when the runs were made) is kept, with a
    line saying when and how the verdicts were re-read; the plots are drawn again from the
    recorded runs (their metric may have changed).

    Raises:
      FileNotFoundError: naming the file when `out` holds no `miniature.json` or `miniature.md`.
      ValueError: when the file records a claim this version does not have.
    """
    paths = {name: os.path.join(out, name) for name in (RESULTS_JSON, RESULTS_MD)}
    for path in paths.values():
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: --rejudge re-reads the results of an earlier "
                                    "sideways-reproduce run in --out.")
    with open(paths[RESULTS_JSON]) as f:
        numbers = json.load(f)
    with open(paths[RESULTS_MD]) as f:
        old = f.read()
    header = old[:old.index("| claim | verdict | from |")].rstrip()
    header = "\n".join(line for line in header.splitlines() if not line.startswith("Verdicts re-read"))
    for words in (" " + VERDICT_WORDS, " `a > b` holds when the means differ by more than the margin and twice the "
                  "standard error of their difference; `a ~ b` when they are within the tolerance."):
        header = header.replace(words, "")  # this version's words, or the two-verdict version's
    header = header.rstrip() + " " + VERDICT_WORDS + "\n\n" + (
        f"Verdicts re-read on {datetime.date.today().isoformat()} from `{RESULTS_JSON}` "
        "(`sideways-reproduce --rejudge`), with the checks of this version (each claim's section says what "
        "changed): each claim's runs were not trained again.")
    chosen = claims_lib.get(list(numbers))
    sections, verdicts = [], {}
    for claim in chosen:
        runs = {arm: [dict(run) for run in sorted(recorded, key=lambda r: r["seed"])]
                for arm, recorded in numbers[claim.name]["runs"].items()}
        png = f"miniature_{claim.name}.png"
        drawn = report.plot(os.path.join(out, png), claim, runs, _chance(claim))
        decided, text = report.claim_section(claim, execute.run_values(runs), runs,
                                             png if drawn or os.path.exists(os.path.join(out, png)) else None)
        sections.append((claim, decided, text))
        verdicts[claim.name] = numbers[claim.name]["verdict"] = decided
    with open(paths[RESULTS_MD], "w") as f:
        f.write(report.document(sections, header))
    with open(paths[RESULTS_JSON], "w") as f:
        json.dump(numbers, f, indent=1, default=float)
    return verdicts


VERDICT_WORDS = (
    "`a > b` holds when the means differ by more than the margin and twice the standard error (2 se) of their "
    "difference; `a ~ b` when they are within the tolerance. A check is *contradicted* when the opposite is shown "
    "beyond 2 se (b above a; the means apart by more than the tolerance plus 2 se), and otherwise *not shown at "
    "this power*, with the seeds per arm at which the same difference and spread would decide it. A claim holds "
    "when all its checks hold, is contradicted when one is, and is otherwise not shown.")


def _chance(claim: claims_lib.Claim) -> Optional[float]:
    """The chance accuracy of an accuracy claim (None for the others)."""
    if claim.metric not in report.ACCURACIES:
        return None
    return 1.0 / claim.config(claim.arms[0], 0).num_classes


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
        f"Every arm is the quickstart's data and model at a smaller setting (moving shapes, {m.num_frames} frames of "
        f"{m.resolution}x{m.resolution} at stride {m.stride}, the 6-unit small CNN, Adam {m.learning_rate:g}, batch "
        f"{m.batch_size}, {m.num_examples} clips, {m.epochs} epochs, {m.validation_steps * m.batch_size} held-out "
        f"clips{'' if size == 'full' else '; here at the tiny size: 2 steps per run, no science'}) with the "
        "claim's changes; the checks were fixed before the runs and nothing was tuned until they held. "
        + VERDICT_WORDS,
    ])
