"""Per-unit forward + VJP time of the zoo's networks and the depth-parallel speed-up they allow.

    python -m benchmarks.unit_times [--models vgg8 vgg16] [--batch 8] [--resolution 112] [--reps 3]

For each unit of the network (as built by `SidewaysModel` in the given mode) this times one
forward pass and VJP at a random input and cotangent of the unit's shapes, the work a unit does
per computation step. `sum(unit times) / max(unit time)` is the ideal speed-up of placing every
unit on its own device: it bounds what `devices=` can give for this split.
"""

from __future__ import annotations

import argparse
import statistics
import time

import tensorflow as tf  # noqa: E402
from sideways_tf.core.autodiff import value_and_vjp  # noqa: E402

import sideways_tf as sw  # noqa: E402
from benchmarks.common import report

BUILDERS = {"vgg8": lambda: sw.models.vgg8(51), "vgg16": lambda: sw.models.vgg16(51)}


def unit_times(name: str, mode: str, batch: int, resolution: int, reps: int) -> list[float]:
    model = sw.SidewaysModel(BUILDERS[name](), mode=mode)
    model.build((batch, None, resolution, resolution, 3))
    inputs = [(None, resolution, resolution, 3)] + [(None, *s) for s in model.activation_shapes]
    times = []
    for k, stage in enumerate(model.stages):
        direct = tf.random.normal((batch, *inputs[k][1:]))
        shortcut = tf.random.normal((batch, *inputs[k - 1][1:])) if stage.has_shortcut else None
        out_shape = (batch, *(model.activation_shapes + [model.prediction_shape])[k])
        cotangent = tf.random.normal(out_shape)
        # Unit 1 needs no gradient for its input frame, as in the pipeline.
        primals = [] if k == 0 else [direct] if shortcut is None else [direct, shortcut]

        @tf.function
        def work(primals, cotangent, stage=stage, frame=direct):
            out, _, input_grads, var_grads = value_and_vjp(
                lambda *p: stage(*(p or [frame]), training=True), primals, stage.trainable_variables,
                cotangent=cotangent,
            )
            return [out, *input_grads, *var_grads]

        work(primals, cotangent)
        samples = []
        for _ in range(reps):
            start = time.perf_counter()
            [t.numpy() for t in work(primals, cotangent)]
            samples.append(time.perf_counter() - start)
        times.append(statistics.median(samples))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--modes", nargs="+", default=["sideways", "skip_sideways"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rows, summary = [], {}
    for name in args.models:
        for mode in args.modes:
            times = unit_times(name, mode, args.batch, args.resolution, args.reps)
            for k, t in enumerate(times):
                rows.append({"model": name, "mode": mode, "unit": k + 1, "ms": 1000 * t, "share": t / sum(times)})
            summary[f"{name} {mode}: ideal depth-parallel speed-up sum/max"] = sum(times) / max(times)
    report("unit_times", rows, ["model", "mode", "unit", "ms", "share"], summary)


if __name__ == "__main__":
    main()
