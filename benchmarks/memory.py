"""Peak allocator memory of one training step as the clip grows.

    python -m benchmarks.memory [--frames 16 64 256] [--batch 4] [--modes ...]

For every mode and clip length T, a fresh process builds the 8-unit VGG-style net at 112x112,
runs one traced warm-up training step on a uint8 clip, resets the TF allocator's statistics and
runs a second step, then reads `tf.config.experimental.get_memory_info`:

* `peak - clip`: the process's allocator peak less what the clip itself took from the
  allocator (weights, optimizer state and everything the step allocates). The allocator hands
  out power-of-two regions, so a 36.75 MB clip takes 64 MB: the clip's allocation is measured,
  not computed from its shape;
* `step`: the peak less what was allocated before the step (the step's own working memory).

For contrast, `clip_batched_bp` is ordinary backprop of the same frame network on all T frames
at once (time folded into the batch), which keeps every frame's activations.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MODES = ("bp", "sideways", "skip_sideways", "fa_skip_sideways", "clip_batched_bp")
DEVICE = "CPU:0"


def measure(mode: str, frames: int, batch: int) -> dict:
    """One configuration, in this process: returns the row."""
    import numpy as np
    import tensorflow as tf

    from benchmarks.common import compiled_model, uint8_clips
    from sideways_tf.core.pipeline import synchronous_forward

    start = tf.config.experimental.get_memory_info(DEVICE)["current"]
    video = uint8_clips(batch, frames)
    clip_allocated = tf.config.experimental.get_memory_info(DEVICE)["current"] - start
    labels = tf.constant(np.arange(batch) % 51)
    model = compiled_model("bp" if mode == "clip_batched_bp" else mode)
    if mode == "clip_batched_bp":
        model.build(video.shape)
        model.optimizer.build(model.trainable_variables)

        @tf.function
        def clip_step(video, labels):
            frames_ = tf.cast(tf.reshape(video, (-1,) + tuple(video.shape[2:])), tf.float32)
            with tf.GradientTape() as tape:
                logits = synchronous_forward(model.stages, frames_, shortcuts=False, training=True)
                loss = model.loss(tf.repeat(labels, video.shape[1]), logits)
            grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
            model.optimizer.apply(grads, model.trainable_variables)
            return loss

        def step():
            return clip_step(video, labels).numpy()
    else:

        def step():
            return model.train_on_batch(video, labels)

    step()
    tf.config.experimental.reset_memory_stats(DEVICE)
    before = tf.config.experimental.get_memory_info(DEVICE)["current"]
    step()
    peak = tf.config.experimental.get_memory_info(DEVICE)["peak"]
    mb = 2.0**20
    return {"mode": mode, "T": frames, "clip_MB": int(np.prod(video.shape)) / mb,
            "clip_allocated_MB": clip_allocated / mb, "peak_minus_clip_MB": (peak - clip_allocated) / mb,
            "step_MB": (peak - before) / mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--one", nargs=2, metavar=("MODE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("ROW " + json.dumps(measure(args.one[0], int(args.one[1]), args.batch)))
        return
    from benchmarks.common import report

    rows = []
    for mode in args.modes:
        for frames in args.frames:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.memory", "--one", mode, str(frames), "--batch", str(args.batch)],
                capture_output=True, text=True, check=True,
            ).stdout
            rows.append(json.loads(next(line for line in out.splitlines() if line.startswith("ROW "))[4:]))
            print(f"measured {rows[-1]}", file=sys.stderr, flush=True)
    summary = {}
    for mode in args.modes:
        by_t = {r["T"]: r for r in rows if r["mode"] == mode}
        lo, hi = min(by_t), max(by_t)
        ratio = by_t[hi]["peak_minus_clip_MB"] / by_t[lo]["peak_minus_clip_MB"]
        summary[f"{mode}: (peak - clip) T={hi} / T={lo}"] = ratio
    report("memory", rows, ["mode", "T", "clip_MB", "clip_allocated_MB", "peak_minus_clip_MB", "step_MB"], summary)


if __name__ == "__main__":
    main()
