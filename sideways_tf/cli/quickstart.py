"""The main job: Sideways vs Skip-Sideways on motion that no single frame reveals, offline, on a CPU.

    sideways-quickstart [--model_dir DIR] [--epochs N]      # also: python -m sideways_tf.cli.quickstart

Trains the `quickstart` experiment (moving shapes, motion labels, 8 classes, a 6-unit CNN) once
with each rule and prints their accuracies on held-out clips against chance: the mean and spread
over the last epochs (one epoch's number jumps around), and the last one. Sideways trains a
per-frame model, so it cannot tell motion apart; Skip-Sideways' shortcuts reach across frames.
Writes both rules' learning curves to `quickstart.png` (with matplotlib: `sideways_tf[plots]`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional

from absl import flags

from sideways_tf.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Where the two runs go (default: a new temporary folder).")
flags.DEFINE_integer("epochs", None, "Override the number of epochs.")
flags.DEFINE_multi_string("set", [], "key=value override of the quickstart config (repeatable).")
flags.DEFINE_integer("verbose", 1, "0 silent, 1 one line per epoch, 2 Keras' own output (every metric).")

MODES = ("sideways", "skip_sideways")
LAST_EPOCHS = 3


def compare(model_dir: str, overrides=(), verbose: int = 1, parallel: Optional[bool] = None) -> list[dict]:
    """Trains the quickstart once per mode; returns one row per mode.

    Each row has the held-out accuracy's mean and standard deviation over the last
    `LAST_EPOCHS` epochs, the last epoch's, chance, the minutes taken and the per-epoch history.

    Args:
      model_dir: one subfolder per mode goes here.
      overrides: `key=value` overrides of the quickstart config.
      verbose: as `runner.run`'s.
      parallel: train the modes at the same time, one process each (default: when there are
        at least as many CPU cores as modes); their lines are prefixed with the mode.
    """
    if parallel is None:
        parallel = (os.cpu_count() or 1) >= len(MODES)
    runs = _run_parallel(model_dir, overrides, verbose) if parallel else _run_sequential(model_dir, overrides, verbose)
    rows = []
    for mode in MODES:
        results, minutes = runs[mode]
        curve = results["history"].get("val_accuracy", [results["evaluation"]["accuracy"]])
        last = curve[-LAST_EPOCHS:]
        mean = sum(last) / len(last)
        rows.append({"mode": mode, "accuracy": mean, "spread": (sum((a - mean) ** 2 for a in last) / len(last)) ** 0.5,
                     "last_epochs": len(last), "final": results["evaluation"]["accuracy"],
                     "chance": results["chance_accuracy"], "minutes": minutes,
                     "val_accuracy": curve, "accuracy_curve": results["history"].get("accuracy", [])})
    with open(os.path.join(model_dir, "quickstart.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return rows


def _run_sequential(model_dir: str, overrides, verbose: int) -> dict:
    from sideways_tf.training import config as config_lib
    from sideways_tf.training import experiments, runner

    base = config_lib.apply_overrides(experiments.get("quickstart"), list(overrides))
    runs = {}
    for mode in MODES:
        start = time.perf_counter()
        results = runner.run(dataclasses.replace(base, mode=mode), os.path.join(model_dir, mode), verbose=verbose)
        runs[mode] = (results, (time.perf_counter() - start) / 60)
    return runs


def _run_parallel(model_dir: str, overrides, verbose: int) -> dict:
    """One worker process per mode, each with its share of the cores; their output prefixed `[mode]`."""
    threads = max(1, (os.cpu_count() or 1) // len(MODES))
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads)}
    code = "import sideways_tf_cli; sideways_tf_cli.run_experiment()"
    processes, printers, starts = {}, [], {}
    for mode in MODES:
        args = [sys.executable, "-c", code, "quickstart", mode, os.path.join(model_dir, mode), str(verbose),
                *overrides]
        starts[mode] = time.perf_counter()
        processes[mode] = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                           bufsize=1, env=env)
        printers.append(threading.Thread(target=_forward, args=(processes[mode], f"[{mode}] "), daemon=True))
        printers[-1].start()
    runs, failed = {}, []
    for mode, process in processes.items():
        if process.wait() != 0:
            failed.append(f"{mode} (exit {process.returncode})")
        minutes = (time.perf_counter() - starts[mode]) / 60
        if not failed or failed[-1].split()[0] != mode:
            with open(os.path.join(model_dir, mode, "results.json")) as f:
                runs[mode] = (json.load(f), minutes)
    for printer in printers:
        printer.join()
    if failed:
        raise RuntimeError(f"the quickstart run of {', '.join(failed)} failed; its output is above.")
    return runs


def _forward(process, prefix: str) -> None:
    for line in process.stdout:
        print(prefix + line, end="", flush=True)


def format_table(rows: list[dict]) -> str:
    """Accuracy as mean +- std over the last epochs, the last epoch's, chance and minutes."""
    last = rows[0]["last_epochs"] if rows else LAST_EPOCHS
    heading = f"accuracy (last {last} epoch{'s' if last != 1 else ''})"
    lines = [f"{'mode':<16}{heading:>26}{'last epoch':>12}{'chance':>9}{'minutes':>9}"]
    for r in rows:
        lines.append(f"{r['mode']:<16}{r['accuracy']:>18.3f} +- {r['spread']:.3f}{r['final']:>12.3f}"
                     f"{r['chance']:>9.3f}{r['minutes']:>9.1f}")
    return "\n".join(lines)


