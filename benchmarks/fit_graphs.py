"""One GPU: `model.fit` under JAX with its steps compiled by Keras, by the package, and with `XLA_FLAGS`.

    python -m benchmarks.fit_graphs [--models efficientnetb0] [--modes sideways] [--batch 8]
        [--frames 32] [--resolution 112] [--steps 8] [--epochs 3] [--variants keras package xla_flags]
        [--png PATH]

Keras compiles `fit`'s steps with `jax.jit` and no XLA options. On NVIDIA GPUs the package compiles
them itself instead, with convolutions in CUDA graphs (`train_step.keras_function`,
`core.backends.jax_graphs`); a user can also set the options for the whole process in `XLA_FLAGS`
before JAX starts (`docs/backends.md`). For each model, mode and batch this runs `fit` on random
uint8 clips (NumPy arrays, as a user would pass them) in a fresh process per variant: `keras`
(Keras compiles the steps: the package's options switched off in that process, XLA's defaults),
`package` (as the package runs by default) and `xla_flags` (`XLA_FLAGS` holding
`jax_graphs.xla_flags()`), and reports frames/s: the median over the epochs after the first (which
compiles), each epoch timed from the end of the one before, and the ratio to `keras`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"

import numpy as np  # noqa: E402

from benchmarks.common import uint8_clips  # noqa: E402
from benchmarks.networks import NETWORKS  # noqa: E402
from benchmarks.report import variant_report  # noqa: E402
from sideways_tf.core.backends import jax_graphs  # noqa: E402

VARIANTS = ("keras", "package", "xla_flags")


def epoch_fps(name: str, mode: str, batch: int, frames: int, resolution: int, steps: int, epochs: int,
              variant: str) -> dict:
    """In this process: frames/s of each `fit` epoch after the first, and the device."""
    import jax
    import keras

    from benchmarks.networks import compiled_network

    if variant == "keras":  # no options: `own_step` leaves the steps to Keras' `jax.jit`
        jax_graphs.compiler_options = lambda device=None: {}
    model = compiled_network(name, mode, resolution)
    video = uint8_clips(batch * steps, frames, resolution)
    labels = np.arange(len(video)) % 51
    ends = [time.perf_counter()]
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    model.fit(video, labels, batch_size=batch, epochs=epochs, shuffle=False, verbose=0, callbacks=[timer])
    seconds = np.diff(ends)[1:]
    return {"device": str(jax.devices()[0]), "epochs_fps": [steps * batch * frames / s for s in seconds]}


def measure(variant: str, args, name: str, mode: str, batch: int) -> dict:
    """One row: `fit` run in a fresh process as `variant` has it (`VARIANTS`)."""
    env = dict(os.environ)
    if variant == "xla_flags":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {jax_graphs.xla_flags()}".strip()
    command = [sys.executable, "-m", "benchmarks.fit_graphs", "--child", name, mode, str(batch), variant,
               "--frames", str(args.frames), "--resolution", str(args.resolution), "--steps", str(args.steps),
               "--epochs", str(args.epochs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {"model": name, "mode": mode, "B": batch, "T": args.frames, "variant": variant,
            "fps": float(np.median(found["epochs_fps"])), **found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["efficientnetb0"], choices=list(NETWORKS))
    parser.add_argument("--modes", nargs="+", default=["sideways"])
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--steps", type=int, default=8, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per process; the first compiles")
    parser.add_argument("--png", help="also save a plot here")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "MODE", "B", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (the first compiles); got {args.epochs}")
    if args.child:
        name, mode, batch, variant = args.child
        print(json.dumps(epoch_fps(name, mode, int(batch), args.frames, args.resolution, args.steps, args.epochs,
                                   variant)))
        return
    rows = []
    for name in args.models:
        for mode in args.modes:
            for batch in args.batch:
                found = {variant: measure(variant, args, name, mode, batch) for variant in args.variants}
                for row in found.values():
                    row["vs_default"] = row["fps"] / found["keras"]["fps"] if "keras" in found else None
                    rows.append(row)
                    print(f"measured {row}", file=sys.stderr, flush=True)
    variant_report("fit_graphs", rows, {"device": rows[0]["device"], "xla_flags": jax_graphs.xla_flags()}, args.png,
                   "frames/s of fit", f"model.fit under JAX, T = {args.frames}: steps compiled by Keras,\nby the "
                   "package, or with XLA_FLAGS")


if __name__ == "__main__":
    main()
