"""One accelerator under JAX: frames/s of every training rule, and memory as the clip grows.

    python -m benchmarks.one_accelerator [--models vgg8 vgg16 resnet50 ...] [--batch 8 32] [--frames 32]
        [--dtype float32 mixed_bfloat16] [--memory_frames 16 64 256] [--memory_batch 8]
        [--memory_methods sideways skip_sideways clip_batched_bp 3d_vgg16_remat] [--largest 256]
        [--resolution 112] [--reps 5] [--clip device|host] [--png PATH] [--skip_speed] [--skip_memory]

Speed: for each model, batch size and dtype policy, the compiled gradient function of one clip
(the training step but the optimizer) of `"sideways"`, `"skip_sideways"` and per-frame `"bp"`
(a `lax.scan` over frames), and of clip-batched backprop (the frame network on all B x T
frames at once: what users would otherwise run). Frames/s are B * T over the median of `--reps`
calls; the ratios Sideways / per-frame bp and Sideways / clip-batched bp are summarised.
`--models` names networks of `benchmarks/networks.py`: the zoo's VGGs, and `keras.applications`
networks cut into 8 units by `sw.split` (`resnet50`, `mobilenetv2`, `efficientnetb0`,
`convnext_tiny`), as users bring their own.
`--clip device` (the default) puts the clip, labels and weights on the device before timing, as
`fit` has them when a step starts; `--clip host` copies the clip from host memory in every call.

Memory: for each T in `--memory_frames`, the compiled program's temporary buffers and arguments
(XLA's memory analysis, without running: the clip and weights are arguments, not temporaries),
for the sideways rules, clip-batched bp and the 3D VGG-16 (with `remat`, clip labels). On a
device that reports its memory limit (GPUs), the largest batch in 1, 2, 4, ... `--largest` whose
program fits (temporaries + arguments) is also given, as in the papers' Table 4: predicted from
the footprints at B and 2B (linear in B), then confirmed by compiling the predicted batch and its
double, walking on by doubling or halving where the prediction was wrong. The search's programs
are compiled without XLA's GPU autotuning (default convolution algorithms): with it, clip-batched
bp's search on one H200 printed nothing in 9 minutes, autotuning at up to 4,096 frames per step
the likely cost (not confirmed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

os.environ["KERAS_BACKEND"] = "jax"

from benchmarks.common import add_clip_flag, median_seconds, report, uint8_clips  # noqa: E402

# isort: split
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import sideways_tf as sw  # noqa: E402
from benchmarks.memory import clip_batched_gradients  # noqa: E402
from benchmarks.networks import NETWORKS, compiled_network  # noqa: E402

RULES = ("sideways", "skip_sideways", "bp")
MB = 2.0**20


def gradient_program(method: str, name: str, video: np.ndarray):
    """`(function, args)` of one training step's gradients for `method`."""
    labels = np.arange(video.shape[0]) % 51
    if method == "3d_vgg16_remat":
        return _vgg3d_program(video, labels)
    model = compiled_network(name, "bp" if method == "clip_batched_bp" else method, video.shape[2])
    model.build(video.shape)
    if method == "clip_batched_bp":
        params, states = model.engine.current_values()
        return clip_batched_gradients(model), (params, states, video, labels)
    values = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    return model.gradient_function(), (*values, video, labels, None)


def _vgg3d_program(video: np.ndarray, labels: np.ndarray):
    model = sw.models.vgg16_3d(51, frame_shape=video.shape[2:], remat=True)
    model.build(video.shape)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def gradients(trainable, non_trainable, video, labels):
        def value(trainable):
            logits, _ = model.stateless_call(trainable, non_trainable, keras.ops.cast(video, "float32"),
                                             training=True)
            return loss(labels, logits)

        return jax.grad(value)(trainable)

    values = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    return jax.jit(gradients), (*values, video, labels)


