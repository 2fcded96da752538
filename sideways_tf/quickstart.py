"""The main job: Sideways vs Skip-Sideways on motion that no single frame reveals, offline, on a CPU.

    sideways-quickstart [--model_dir DIR] [--epochs N]      # also: python -m sideways_tf.quickstart

Trains the `quickstart` experiment (moving shapes, motion labels, 8 classes, a 6-unit CNN) once
with each rule and prints their accuracies on held-out clips against chance. Sideways trains a
per-frame model, so it cannot tell motion apart; Skip-Sideways' shortcuts reach across frames.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Where the two runs go (default: a new temporary folder).")
flags.DEFINE_integer("epochs", None, "Override the number of epochs.")
flags.DEFINE_multi_string("set", [], "key=value override of the quickstart config (repeatable).")
flags.DEFINE_integer("verbose", 2, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")

MODES = ("sideways", "skip_sideways")


def compare(model_dir: str, overrides=(), verbose: int = 2) -> list[dict]:
    """Trains the quickstart once per mode; returns one row per mode."""
    from sideways_tf.training import config as config_lib
    from sideways_tf.training import experiments, runner

    base = config_lib.apply_overrides(experiments.get("quickstart"), list(overrides))
    rows = []
    for mode in MODES:
        config = dataclasses.replace(base, mode=mode)
        start = time.perf_counter()
        results = runner.run(config, os.path.join(model_dir, mode), verbose=verbose)
        rows.append({"mode": mode, "accuracy": results["evaluation"]["accuracy"],
                     "chance": results["chance_accuracy"], "minutes": (time.perf_counter() - start) / 60})
    with open(os.path.join(model_dir, "quickstart.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'mode':<16}{'accuracy':>10}{'chance':>10}{'minutes':>10}"]
    for r in rows:
        lines.append(f"{r['mode']:<16}{r['accuracy']:>10.3f}{r['chance']:>10.3f}{r['minutes']:>10.1f}")
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    model_dir = FLAGS.model_dir or tempfile.mkdtemp(prefix="sideways_quickstart_")
    overrides = list(FLAGS.set) + ([f"epochs={FLAGS.epochs}"] if FLAGS.epochs else [])
    rows = compare(model_dir, overrides, FLAGS.verbose)
    print()
    print("Moving shapes, motion labels (held-out clips):")
    print(format_table(rows))
    print(f"\nlogs and results: {model_dir} (tensorboard --logdir {model_dir})")


def run_main() -> None:
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run_main()
