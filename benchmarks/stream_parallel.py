"""Streams over devices (JAX): a stateful model's training step with updates every L frames, one device against N.

    python -m benchmarks.stream_parallel [--models vgg16] [--mode sideways] [--batch 8] [--frames 32]
        [--update_every 32 8 1] [--devices 2] [--resolution 112] [--reps 5] [--optimizer adam|sgd] [--png PATH]
        [--host_devices N]

For every model and L: a model with `stateful=True, update_every=L` takes chunks of T frames of
the same B streams through `train_on_batch` (the whole step: the frames, the optimizer's updates
inside the chunk, the loss and metrics), on one device and with its units grouped over N devices
by `sw.parallel.balance` (one program per group; between two updates the host applies the
optimizer, `docs/depth_parallel.md`). Frames/s are B * T over the median time of `--reps` steps,
each of which waits for its loss. Both models start from the same weights and see the same
chunks; the largest relative difference of their weights after the timed steps is printed.
`--host_devices N` splits a CPU into N XLA devices (overheads only, not a speed-up to expect).
"""

from __future__ import annotations

import argparse
import sys
import time

# depth_parallel sets XLA_FLAGS and KERAS_BACKEND first
from benchmarks.depth_parallel import _relative_error, parse_with_device_flags

from benchmarks.networks import NETWORKS, fusion  # isort: skip

# isort: split
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import sideways_tf as sw  # noqa: E402
from benchmarks.common import report  # noqa: E402

OPTIMIZERS = {"adam": lambda: keras.optimizers.Adam(1e-4), "sgd": lambda: keras.optimizers.SGD(1e-3, momentum=0.9)}


def _model(name: str, mode: str, resolution: int, update_every: int, optimizer: str,
           devices=None) -> sw.SidewaysModel:
    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(NETWORKS[name](resolution), mode=mode, fusion=fusion(name), devices=devices, stateful=True,
                             update_every=update_every)
    model.compile(optimizer=OPTIMIZERS[optimizer](),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _seconds_per_step(model, chunks, labels, reps: int) -> float:
    """Median wall time of `train_on_batch` over `reps` chunks (after one untimed chunk that compiles)."""
    model.train_on_batch(chunks[0], labels)
    times = []
    for i in range(reps):
        start = time.perf_counter()
        model.train_on_batch(chunks[(i + 1) % len(chunks)], labels)  # returns the loss: waits for the step
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(name: str, mode: str, batch: int, frames: int, update_every: int, num_devices: int, resolution: int,
            reps: int, optimizer: str = "adam") -> dict:
    """One row: a stateful step's frames/s on one device and on `num_devices` (balanced)."""
    frame_shape = (resolution, resolution, 3)
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, size=(batch, frames) + frame_shape, dtype=np.uint8) for _ in range(2)]
    labels = np.repeat((np.arange(batch) % 51)[:, None], frames, axis=1)
    plan = sw.parallel.balance(NETWORKS[name](resolution), frame_shape, num_devices, mode=mode, fusion=fusion(name),
                               batch_size=batch)
    one = _model(name, mode, resolution, update_every, optimizer)
    placed = _model(name, mode, resolution, update_every, optimizer, plan.devices)
    for model in (one, placed):
        model.build((batch, frames) + frame_shape)
    placed.set_weights(one.get_weights())
    seconds_placed = _seconds_per_step(placed, chunks, labels, reps)
    seconds_one = _seconds_per_step(one, chunks, labels, reps)
    return {"model": name, "mode": mode, "B": batch, "T": frames, "update_every": update_every, "optimizer": optimizer,
            "devices": num_devices, "groups": [len(g) for g in plan.groups],
            "runtime": "programs" if placed.engine.programs else "one program",
            "one_device_fps": batch * frames / seconds_one, "depth_parallel_fps": batch * frames / seconds_placed,
            "speedup": seconds_one / seconds_placed, "ideal_speedup": plan.ideal_speedup,
            "of_ideal": seconds_one / seconds_placed / plan.ideal_speedup,
            "weights_max_rel_err": _relative_error(placed.get_weights(), one.get_weights())}


def plot(path: str, rows) -> None:
    """Measured against ideal speed-up per update window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']} B={r['B']}\nL={r['update_every']}" for r in rows]
    x = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 3.6))
    axis.bar(x - 0.2, [r["speedup"] for r in rows], 0.4, label="measured")
    axis.bar(x + 0.2, [r["ideal_speedup"] for r in rows], 0.4, label="ideal (sum / max group)")
    axis.axhline(1.0, color="gray", lw=0.8)
    axis.set_xticks(x, labels, fontsize=8)
    axis.set_title(f"stateful training step, speed-up over one device ({rows[0]['devices']} devices)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["vgg16"], choices=list(NETWORKS))
    parser.add_argument("--mode", default="sideways", choices=["sideways", "skip_sideways", "fa_skip_sideways"])
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--update_every", type=int, nargs="+", default=[32, 8, 1])
    parser.add_argument("--optimizer", default="adam", choices=list(OPTIMIZERS),
                        help="adam (as the papers train); sgd with momentum changes weights linearly in the "
                             "gradients, so the weights' difference measures the gradients' (Adam amplifies "
                             "the rounding of near-zero gradients)")
    args = parse_with_device_flags(parser)
    rows = []
    for name in args.models:
        for batch in args.batch:
            for every in args.update_every:
                rows.append(measure(name, args.mode, batch, args.frames, every, args.devices, args.resolution,
                                    args.reps, args.optimizer))
                print(f"measured {rows[-1]}", file=sys.stderr, flush=True)
    columns = ["model", "mode", "B", "T", "update_every", "optimizer", "groups", "runtime", "one_device_fps",
               "depth_parallel_fps", "speedup", "ideal_speedup", "of_ideal", "weights_max_rel_err"]
    report("stream_parallel", rows, columns, {"devices": str(jax.devices()[:args.devices])})
    if args.png:
        plot(args.png, rows)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