def speed(names, batches, frames: int, dtypes, resolution: int, reps: int, clip: str = "device") -> list[dict]:
    """Per dtype, model and batch, one row of frames/s of every rule and of clip-batched bp."""
    rows = []
    for dtype in dtypes:
        keras.mixed_precision.set_global_policy(dtype)
        for name in names:
            for batch in batches:
                video = uint8_clips(batch, frames, resolution)
                row = {"model": name, "B": batch, "T": frames, "dtype": dtype}
                for method in (*RULES, "clip_batched_bp"):
                    function, args = gradient_program(method, name, video)
                    if clip == "device":
                        args = jax.device_put(args, jax.devices()[0])
                    row[f"{method}_fps"] = batch * frames / median_seconds(function, args, reps)
                row["sideways_vs_bp"] = row["sideways_fps"] / row["bp_fps"]
                row["sideways_vs_clip_batched"] = row["sideways_fps"] / row["clip_batched_bp_fps"]
                rows.append(row)
                print(f"measured {row}", file=sys.stderr, flush=True)
    keras.mixed_precision.set_global_policy("float32")
    return rows


def _limit_bytes():
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("bytes_limit")


def _footprint(method: str, name: str, batch: int, frames: int, resolution: int,
               autotune: bool = True) -> tuple[float, float]:
    """(temporaries, arguments) in bytes of the compiled program, without running it (nor making its clip).

    `autotune=False` compiles without XLA's GPU autotuning (`xla_gpu_autotune_level=0`: default
    convolution algorithms), which at thousands of frames per step times every candidate kernel."""
    clip = jax.ShapeDtypeStruct((batch, frames, resolution, resolution, 3), np.uint8)
    function, args = gradient_program(method, name, clip)
    options = None if autotune else {"xla_gpu_autotune_level": 0}
    analysis = function.lower(*args).compile(options).memory_analysis()
    return float(analysis.temp_size_in_bytes), float(analysis.argument_size_in_bytes)


def largest_batch(method: str, name: str, frames: int, resolution: int, limit: float,
                  footprints: Optional[dict] = None, largest: int = 256) -> int:
    """The largest batch in 1, 2, 4, ... `largest` whose program fits in `limit` bytes (0 if none).

    `footprints`: batch -> (temporaries, arguments) already compiled (two of them predict the
    answer, linear in the batch); every other batch is compiled here. The answer is always
    confirmed by compiling: the batch found fits, and its double does not (or is above `largest`).
    """
    known = dict(footprints or {})

    def fits(batch: int) -> bool:
        if batch not in known:
            known[batch] = _footprint(method, name, batch, frames, resolution, autotune=False)
        return sum(known[batch]) <= limit

    batch = 1
    if len(known) >= 2:
        (b0, f0), (b1, f1) = sorted(known.items())[:2]
        per_clip = (sum(f1) - sum(f0)) / (b1 - b0)
        if per_clip > 0:
            batch = min(largest, 2 ** max(0, int(np.floor(np.log2(max((limit - sum(f0)) / per_clip + b0, 1))))))
    while batch > 1 and not fits(batch):
        batch //= 2
    if not fits(batch):
        return 0
    while batch < largest and fits(2 * batch):
        batch *= 2
    return batch


MEMORY_METHODS = ("sideways", "skip_sideways", "clip_batched_bp", "3d_vgg16_remat")
# One colour per method in both panels.
COLORS = {"sideways": "C0", "skip_sideways": "C1", "bp": "C2", "clip_batched_bp": "C3", "3d_vgg16_remat": "C4"}


def memory(names, batch: int, frame_counts, resolution: int, methods=MEMORY_METHODS, largest: int = 256
           ) -> list[dict]:
    """Per model, method and T, one row of the compiled step's temporaries and arguments (and, on a
    device that reports its memory and with `largest` > 0, the largest batch up to `largest` that fits)."""
    rows = []
    limit = _limit_bytes()
    for name in names:
        for method in methods:
            if method == "3d_vgg16_remat" and name != names[0]:
                continue
            for frames in frame_counts:
                temp, arguments = _footprint(method, name, batch, frames, resolution)
                row = {"model": "vgg16_3d" if method == "3d_vgg16_remat" else name, "method": method, "B": batch,
                       "T": frames, "temp_MB": temp / MB, "arguments_MB": arguments / MB}
                if limit and largest:
                    footprints = {batch: (temp, arguments),
                                  2 * batch: _footprint(method, name, 2 * batch, frames, resolution, autotune=False)}
                    found = largest_batch(method, name, frames, resolution, limit, footprints, largest)
                    row["largest_batch"] = f">={found}" if found == largest else found  # the search stops there
                rows.append(row)
                print(f"measured {row} at {time.strftime('%H:%M:%S')}", file=sys.stderr, flush=True)
    return rows


