"""Training throughput (frames per second of `fit`) of every mode, per backend, on one device and on two.

    python -m benchmarks.throughput [--backend tensorflow|jax|both] [--jit_compile] [--frames 32] [--batch 4]
        [--steps 4] [--loss_check_off]

The 8-unit VGG-style net at 112x112 on uint8 clips, fed to `fit` as numpy arrays (the same
input path on both backends). "one device" runs everything on one device; "two devices"
(TensorFlow only) splits this machine's CPU into two logical devices and puts units 1-4 on the
first, 5-8 on the second (`devices=`). Configurations are interleaved over several rounds and the
median is reported, so that ratios come from one run on a shared, noisy machine. `--backend both`
runs each backend in its own process, one after the other, and adds the JAX / TF ratio.
`--loss_check_off` adds each mode with `stop_on_nonfinite_loss=False` to the same rounds: what
the default check of the loss costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from benchmarks.common import add_backend_flag, split_cpu

split_cpu(2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import sideways_tf as sw  # noqa: E402
from benchmarks.common import compiled_model, report, uint8_clips  # noqa: E402

COLUMNS = ["backend", "mode", "placement", "frames_per_s", "seconds"]


def measure(args) -> list[dict]:
    """Every (mode, placement) of the running backend: median seconds per `fit` epoch."""
    placements = {"one device": None}
    if keras.backend.backend() == "tensorflow":
        placements["two devices"] = ["/CPU:0"] * 4 + ["/CPU:1"] * 4
    if args.loss_check_off:  # what the default check of the loss costs, in the same rounds
        placements["one device, no loss check"] = None
    video = uint8_clips(args.batch * args.steps, args.frames)
    labels = np.arange(args.batch * args.steps) % 51
    models = {}
    for placement, devices in placements.items():
        for mode in args.modes:
            model = compiled_model(mode, devices=devices, jit_compile=args.jit_compile or "auto",
                                   stop_on_nonfinite_loss="no loss check" not in placement)
            model.fit(video[:args.batch], labels[:args.batch], batch_size=args.batch, verbose=0)  # compile, warm up
            models[(mode, placement)] = model
    times = {key: [] for key in models}
    for _ in range(args.rounds):
        for key, model in models.items():
            start = time.perf_counter()
            model.fit(video, labels, batch_size=args.batch, shuffle=False, verbose=0)
            times[key].append(time.perf_counter() - start)
    frames = args.steps * args.batch * args.frames
    return [{"backend": keras.backend.backend(), "mode": mode, "placement": placement,
             "frames_per_s": frames / statistics.median(times[(mode, placement)]),
             "seconds": statistics.median(times[(mode, placement)])} for (mode, placement) in models]


def summarize(rows: list[dict], modes) -> dict:
    fps = {(r["backend"], r["mode"], r["placement"]): r["frames_per_s"] for r in rows}
    backends = sorted({r["backend"] for r in rows}, reverse=True)
    summary = {}
    for backend in backends:
        if "bp" in modes:
            for mode in modes:
                summary[f"{backend}: {mode} / bp (one device)"] = (
                    fps[(backend, mode, "one device")] / fps[(backend, "bp", "one device")])
        for mode in modes:
            if (backend, mode, "two devices") in fps:
                summary[f"{backend}: {mode} two devices / one device"] = (
                    fps[(backend, mode, "two devices")] / fps[(backend, mode, "one device")])
    if set(backends) == {"tensorflow", "jax"}:
        for mode in modes:
            summary[f"{mode}: jax / tensorflow (one device)"] = (
                fps[("jax", mode, "one device")] / fps[("tensorflow", mode, "one device")])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backend_flag(parser, choices=["tensorflow", "jax", "both"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="batches per timed fit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(sw.MODES), choices=sw.MODES)
    parser.add_argument("--jit_compile", action="store_true", help="compile with XLA (TensorFlow; JAX always does)")
    parser.add_argument("--loss_check_off", action="store_true",
                        help="also time each mode with stop_on_nonfinite_loss=False (the check's cost)")
    parser.add_argument("--rows_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend == "both":
        rows = []
        for backend in ("tensorflow", "jax"):
            argv = [a for a in sys.argv[1:] if a not in ("--backend", "both", "--backend=both")]
            out = subprocess.run([sys.executable, "-m", "benchmarks.throughput", *argv, "--backend", backend,
                                  "--rows_only"], capture_output=True, text=True, check=True).stdout
            rows += json.loads(next(line for line in out.splitlines() if line.startswith("ROWS "))[5:])
            print(f"measured {backend}", file=sys.stderr, flush=True)
    else:
        rows = measure(args)
        if args.rows_only:
            print("ROWS " + json.dumps(rows))
            return
    report("throughput", rows, COLUMNS, summarize(rows, args.modes))


if __name__ == "__main__":
    main()
