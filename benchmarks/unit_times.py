"""Per-unit forward + VJP time of the zoo's networks and the depth-parallel speed-up they allow.

    python -m benchmarks.unit_times [--backend tensorflow|jax] [--models vgg8 vgg16] [--batch 8]
        [--resolution 112] [--reps 3] [--devices 2 4 8]

For each unit of the network (as built by `SidewaysModel` in the given mode) this times one
forward pass and VJP at a random input and cotangent of the unit's shapes, the work a unit does
per computation step (`sw.parallel.balance.unit_times`). `sum(unit times) / max(unit time)` is the
ideal speed-up of placing every unit on its own device; for each device count in `--devices`, the
ideal speed-up of the balanced grouping (`sw.parallel.partition`) is reported beside it.
"""

from __future__ import annotations

import argparse

from benchmarks.common import add_backend_flag, report  # sets KERAS_BACKEND from --backend

# isort: split
import sideways_tf as sw  # noqa: E402
from benchmarks.networks import NETWORKS, fusion  # noqa: E402
from sideways_tf.core.stage import build_stages  # noqa: E402
from sideways_tf.parallel.balance import unit_times  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_backend_flag(parser)
    parser.add_argument("--models", nargs="+", default=["vgg8", "vgg16"], choices=list(NETWORKS))
    parser.add_argument("--modes", nargs="+", default=["sideways", "skip_sideways"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--devices", type=int, nargs="+", default=[2, 4, 8])
    args = parser.parse_args()
    rows, summary = [], {}
    frame_shape = (args.resolution, args.resolution, 3)
    for name in args.models:
        for mode in args.modes:
            stages, shapes, _ = build_stages(NETWORKS[name](args.resolution), frame_shape, mode, fusion(name), "auto")
            times = unit_times(stages, shapes, frame_shape, mode, args.batch, args.reps)
            for k, t in enumerate(times):
                rows.append({"model": name, "mode": mode, "unit": k + 1, "ms": t, "share": t / sum(times)})
            summary[f"{name} {mode}: ideal speed-up, one unit per device (sum/max)"] = sum(times) / max(times)
            for n in args.devices:
                if n <= len(times):
                    groups = sw.parallel.partition(times, n)
                    slowest = max(sum(times[k] for k in g) for g in groups)
                    summary[f"{name} {mode}: ideal speed-up on {n} devices, balanced {[len(g) for g in groups]}"] = \
                        sum(times) / slowest
    report("unit_times", rows, ["model", "mode", "unit", "ms", "share"], summary)


if __name__ == "__main__":
    main()
