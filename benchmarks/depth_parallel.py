"""Depth parallelism under JAX: units over N devices against one device, and against GPipe on the same devices.

    python -m benchmarks.depth_parallel [--models vgg8 vgg16 resnet50 resnet50_time] [--modes sideways skip_sideways]
        [--batch 8 32] [--frames 32] [--devices 2] [--resolution 112] [--dtype float32|mixed_bfloat16]
        [--reps 5] [--dispatch workers|threads|plain] [--clip device|host] [--one_device_graphs same|default]
        [--png PATH] [--host_devices N] [--xla_flags "..."]

For every model, mode and batch size: the units are grouped over the first N devices by time
(`sw.parallel.balance`), and the compiled gradient function of one clip (`gradient_function`,
the whole training step but the optimizer) is timed on one device and on the N devices; both give
the same pseudo-gradients (their largest relative difference is printed). `resnet50` is Keras'
ResNet50 cut into 8 units by `sw.split` by flops, `resnet50_time` by measured time. GPipe
(`sw.parallel.gpipe`: exact backprop, frames as micro-batches, on per-device programs too) is
timed on the same devices and clips, with each rule's bound against it: `(1 + r) / (1 - bubble)
x (the rule's one-device frames/s / bp's)`, r being GPipe's recompute share (one-device forward
time over bp's gradient time). Frames/s are B * T over the median time of `--reps` calls.

`--clip device` (the default) puts the clip and its labels on the first device before timing, as
Keras' `fit` under JAX does on accelerators (its iterator copies each batch one step ahead, while
the step before runs); `--clip host` passes NumPy arrays, so every timed call also copies the
clip from host memory (154 MB at 224x224, B = 32, T = 32), on one device and on N alike.

`--one_device_graphs same` (the default since 2026-12-01) compiles the one-device step with the XLA
options each group's step gets (on NVIDIA GPUs, convolutions in CUDA graphs: 3.0x for EfficientNetB0's
step at B = 8 on one H200), so that both sides of a speed-up have them; `default` is the old
baseline, with XLA's defaults.

`--host_devices N` splits a CPU into N XLA host devices (set before JAX starts), so the script
runs without accelerators; such numbers measure the program's overheads on shared cores, not a
speed-up to expect on GPUs. `--xla_flags` appends to `XLA_FLAGS` (e.g. command buffers with
conditionals, pipelined collective-permutes: `docs/depth_parallel.md`).
"""

from __future__ import annotations

import argparse
import os
import sys


def _flag_from_argv(argv, name: str) -> str:
    """The value of `--name` in `argv` ("" if absent): read before JAX starts."""
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return ""


_XLA_FLAGS = [os.environ.get("XLA_FLAGS", ""), _flag_from_argv(sys.argv, "xla_flags")]
if _flag_from_argv(sys.argv, "host_devices"):
    _XLA_FLAGS.append(f"--xla_force_host_platform_device_count={_flag_from_argv(sys.argv, 'host_devices')}")
os.environ["XLA_FLAGS"] = " ".join(f for f in _XLA_FLAGS if f)
os.environ["KERAS_BACKEND"] = "jax"

from benchmarks.common import add_clip_flag, median_seconds, report  # noqa: E402
from benchmarks.networks import NETWORKS, compiled_network, fusion  # noqa: E402

# isort: split
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import sideways_tf as sw  # noqa: E402
from sideways_tf.core import frame_loop  # noqa: E402
from sideways_tf.core.frame_loop import DISPATCH  # noqa: E402
from sideways_tf.parallel import gpipe  # noqa: E402


def random_clips(batch: int, frames: int, resolution: int) -> tuple:
    """Random uint8 clips `[B, T, R, R, 3]` (seeded) and their labels `[B]` among 51 classes."""
    video = np.random.default_rng(0).integers(0, 256, size=(batch, frames, resolution, resolution, 3), dtype=np.uint8)
    return video, np.arange(batch) % 51


def clip_and_plan(name: str, mode: str, batch: int, frames: int, resolution: int, num_devices: int) -> tuple:
    """`random_clips` and `sw.parallel.balance`'s plan of model `name` over `num_devices` devices."""
    video, labels = random_clips(batch, frames, resolution)
    plan = sw.parallel.balance(NETWORKS[name](resolution), video.shape[2:], num_devices, mode=mode, fusion=fusion(name),
                               batch_size=batch)
    return video, labels, plan


def values(model) -> tuple[list, list]:
    """The current values of the model's trainable and non-trainable variables."""
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]


def _relative_error(a, b) -> float:
    """The largest difference of a tensor of `a` from its tensor in `b`, relative to that tensor's largest value.

    A tensor whose values are all below 1e-3 of the largest tensor's (a convolution bias followed
    by batch norm, whose exact gradient is zero) is measured against that floor instead: its
    rounding noise is not an error."""
    a = [np.asarray(x, "float32") for x in a]
    b = [np.asarray(y, "float32") for y in b]
    floor = 1e-3 * max(float(np.abs(y).max()) for y in b) + 1e-12
    return max(float(np.abs(x - y).max() / max(float(np.abs(y).max()), floor)) for x, y in zip(a, b, strict=True))


