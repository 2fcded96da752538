"""Where the quickstart's time goes on this CPU: each rule's training step against plain Keras, and evaluation.

    python -m benchmarks.quickstart_breakdown [--steps 10] [--png PATH]

For each rule of `sideways-quickstart`, on one core (both rules train at the same time, one
process per core): the model's `train_on_batch` on a batch of the quickstart's clips
(`[B, T, R, R, 3]` of the quickstart's config), per step and per frame; `evaluate` over the held-out set, per epoch;
and, for scale, plain Keras training the same per-frame network (the units chained into one
`keras.Model`) on the batch's frames, B clips' frames at a time (per-frame backprop, the
arithmetic any rule must do). The epoch estimate is steps x step + evaluation; the rest of a
measured epoch is data and callbacks. Run it on a quiet machine: it times.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from benchmarks.quickstart_time import cpu_name
from benchmarks.report import report


def _seconds(function, calls: int) -> float:
    """Mean seconds per call of `function()` over `calls` calls after one."""
    function()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def _plain_frame_model(config, steps_per_epoch: int):
    """The config's per-frame network (its Sideways units chained) as one `keras.Model` over frames
    `[N, R, R, 3]`, with the runs' optimizer."""
    import keras

    from sideways_tf.training import runner

    frames = keras.Input((config.resolution, config.resolution, 3))
    h = frames
    for unit in runner.build_units(dataclasses.replace(config, mode="sideways")):
        h = unit(h)
    model = keras.Model(frames, h)
    model.compile(optimizer=runner.build_optimizer(config, steps_per_epoch),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def measure(mode: str, steps: int) -> dict:
    """One rule's row: ms per training step and per frame, evaluation seconds per epoch, plain Keras' ms per frame."""
    import numpy as np

    from sideways_tf.training import experiments, runner

    config = dataclasses.replace(experiments.get("quickstart"), mode=mode)
    train, evaluation = runner.build_datasets(config)
    steps_per_epoch = sum(1 for _ in train)
    model = runner.build_model(config)
    runner.compile_model(model, config, steps_per_epoch)
    clips, labels = next(iter(train))
    batch, frames = int(clips.shape[0]), int(clips.shape[1])
    step = _seconds(lambda: model.train_on_batch(clips, labels), steps)
    evaluate = _seconds(lambda: model.evaluate(evaluation, verbose=0), 1)
    plain = _plain_frame_model(config, steps_per_epoch)
    images = np.reshape(np.asarray(clips, "float32") / 255.0, (-1,) + tuple(clips.shape[2:]))
    frame_labels = np.repeat(np.asarray(labels), frames)
    per_frame = _seconds(lambda: [plain.train_on_batch(images[i::frames], frame_labels[i::frames])
                                  for i in range(frames)], max(1, steps // 4)) / frames
    return {"mode": mode, "B": batch, "T": frames, "steps_per_epoch": steps_per_epoch,
            "step_ms": 1e3 * step, "ms_per_frame": 1e3 * step / frames, "plain_keras_ms_per_frame": 1e3 * per_frame,
            "vs_plain": step / frames / per_frame, "eval_s_per_epoch": evaluate,
            "train_s_per_epoch": step * steps_per_epoch,
            "eval_share": evaluate / (evaluate + step * steps_per_epoch), "epochs": config.epochs,
            "estimate_s": config.epochs * (evaluate + step * steps_per_epoch)}


def plot(rows, path: str) -> None:
    """Per rule, an epoch's training and evaluation seconds, stacked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = [r["mode"] for r in rows]
    train = [r["train_s_per_epoch"] for r in rows]
    ax.bar(names, train, label="training steps")
    ax.bar(names, [r["eval_s_per_epoch"] for r in rows], bottom=train, label="evaluation (held-out clips)")
    ax.set_ylabel("seconds per epoch (one core)")
    ax.set_title("The quickstart's epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per rule")
    parser.add_argument("--png", help="also save a plot here")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1; got {args.steps}.")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows = [measure(mode, args.steps) for mode in ("sideways", "skip_sideways")]
    report("quickstart_breakdown", rows, ["mode", "B", "T", "steps_per_epoch", "step_ms", "ms_per_frame",
                                          "plain_keras_ms_per_frame", "vs_plain", "train_s_per_epoch",
                                          "eval_s_per_epoch", "eval_share", "estimate_s"],
           {"cpu": cpu_name(), "oneDNN ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "default")})
    if args.png:
        plot(rows, args.png)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