def plot(path: str, speed_rows, memory_rows) -> None:
    """A PNG of the speed rows (frames/s per method, left) and the memory rows (temporaries against T,
    right); a panel only for what was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = int(bool(speed_rows)) + int(bool(memory_rows))
    if not panels:
        return
    widths = ([max(6.5, 1.1 * len(speed_rows))] if speed_rows else []) + ([6.5] if memory_rows else [])
    figure, axes = plt.subplots(1, panels, figsize=(sum(widths), 4.2), squeeze=False,
                                gridspec_kw={"width_ratios": widths})
    axes = list(axes[0])
    if speed_rows:
        left = axes.pop(0)
        x = np.arange(len(speed_rows))
        for i, method in enumerate((*RULES, "clip_batched_bp")):
            left.bar(x + (i - 1.5) * 0.2, [r[f"{method}_fps"] for r in speed_rows], 0.2, label=method,
                     color=COLORS[method])
        short = {"float32": "f32", "mixed_bfloat16": "bf16"}
        left.set_xticks(x, [f"{r['model']}\nB{r['B']} {short.get(r['dtype'], r['dtype'])}" for r in speed_rows],
                        fontsize=8)
        left.set_ylabel("frames/s")
        left.set_title(f"one device, T = {speed_rows[0]['T']}")
        left.legend(fontsize=7)
    if memory_rows:
        right = axes.pop(0)
        for method in sorted({r["method"] for r in memory_rows}):
            for model in sorted({r["model"] for r in memory_rows if r["method"] == method}):
                points = [r for r in memory_rows if r["method"] == method and r["model"] == model]
                right.plot([r["T"] for r in points], [r["temp_MB"] for r in points], "o-", color=COLORS[method],
                           label=method if method.startswith("3d") else f"{model} {method}")
        right.set_xscale("log", base=2)
        right.set_yscale("log")
        right.set_xlabel("T (frames per clip)")
        right.set_title(f"XLA temporaries of one training step (MB), B = {memory_rows[0]['B']}")
        right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg8", "vgg16"], choices=list(NETWORKS))
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--dtype", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--memory_frames", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--memory_batch", type=int, default=8)
    parser.add_argument("--memory_methods", nargs="+", default=list(MEMORY_METHODS), choices=MEMORY_METHODS)
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--largest", type=int, default=256,
                        help="search the largest batch that fits up to this many clips (0: no search)")
    parser.add_argument("--reps", type=int, default=5)
    add_clip_flag(parser)
    parser.add_argument("--png", help="also save a plot here")
    parser.add_argument("--skip_speed", action="store_true")
    parser.add_argument("--skip_memory", action="store_true")
    args = parser.parse_args()
    speed_rows = [] if args.skip_speed else speed(args.models, args.batch, args.frames, args.dtype, args.resolution,
                                                  args.reps, args.clip)
    memory_rows = [] if args.skip_memory else memory(args.models, args.memory_batch, args.memory_frames,
                                                     args.resolution, args.memory_methods, args.largest)
    summary = {"device": str(jax.devices()[0]), "device_memory_MB": (_limit_bytes() or 0) / MB}
    for row in speed_rows:
        key = f"{row['model']} B={row['B']} {row['dtype']}"
        summary[f"{key}: sideways / per-frame bp"] = row["sideways_vs_bp"]
        summary[f"{key}: sideways / clip-batched bp"] = row["sideways_vs_clip_batched"]
    for model, method in sorted({(r["model"], r["method"]) for r in memory_rows}):
        points = {r["T"]: r["temp_MB"] for r in memory_rows if (r["model"], r["method"]) == (model, method)}
        summary[f"{model} {method}: temporaries T={max(points)} / T={min(points)}"] = \
            points[max(points)] / max(points[min(points)], 1e-9)
    if speed_rows:
        report("one_accelerator_speed", speed_rows, ["model", "B", "T", "dtype", "sideways_fps", "skip_sideways_fps",
                                                     "bp_fps", "clip_batched_bp_fps", "sideways_vs_bp",
                                                     "sideways_vs_clip_batched"], {})
    report("one_accelerator_memory", memory_rows, ["model", "method", "B", "T", "temp_MB", "arguments_MB",
                                                   "largest_batch"], summary)
    if args.png:
        plot(args.png, speed_rows, memory_rows)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