def _peak_bytes(devices) -> list:
    """Each device's peak memory so far (`memory_stats()["peak_bytes_in_use"]`; None where not reported)."""
    return [(device.memory_stats() or {}).get("peak_bytes_in_use") for device in devices]


def _gb(peak, first_row: bool):
    """A peak in GB, or None where not reported or not this row's own (`first_row` False)."""
    return None if peak is None or not first_row else round(peak / 2**30, 2)


def one_device_function(model, graphs: str = "same"):
    """`model.gradient_function()` of a one-device model as the package compiles it (`graphs="same"`: on NVIDIA
    GPUs with convolutions in CUDA graphs, as each group's step of the placed model) or with XLA's defaults
    (`"default"`)."""
    function = model.gradient_function()
    return function if graphs == "same" else jax.jit(function.__wrapped__)


def measure(name: str, mode: str, batch: int, frames: int, num_devices: int, resolution: int, reps: int,
            dispatch: str = "workers", clip: str = "device", graphs: str = "same") -> dict:
    """One row: frames/s on one device, on `num_devices` (balanced), and GPipe's on the same devices.

    The placed model runs first, so that each device's peak memory after it is its own (the
    one-device run then raises device 0's peak only); peaks are reported for a process's first row
    only, since JAX cannot reset them (later rows: None; `depth_memory` runs one per process).
    `clip`: "device" puts the clip and labels on the first device first (as `fit` does), "host" leaves
    them NumPy arrays. `graphs`: the one-device step's XLA options (`one_device_function`)."""
    used = jax.devices()[:num_devices]
    first_row = not any(_peak_bytes(jax.devices()))
    video, labels, plan = clip_and_plan(name, mode, batch, frames, resolution, num_devices)
    if clip == "device":
        video, labels = jax.device_put((video, labels), jax.devices()[0])
    one = compiled_network(name, mode, resolution)
    one.build(video.shape)
    placed = compiled_network(name, mode, resolution, plan.devices)
    placed.build(video.shape)
    placed.set_weights(one.get_weights())
    if placed.engine.programs:
        placed.engine.place.dispatch = dispatch
    args_one = (*values(one), video, labels, None)
    args_placed = (*values(placed), video, labels, None)
    seconds_placed = median_seconds(placed.gradient_function(), args_placed, reps)
    peaks_placed = _peak_bytes(used)
    seconds_one = median_seconds(one_device_function(one, graphs), args_one, reps)
    peak_one = _peak_bytes(used[:1])[0]
    error = _relative_error(placed.gradient_function()(*args_placed), one.gradient_function()(*args_one))
    row = {"model": name, "mode": mode, "B": batch, "T": frames, "dtype": keras.mixed_precision.dtype_policy().name,
           "devices": num_devices, "clip": clip, "one_device_graphs": graphs, "groups": [len(g) for g in plan.groups],
           "runtime": f"programs/{dispatch}" if placed.engine.programs else "one program",
           "one_device_fps": batch * frames / seconds_one, "depth_parallel_fps": batch * frames / seconds_placed,
           "speedup": seconds_one / seconds_placed, "ideal_speedup": plan.ideal_speedup,
           "of_ideal": seconds_one / seconds_placed / plan.ideal_speedup, "max_rel_err": error,
           "peak_gb_per_device": [_gb(p, first_row) for p in peaks_placed],
           "peak_gb_one_device": _gb(peak_one, first_row)}
    if mode != "bp":
        row.update(_against_gpipe(name, mode, video, labels, num_devices, resolution, reps, seconds_one,
                                  seconds_placed, graphs))
    return row


