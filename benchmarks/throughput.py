"""Training throughput (frames per second of `fit`) of every mode, on one device and on two.

    python -m benchmarks.throughput [--frames 32] [--batch 4] [--steps 4] [--rounds 3]

The 8-unit VGG-style net at 112x112 on uint8 clips. "one device" runs everything on /CPU:0;
"two devices" splits this machine's CPU into two logical devices and puts units 1-4 on the
first, 5-8 on the second (`devices=`). Configurations are interleaved over several rounds and
the median is reported, so that ratios come from one run on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import split_cpu

split_cpu(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import sideways_tf as sw  # noqa: E402
from benchmarks.common import compiled_model, report, uint8_clips  # noqa: E402

PLACEMENTS = {"one device": None, "two devices": ["/CPU:0"] * 4 + ["/CPU:1"] * 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="batches per timed fit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(sw.MODES), choices=sw.MODES)
    args = parser.parse_args()
    video = uint8_clips(args.batch * args.steps, args.frames)
    labels = tf.constant(np.arange(args.batch * args.steps) % 51)
    dataset = tf.data.Dataset.from_tensor_slices((video, labels)).batch(args.batch).cache()
    models = {}
    for placement, devices in PLACEMENTS.items():
        for mode in args.modes:
            model = compiled_model(mode, devices=devices)
            model.fit(dataset.take(1), verbose=0)  # trace and warm up
            models[(mode, placement)] = model
    times = {key: [] for key in models}
    for _ in range(args.rounds):
        for key, model in models.items():
            start = time.perf_counter()
            model.fit(dataset, verbose=0)
            times[key].append(time.perf_counter() - start)
    frames = args.steps * args.batch * args.frames
    rows = [{"mode": mode, "placement": placement, "frames_per_s": frames / statistics.median(times[(mode, placement)]),
             "seconds": statistics.median(times[(mode, placement)])} for (mode, placement) in models]
    fps = {(r["mode"], r["placement"]): r["frames_per_s"] for r in rows}
    summary = {}
    if "bp" in args.modes:
        for mode in args.modes:
            summary[f"{mode} / bp (one device)"] = fps[(mode, "one device")] / fps[("bp", "one device")]
    for mode in args.modes:
        summary[f"{mode}: two devices / one device"] = fps[(mode, "two devices")] / fps[(mode, "one device")]
    report("throughput", rows, ["mode", "placement", "frames_per_s", "seconds"], summary)


if __name__ == "__main__":
    main()
