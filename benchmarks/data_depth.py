"""Data x depth under JAX: the same global batch trained over N devices as depth, as data x depth, and as data.

    python -m benchmarks.data_depth [--model vgg16] [--mode sideways] [--batch 32] [--frames 32]
        [--resolution 224] [--devices 4] [--steps 3] [--reps 2] [--host_devices N]

Layouts, each timed on `fit` over `--steps` batches of random uint8 clips (after one untimed
`fit` that compiles), optimizer step included:

    one      one device, no distribution
    depth    the units grouped over N devices by `sw.parallel.balance` (`devices=`)
    data_depth  2 replicas x N/2 groups (`sw.parallel.data_and_stages(N // 2)`); each replica its half
             of the batch, gradients all-reduced once per update
    data     N-way data parallelism (`keras.distribution.DataParallel`), the whole model per device

Frames/s are global batch x T x steps over the median `fit` time of `--reps`. `--host_devices N`
splits a CPU into N XLA devices, to check that the script runs (not a speed-up to expect).
"""

from __future__ import annotations

import argparse
import sys
import time

# Importing depth_parallel first sets KERAS_BACKEND and XLA_FLAGS (--host_devices) before JAX starts.
from benchmarks.depth_parallel import random_clips  # isort: skip
from benchmarks.networks import NETWORKS, compiled_network, fusion  # isort: skip
from benchmarks.common import report

# isort: split
import jax
import keras
import numpy as np

import sideways_tf as sw

LAYOUTS = ("one", "depth", "data_depth", "data")


def _distribution(layout: str, names: list):
    if layout == "data_depth":
        return sw.parallel.data_and_stages(len(names) // 2, devices=names)
    if layout == "data":
        return keras.distribution.DataParallel(devices=names)
    return None


def measure(layout: str, args, names: list) -> dict:
    """One layout's row: its groups and frames/s of `fit`."""
    video, labels = random_clips(args.batch * args.steps, args.frames, args.resolution)
    keras.distribution.set_distribution(_distribution(layout, names))
    try:
        devices, groups = None, None
        if layout in ("depth", "data_depth"):
            stages = len(names) if layout == "depth" else len(names) // 2
            per_replica = args.batch if layout == "depth" else args.batch // 2
            plan = sw.parallel.balance(NETWORKS[args.model](args.resolution), video.shape[2:], stages,
                                       fusion=fusion(args.model),
                                       mode=args.mode, batch_size=per_replica)
            devices, groups = plan.devices, [len(g) for g in plan.groups]
        model = compiled_network(args.model, args.mode, args.resolution, devices)
        model.fit(video[:args.batch], labels[:args.batch], batch_size=args.batch, epochs=1, verbose=0, shuffle=False)
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            model.fit(video, labels, batch_size=args.batch, epochs=1, verbose=0, shuffle=False)
            times.append(time.perf_counter() - start)
    finally:
        keras.distribution.set_distribution(None)
    seconds = float(np.median(times))
    return {"layout": layout, "model": args.model, "mode": args.mode, "B": args.batch, "T": args.frames,
            "devices": 1 if layout == "one" else len(names), "groups": groups,
            "fps": args.batch * args.frames * args.steps / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16", choices=list(NETWORKS))
    parser.add_argument("--mode", default="sideways", choices=list(sw.MODES))
    parser.add_argument("--batch", type=int, default=32, help="the global batch of every layout")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="batches per timed fit")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--host_devices", type=int, default=0, help="split the CPU into this many XLA devices")
    args = parser.parse_args()
    if args.devices < 4 or args.devices % 2:
        parser.error(f"--devices must be even and at least 4 (2 replicas x 2 groups or more); got {args.devices}.")
    if args.batch % args.devices:
        parser.error(f"--batch must be a multiple of --devices ({args.devices}); got {args.batch}.")
    if len(jax.devices()) < args.devices:
        parser.error(f"--devices {args.devices}: JAX has {len(jax.devices())} devices ({jax.devices()}).")
    names = [f"{d.platform}:{d.id}" for d in jax.devices()[:args.devices]]
    rows = []
    for layout in args.layouts:
        rows.append(measure(layout, args, names))
        print(f"measured {rows[-1]}", file=sys.stderr, flush=True)
    one = next((r["fps"] for r in rows if r["layout"] == "one"), None)
    for row in rows:
        row["speedup"] = None if one is None else row["fps"] / one
    report("data_depth", rows, ["layout", "model", "mode", "B", "T", "devices", "groups", "fps", "speedup"],
           {"devices": str(jax.devices()[:args.devices])})


if __name__ == "__main__":
    main()