def _against_gpipe(name: str, mode: str, video, labels, num_devices: int, resolution: int, reps: int,
                   seconds_one: float, seconds_placed: float, graphs: str = "same") -> dict:
    """GPipe on the same devices (per-device programs), and the rule's bound against it.

    The bound is `(1 + r) / (1 - bubble) x (the rule's one-device frames/s / bp's)`: GPipe
    recomputes each group's forward pass (r: one-device forward time over bp's gradient time)
    and idles for the bubble, and the rule itself costs what it costs on one device. One-device bp is
    compiled as the rule's one-device step was (`graphs`)."""
    batch, frames = video.shape[:2]
    chain = sw.parallel.balance(NETWORKS[name](resolution), video.shape[2:], num_devices, mode="bp", batch_size=batch)
    pipe = compiled_network(name, "bp", resolution, chain.devices)
    pipe.build(video.shape)
    one_bp = compiled_network(name, "bp", resolution)
    one_bp.build(video.shape)
    one_bp.set_weights(pipe.get_weights())
    args = (*values(pipe), video, labels, None)
    seconds_gpipe = median_seconds(gpipe.gradient_function(pipe), args, reps)
    args_bp = (*values(one_bp), video, labels, None)
    seconds_bp = median_seconds(one_device_function(one_bp, graphs), args_bp, reps)
    forward = jax.jit(lambda trainable, non_trainable, clip: one_bp.stateless_call(trainable, non_trainable, clip)[0])
    seconds_forward = median_seconds(forward, (*values(one_bp), video), reps)
    recompute = seconds_forward / seconds_bp
    bubble = gpipe.bubble(frames, num_devices)
    bound = (1 + recompute) / (1 - bubble) * seconds_bp / seconds_one
    vs_gpipe = seconds_gpipe / seconds_placed
    return {"gpipe_fps": batch * frames / seconds_gpipe, "vs_gpipe": vs_gpipe, "gpipe_bubble": bubble,
            "gpipe_recompute": recompute, "vs_gpipe_bound": bound, "vs_gpipe_of_bound": vs_gpipe / bound,
            "gpipe_max_rel_err": _relative_error(gpipe.gradient_function(pipe)(*args)[0],
                                                 one_bp.gradient_function()(*values(one_bp), video, labels, None))}


def plot(path: str, rows) -> None:
    """Measured against ideal speed-up per configuration, and frames/s against GPipe's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\n{r['mode']}\nB={r['B']}" for r in rows]
    x = np.arange(len(rows))
    figure, (left, right) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(rows)), 4))
    left.bar(x - 0.2, [r["speedup"] for r in rows], 0.4, label="measured")
    left.bar(x + 0.2, [r["ideal_speedup"] for r in rows], 0.4, label="ideal (sum / max group)")
    left.axhline(1.0, color="gray", lw=0.8)
    left.set_xticks(x, labels, fontsize=7)
    left.set_title(f"speed-up over one device ({rows[0]['devices']} devices)")
    left.legend(loc="lower right")
    right.bar(x - 0.2, [r["depth_parallel_fps"] for r in rows], 0.4, label="depth parallel")
    right.bar(x + 0.2, [r.get("gpipe_fps", 0) for r in rows], 0.4, label="GPipe (same devices)")
    right.set_xticks(x, labels, fontsize=7)
    right.set_title("frames/s")
    right.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def parse_with_device_flags(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Adds the flags every depth-parallel benchmark shares (devices, resolution, repetitions, plot, XLA),
    parses, and checks that JAX has the devices asked for."""
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--png", help="also save a plot here")
    parser.add_argument("--host_devices", type=int, default=0, help="split the CPU into this many XLA devices")
    parser.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS before JAX starts")
    args = parser.parse_args()
    if len(jax.devices()) < args.devices:
        parser.error(f"--devices {args.devices}: JAX has {len(jax.devices())} devices ({jax.devices()}).")
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg8", "vgg16", "vgg8_tiny", "resnet50", "resnet50_time"],
                        choices=list(NETWORKS))
    parser.add_argument("--modes", nargs="+", default=["sideways", "skip_sideways"], choices=list(sw.MODES))
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--dtype", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--dispatch", default="workers", choices=list(DISPATCH),
                        help="per-device programs: a worker per group running its own frame loop, a thread per group "
                             "joined every frame, or the calling thread")
    add_clip_flag(parser)
    parser.add_argument("--one_device_graphs", default="same", choices=["same", "default"],
                        help="the one-device step compiled with the groups' CUDA-graph options (same) or XLA's "
                             "defaults (default, as before 2026-12-01)")
    parser.add_argument("--ahead", type=int, default=frame_loop.AHEAD,
                        help="frames a group's worker may dispatch ahead of its device (core.frame_loop.AHEAD)")
    args = parse_with_device_flags(parser)
    keras.mixed_precision.set_global_policy(args.dtype)
    frame_loop.AHEAD = args.ahead
    rows = []
    for name in args.models:
        for mode in args.modes:
            for batch in args.batch:
                rows.append(measure(name, mode, batch, args.frames, args.devices, args.resolution, args.reps,
                                    args.dispatch, args.clip, args.one_device_graphs))
                print(f"measured {rows[-1]}", file=sys.stderr, flush=True)
    summary = {"devices": str(jax.devices()[:args.devices]), "XLA_FLAGS": os.environ["XLA_FLAGS"],
               "ahead": args.ahead}
    columns = ["model", "mode", "B", "T", "dtype", "clip", "one_device_graphs", "groups", "runtime", "one_device_fps",
               "depth_parallel_fps",
               "speedup", "ideal_speedup", "of_ideal", "gpipe_fps", "vs_gpipe", "vs_gpipe_bound", "vs_gpipe_of_bound",
               "gpipe_recompute", "max_rel_err", "gpipe_max_rel_err", "peak_gb_per_device", "peak_gb_one_device"]
    report("depth_parallel", rows, columns, summary)
    if args.png:
        plot(args.png, rows)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
