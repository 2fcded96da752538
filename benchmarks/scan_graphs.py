"""One GPU: a clip's per-frame `lax.scan` with more of each frame inside CUDA graphs.

    python -m benchmarks.scan_graphs [--models efficientnetb0] [--modes sideways bp] [--batch 8]
        [--frames 32] [--resolution 112] [--rounds 3] [--reps 5] [--variants default convolution while package]
        [--png PATH]

A frame of a small network at a small batch is hundreds of short kernels, and XLA launches
those of a `lax.scan` body from the host every frame, except the fusions it records into CUDA
graphs (its default `xla_gpu_enable_command_buffer`). For each model, mode and batch this
compiles the same gradient function of one clip (`gradient_function`: the training step but the
optimizer) with XLA's defaults and with command buffers that also take the convolutions
(`convolution`: what the package's own compiled functions use on NVIDIA GPUs) and the loop itself
(`while`: one graph per clip), and takes the package's function as it is (`package`), then times
the variants in turn for `--rounds` rounds (the median of `--reps` calls each, so that a slow
spell of the machine hits every variant) and prints JSON and a table of frames/s and the speed-up
over the default (and with `--png` a bar chart of it).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

from benchmarks.common import median_seconds, uint8_clips  # noqa: E402

# isort: split
import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.networks import NETWORKS  # noqa: E402
from benchmarks.one_accelerator import gradient_program  # noqa: E402
from benchmarks.report import variant_report  # noqa: E402
from sideways_tf.core.backends.jax_graphs import GPU_GRAPH_OPTIONS  # noqa: E402

VARIANTS = {
    "default": {},
    "convolution": GPU_GRAPH_OPTIONS,
    "while": {**GPU_GRAPH_OPTIONS, "xla_gpu_enable_command_buffer":
              GPU_GRAPH_OPTIONS["xla_gpu_enable_command_buffer"] + ",WHILE,CONDITIONAL"},
    "package": None,  # the package's own compiled function (`model.gradient_function()`), as a user calls it
}


def compiled_variants(name: str, mode: str, batch: int, frames: int, resolution: int, variants) -> tuple:
    """`({variant: compiled gradient function}, args)` of model `name` on one random clip on the device."""
    function, args = gradient_program(mode, name, uint8_clips(batch, frames, resolution))
    args = jax.device_put(args, jax.devices()[0])
    lowered = jax.jit(function.__wrapped__).lower(*args)
    functions = {}
    for variant in variants:
        try:
            functions[variant] = function if variant == "package" else lowered.compile(VARIANTS[variant] or None)
        except Exception as error:  # noqa: BLE001 -- a variant XLA refuses is reported, not fatal
            print(f"variant {variant!r} not compiled: {str(error).splitlines()[0][:300]}", file=sys.stderr)
    return functions, args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["efficientnetb0"], choices=list(NETWORKS))
    parser.add_argument("--modes", nargs="+", default=["sideways", "bp"])
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--png", help="also save a plot here")
    args = parser.parse_args()
    if jax.devices()[0].platform != "gpu":  # the options are XLA:GPU's
        args.variants = [v for v in args.variants if v in ("default", "package")]
    rows, summary = [], {"device": str(jax.devices()[0])}
    for name in args.models:
        for mode in args.modes:
            for batch in args.batch:
                functions, call_args = compiled_variants(name, mode, batch, args.frames, args.resolution,
                                                         args.variants)
                seconds = {v: [] for v in functions}
                for _ in range(args.rounds):
                    for variant, function in functions.items():
                        seconds[variant].append(median_seconds(function, call_args, args.reps))
                base = float(np.median(seconds["default"])) if "default" in seconds else None
                for variant, times in seconds.items():
                    fps = batch * args.frames / float(np.median(times))
                    row = {"model": name, "mode": mode, "B": batch, "T": args.frames, "variant": variant,
                           "fps": fps, "rounds_fps": [batch * args.frames / t for t in times],
                           "vs_default": None if base is None else base / float(np.median(times))}
                    rows.append(row)
                    print(f"measured {row}", file=sys.stderr, flush=True)
    variant_report("scan_graphs", rows, summary, args.png, "frames/s",
                   f"one clip's gradients, T = {args.frames}:\nwhat XLA puts in CUDA graphs")


if __name__ == "__main__":
    main()