# What the quickstart shows: Skip-Sideways at least this accurate, Sideways this close to chance.
LEARNS = 0.5
AT_CHANCE = 0.05


def conclusion(rows: list[dict]) -> str:
    """One sentence: what the two rules' held-out accuracies (`compare`'s rows) show, with their numbers."""
    by_mode = {r["mode"]: r for r in rows}
    side, skip = by_mode["sideways"], by_mode["skip_sideways"]
    chance = skip["chance"]
    if skip["accuracy"] >= LEARNS and abs(side["accuracy"] - chance) <= AT_CHANCE:
        return (f"Skip-Sideways learns the motion ({skip['accuracy']:.2f} held out, chance {chance:.3f}); Sideways "
                f"stays at chance ({side['accuracy']:.2f}): its per-frame model cannot see motion.")
    return (f"Not the expected result: Skip-Sideways {skip['accuracy']:.2f} (expected >= {LEARNS}) and Sideways "
            f"{side['accuracy']:.2f} (expected within {AT_CHANCE} of chance {chance:.3f}); train longer with "
            f"--epochs.")


def plot(path: str, rows: list[dict]) -> bool:
    """Both rules' held-out (and training) accuracy per epoch, with chance; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    for i, r in enumerate(rows):
        epochs = range(1, len(r["val_accuracy"]) + 1)
        axis.plot(epochs, r["val_accuracy"], color=f"C{i}", marker="o", label=f"{r['mode']} (held out)")
        if r["accuracy_curve"]:
            axis.plot(epochs, r["accuracy_curve"], color=f"C{i}", linestyle=":", label=f"{r['mode']} (training)")
    axis.axhline(rows[0]["chance"], color="k", linestyle="--", label="chance")
    axis.set_xlabel("epoch")
    axis.set_ylabel("accuracy")
    axis.set_ylim(0, 1)
    axis.set_title("moving shapes, motion labels")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def main(argv) -> None:
    del argv
    model_dir = FLAGS.model_dir or tempfile.mkdtemp(prefix="sideways_quickstart_")
    overrides = list(FLAGS.set) + ([f"epochs={FLAGS.epochs}"] if FLAGS.epochs else [])
    print(f"sideways-quickstart: Sideways and Skip-Sideways on moving shapes with motion labels; runs in "
          f"{model_dir}\nwatch them with: tensorboard --logdir {model_dir}", flush=True)
    rows = compare(model_dir, overrides, FLAGS.verbose)
    print()
    print("Moving shapes, motion labels (held-out clips):")
    print(format_table(rows))
    print(conclusion(rows))
    png = os.path.join(model_dir, "quickstart.png")
    if plot(png, rows):
        print(f"\nlearning curves: {png}")
    else:
        print('\n(pip install "sideways_tf[plots]" for a plot of the learning curves)')
    print(f"logs and results: {model_dir}")


def run_main() -> None:
    """Console-script entry point (`--help` shows this command's flags)."""
    common.run(main, __name__)


if __name__ == "__main__":
    run_main()
