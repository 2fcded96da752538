"""Per-unit forward + VJP time of the zoo's networks and the depth-parallel speed-up they allow.

    python -m benchmarks.unit_times [--backend tensorflow|jax] [--models vgg8 vgg16] [--batch 8]
        [--resolution 112] [--reps 3]

For each unit of the network (as built by `SidewaysModel` in the given mode) this times one
forward pass and VJP at a random input and cotangent of the unit's shapes, the work a unit does
per computation step. `sum(unit times) / max(unit time)` is the ideal speed-up of placing every
unit on its own device: it bounds what `devices=` can give for this split.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import add_backend_flag, report  # sets KERAS_BACKEND from --backend

# isort: split
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import sideways_tf as sw  # noqa: E402
from sideways_tf.core import backends, pipeline  # noqa: E402

BUILDERS = {"vgg8": lambda: sw.models.vgg8(51), "vgg16": lambda: sw.models.vgg16(51)}


def _random(shape, rng):
    return ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))


def unit_times(name: str, mode: str, batch: int, resolution: int, reps: int) -> list[float]:
    """Median seconds of one forward + VJP of every unit, on the running backend."""
    backend = backends.current()
    rng = np.random.default_rng(0)
    model = sw.SidewaysModel(BUILDERS[name](), mode=mode)
    model.build((batch, None, resolution, resolution, 3))
    params, states = model.engine.current_values()
    inputs = [(None, resolution, resolution, 3)] + [(None, *s) for s in model.activation_shapes]
    times = []
    for k, stage in enumerate(model.stages):
        direct = _random((batch, *inputs[k][1:]), rng)
        shortcut = _random((batch, *inputs[k - 1][1:]), rng) if stage.has_shortcut else None
        cotangent = _random((batch, *(model.activation_shapes + [model.prediction_shape])[k]), rng)

        def work(p, s, direct, shortcut, cotangent, stage=stage, first=k == 0):
            # Unit 1 needs no gradient for its input frame, as in the pipeline.
            def fn(p, *inputs):
                d = direct if first else inputs[0]
                return pipeline.apply_stage(stage, p, s, d, shortcut if len(inputs) < 2 else inputs[1], True)

            primals = [p] + ([] if first else [direct]) + ([] if shortcut is None else [shortcut])
            out, new_state, _, grads = backend.value_and_vjp(fn, primals, cotangent=cotangent)
            return out, new_state, grads

        compiled = backend.compile_function(work)
        args = (params[k], states[k], direct, shortcut, cotangent)
        np.asarray(compiled(*args)[0])
        samples = []
        for _ in range(reps):
            start = time.perf_counter()
            out = compiled(*args)
            [np.asarray(x) for x in [out[0], *out[2][0]]]
            samples.append(time.perf_counter() - start)
        times.append(statistics.median(samples))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backend_flag(parser)
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
