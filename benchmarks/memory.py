"""Memory of one training step as the clip grows, per backend.

    python -m benchmarks.memory [--backend tensorflow|jax] [--frames 16 64 256] [--batch 4] [--modes ...]

For every mode and clip length T, a fresh process builds the 8-unit VGG-style net at 112x112.

Under TensorFlow it runs one traced warm-up training step on a uint8 clip, resets the TF
allocator's statistics, runs a second step and reads `tf.config.experimental.get_memory_info`:

* `peak - clip`: the process's allocator peak less what the clip itself took from the
  allocator (weights, optimizer state and everything the step allocates). The allocator hands
  out power-of-two regions, so the clip's allocation is measured, not computed from its shape;
* `step`: the peak less what was allocated before the step (the step's own working memory).

Under JAX a step is one XLA program; its compiled memory analysis gives the `step` column: the
temporary buffers of the program that computes the step's gradients (arguments and outputs,
the clip and the weights, are not included). `jax.Device.memory_stats()` is not available on
the CPU; on a GPU the same analysis applies.

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
MB = 2.0**20


def clip_batched_gradients(model):
    """A compiled pure function: gradients of the frame network on all frames at once."""
    from keras import ops

    from sideways_tf.core import backends, pipeline

    backend = backends.current()
    rule = model.engine.rule()  # the "bp" model's rule: the per-frame network, synchronous

    def gradients(params, states, video, labels):
        frames = ops.cast(ops.reshape(video, (-1,) + tuple(video.shape[2:])), "float32")
        targets = ops.repeat(labels, video.shape[1] if video.shape[1] is not None else ops.shape(video)[1])

        def network(p):
            return pipeline.synchronous_forward(model.stages, rule, p, states, frames, training=True)

        _, _, _, (grads,) = backend.value_and_vjp(network, [params], head=lambda out: model.loss(targets, out))
        return grads

    return backend.compile_function(gradients)


def measure(mode: str, frames: int, batch: int) -> dict:
    """One configuration, in this process: returns the row."""
    import keras
    import numpy as np

    from benchmarks.common import compiled_model, uint8_clips

    video_np = uint8_clips(batch, frames)
    labels = np.arange(batch) % 51
    model = compiled_model("bp" if mode == "clip_batched_bp" else mode)
    model.build(video_np.shape)
    params, states = model.engine.current_values()
    row = {"backend": keras.backend.backend(), "mode": mode, "T": frames, "clip_MB": video_np.nbytes / MB}
    if keras.backend.backend() == "jax":
        if mode == "clip_batched_bp":
            function, args = clip_batched_gradients(model), (params, states, video_np, labels)
        else:
            flat = [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]
            function, args = model.gradient_function(), (*flat, video_np, labels, None)
        analysis = function.lower(*args).compile().memory_analysis()
        return {**row, "step_MB": analysis.temp_size_in_bytes / MB}

    import tensorflow as tf

    start = tf.config.experimental.get_memory_info(DEVICE)["current"]
    video = tf.constant(video_np)
    clip_allocated = tf.config.experimental.get_memory_info(DEVICE)["current"] - start
    if mode == "clip_batched_bp":
        model.optimizer.build(model.trainable_variables)
        gradients = clip_batched_gradients(model)

        def step():
            params, states = model.engine.current_values()
            grads = gradients(params, states, video, tf.constant(labels))
            model.optimizer.apply([g for unit in grads for g in unit],
                                  [v for stage in model.stages for v in stage.trainable_variables])
    else:

        def step():
            return model.train_on_batch(video, labels)

    step()
    tf.config.experimental.reset_memory_stats(DEVICE)
    before = tf.config.experimental.get_memory_info(DEVICE)["current"]
    step()
    peak = tf.config.experimental.get_memory_info(DEVICE)["peak"]
    return {**row, "clip_allocated_MB": clip_allocated / MB, "peak_minus_clip_MB": (peak - clip_allocated) / MB,
            "step_MB": (peak - before) / MB}


def main() -> None:
    from benchmarks.common import add_backend_flag

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backend_flag(parser)
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
                [sys.executable, "-m", "benchmarks.memory", "--one", mode, str(frames), "--batch", str(args.batch),
                 "--backend", args.backend],
                capture_output=True, text=True, check=True,
            ).stdout
            rows.append(json.loads(next(line for line in out.splitlines() if line.startswith("ROW "))[4:]))
            print(f"measured {rows[-1]}", file=sys.stderr, flush=True)
    summary = {}
    key = "peak_minus_clip_MB" if args.backend == "tensorflow" else "step_MB"
    for mode in args.modes:
        by_t = {r["T"]: r for r in rows if r["mode"] == mode}
        lo, hi = min(by_t), max(by_t)
        summary[f"{mode}: ({key}) T={hi} / T={lo}"] = by_t[hi][key] / max(by_t[lo][key], 1e-9)
    columns = ["backend", "mode", "T", "clip_MB", "clip_allocated_MB", "peak_minus_clip_MB", "step_MB"]
    if args.backend == "jax":
        columns = ["backend", "mode", "T", "clip_MB", "step_MB"]
    report("memory", rows, columns, summary)


if __name__ == "__main__":
    main()
