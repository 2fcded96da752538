"""Memory per GPU with units over devices (JAX): each device's peak while training, against its group's share.

    python -m benchmarks.depth_memory [--model vgg16] [--mode sideways] [--batch 32] [--frames 32]
        [--resolution 224] [--devices 2] [--dtype float32|mixed_bfloat16] [--steps 2] [--png PATH]

Fresh processes (a device's peak, `memory_stats()["peak_bytes_in_use"]`, only ever grows): one
groups the units over N devices by time (`sw.parallel.balance`); one trains the model on one
device for `--steps` `train_on_batch` calls (Adam) and reads its peak `P1`; one trains the same
model with its units over the N devices and reads each device's peak `P_g`. Each run also notes
every device's bytes in use and peak after building and after each step (`timeline`): the first
step's peak includes what XLA's autotuning of convolutions allocates while it compiles (it runs
candidate algorithms on scratch buffers on the device), so a peak reached in step 1 and not
raised after is the compiler's, not the training's. On GPUs each training run is therefore made
twice: a first process (one step) fills an autotuning cache on disk
(`--xla_gpu_per_fusion_autotune_cache_dir`), and the measured process reads its choices from it
and autotunes nothing; the first process' peaks are reported too (`with_autotuning`).

A group's share of the one-device peak is `(P1 - clip - S) * f_g + S_g + clip`, where `clip` is
the clip's bytes on a device, `S_g` the optimizer state on the group's device (the slots of the
parameters it updates) and `S` their sum, and `f_g` is the group's fraction of the groups'
footprints: each group's compiled step (XLA's memory analysis: arguments, outputs less what they
alias, temporaries; the clip left out). `share_by_footprint_gb` is the share without `S` apart.
`peak / share` near 1 says each device holds its own group and nothing more; the sum of the
peaks against `P1` says what the split costs in all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Optional

MODELS = ("vgg8", "vgg16", "resnet50")
GB = 2.0**30


def _worker(args) -> dict:
    """Runs in a fresh process: the plan, or one training run's peaks."""
    os.environ["KERAS_BACKEND"] = "jax"
    if args.host_devices:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.host_devices}"
    import jax
    import keras
    import numpy as np

    import sideways_tf as sw
    from benchmarks.networks import NETWORKS, fusion

    keras.mixed_precision.set_global_policy(args.dtype)
    frame_shape = (args.resolution, args.resolution, 3)
    if args.worker == "plan":
        plan = sw.parallel.balance(NETWORKS[args.model](args.resolution), frame_shape, args.devices, mode=args.mode,
                                   fusion=fusion(args.model),
                                   batch_size=args.batch)
        return {"devices": list(plan.devices), "groups": [list(g) for g in plan.groups],
                "ideal_speedup": plan.ideal_speedup}
    devices = json.loads(args.placement) if args.worker == "placed" else None
    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(NETWORKS[args.model](args.resolution), mode=args.mode, fusion=fusion(args.model),
                             devices=devices)
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    video = np.random.default_rng(0).integers(0, 256, (args.batch, args.frames) + frame_shape, dtype=np.uint8)
    labels = np.arange(args.batch) % 51
    used = jax.devices()[:args.devices if devices else 1]
    timeline = {}

    def note(point: str) -> None:  # each device's bytes in use and peak so far (and with --phases, in live arrays)
        stats = [d.memory_stats() or {} for d in used]
        timeline[point] = [[round(s.get(k, 0) / GB, 3) for k in ("bytes_in_use", "peak_bytes_in_use")]
                           for s in stats]
        if args.phases:
            live = jax.live_arrays()
            for d, row in zip(used, timeline[point], strict=True):
                row.append(round(sum(x.nbytes // len(x.devices()) for x in live if d in x.devices()) / GB, 3))

    model.build(video.shape)
    note("built")
    current = [0]
    if args.phases and devices:
        _watch_phases(lambda phase: note(f"step {current[0]}: after {phase}"))
    if args.dispatch and devices:
        model.engine.place.dispatch = args.dispatch
    if args.ahead:
        from sideways_tf.core import frame_loop

        frame_loop.AHEAD = args.ahead
    if args.sync_frames and devices:
        _sync_frames()
    for step in range(args.steps):
        current[0] = step + 1
        model.train_on_batch(video, labels)
        note(f"step {step + 1}")
    slots = [v.value for v in model.optimizer.variables]  # the optimizer's state, where it lives
    row = {"peak_bytes": [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in used],
           "optimizer_bytes": [sum(x.nbytes for x in slots if x.devices() == {d}) for d in used],
           "clip_bytes": int(video.nbytes), "timeline_gb_in_use_and_peak": timeline}
    if devices:
        row["footprints"] = _footprints(model, video, labels)
    return row


def _watch_phases(note) -> None:
    """Notes each device's peak after each phase of a step on per-device programs, each waited for:
    the clip's setup (carries and inboxes made), its frames, the episode's gradients, the update.
    The waits keep one phase from overlapping the next, so these peaks can be below the real ones;
    they say which phase raises a device's peak."""
    import jax

    from sideways_tf.core import group_optimizer, programs
    from sideways_tf.core.backends import jax_graphs

    def wrap(owner, name: str, arrays) -> None:
        original = getattr(owner, name)

        def wrapped(*a, **k):
            result = original(*a, **k)
            tree = arrays(a, result)
            if not jax_graphs.traced(tree):  # Keras' shape inference traces the step once
                jax.block_until_ready([x for x in jax.tree.leaves(tree)
                                       if isinstance(x, jax.Array) and not x.is_deleted()])
                note(name)
            return result

        setattr(owner, name, wrapped)

    wrap(programs.ProgramsPlacement, "prepare", lambda a, ready: (ready.carries, ready.inboxes))
    wrap(programs.ProgramsPlacement, "run", lambda a, _: (a[1].carries, a[1].inboxes))
    wrap(programs.ProgramsPlacement, "train_episode", lambda a, result: result)
    wrap(group_optimizer.GroupOptimizer, "apply", lambda a, result: result)


def _sync_frames() -> None:
    """Each group's step waits until it has run (no frame dispatched ahead of the device): a peak
    that falls with it comes from steps in flight at once."""
    import jax

    from sideways_tf.core import programs
    from sideways_tf.core.backends import jax_graphs

    original = programs.ProgramsPlacement.prepare

    def prepare(*a, **k):
        ready = original(*a, **k)
        if not jax_graphs.traced((ready.carries, ready.inboxes)):
            for g, step in enumerate(ready.steps):
                ready.steps[g] = waiting = lambda *x, step=step: jax.block_until_ready(step(*x))
                waiting.lower = step.lower
        return ready

    programs.ProgramsPlacement.prepare = prepare


def _footprints(model, video, labels) -> list:
    """Per group, its compiled step's bytes (XLA's memory analysis), the clip left out."""
    from benchmarks.group_steps import prepared

    ready = prepared(model, video, labels)
    sizes = []
    for g in range(len(ready.groups)):
        args = (ready.params[g], ready.carries[g], ready.inboxes[g], *ready.inputs[g])
        memory = ready.steps[g].lower(*args).compile().memory_analysis()
        clip_bytes = video.nbytes if ready.inputs[g][0] is not None else 0
        sizes.append(int(memory.argument_size_in_bytes + memory.output_size_in_bytes
                         - memory.alias_size_in_bytes + memory.temp_size_in_bytes - clip_bytes))
    return sizes


def _run(args, worker: str, placement=None, steps: Optional[int] = None, cache: Optional[str] = None) -> dict:
    """One worker in a fresh process (`steps` training steps; autotuning results kept in `cache`); its JSON."""
    values = {**vars(args), "steps": steps or args.steps}
    command = [sys.executable, "-m", "benchmarks.depth_memory", "--worker", worker] + [
        f"--{name}={values[name]}" for name in ("model", "mode", "batch", "frames", "resolution", "devices",
                                                 "dtype", "steps", "host_devices", "ahead")
        if values[name]] + (["--phases"] if args.phases else []) + (
        ["--sync_frames"] if args.sync_frames else []) + ([f"--dispatch={args.dispatch}"] if args.dispatch else [])
    if placement is not None:
        command.append(f"--placement={json.dumps(placement)}")
    env = dict(os.environ)
    if cache:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_gpu_per_fusion_autotune_cache_dir={cache}".strip()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def shares(one_peak: int, clip: int, footprints, optimizer_bytes=None) -> list:
    """Each group's share of the one-device peak: `(one_peak - clip - S) * f_g + S_g + clip`.

    `f_g` is the group's fraction of the steps' footprints, `S_g` the optimizer state on its
    device (its slots live with the parameters its group updates, not by footprint) and `S`
    their sum (None: no optimizer state counted apart).
    """
    total = sum(footprints)
    state = optimizer_bytes or [0] * len(footprints)
    return [(one_peak - clip - sum(state)) * f / total + s + clip for f, s in zip(footprints, state, strict=True)]


def plot(path: str, row: dict) -> None:
    """Each device's peak beside its group's share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(row["peak_gb"]))
    figure, axis = plt.subplots(figsize=(2.2 + 1.4 * len(x), 3.4))
    tuned = row.get("with_autotuning")
    if tuned:
        axis.bar(x - 0.2, tuned["peak_gb"], 0.4, color="lightgray", label="peak while XLA autotunes (first run)")
    axis.bar(x - 0.2, row["peak_gb"], 0.4, label="peak while training")
    axis.bar(x + 0.2, row["share_gb"], 0.4, label="group's share of the one-device peak")
    axis.axhline(row["one_device_peak_gb"], color="gray", lw=0.8, ls="--", label="one device's peak")
    axis.set_xticks(x, [f"device {g}\nunits {u}" for g, u in enumerate(row["groups"])], fontsize=8)
    axis.set_ylabel("GB")
    axis.set_title(f"{row['model']} {row['res']}x{row['res']}, B={row['B']}, T={row['T']}, {row['dtype']}", fontsize=9)
    axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16", choices=MODELS)
    parser.add_argument("--mode", default="sideways", choices=["sideways", "skip_sideways", "fa_skip_sideways"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--steps", type=int, default=2, help="train_on_batch calls before the peaks are read")
    parser.add_argument("--png", help="also plot each device's peak against its share")
    parser.add_argument("--host_devices", type=int, default=0,
                        help="split a CPU into N XLA devices (a smoke test: the CPU reports no peaks)")
    parser.add_argument("--autotune_cache", help="folder of XLA's autotuning results (default: a new temporary one)")
    parser.add_argument("--phases", action="store_true",
                        help="also note each device's peak after each phase of a step (waited for; in `timeline`)")
    parser.add_argument("--dispatch", choices=["workers", "threads", "plain"],
                        help="how the placed run dispatches its groups' steps (default: the model's)")
    parser.add_argument("--ahead", type=int, help="frames a group's worker may dispatch ahead of its device "
                        "(default: core.frame_loop.AHEAD)")
    parser.add_argument("--sync_frames", action="store_true",
                        help="each group's step waits until it has run (a diagnostic: steps in flight at once)")
    parser.add_argument("--worker", choices=["plan", "one", "placed"], help=argparse.SUPPRESS)
    parser.add_argument("--placement", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return
    from benchmarks.report import report

    plan = _run(args, "plan")
    cache = None if args.host_devices else (args.autotune_cache or tempfile.mkdtemp(prefix="autotune_"))
    first = {}
    if cache:  # the runs that autotune, filling the cache the measured runs read
        first = {"one": _run(args, "one", steps=1, cache=cache),
                 "placed": _run(args, "placed", plan["devices"], steps=1, cache=cache)}
    one = _run(args, "one", cache=cache)
    placed = _run(args, "placed", plan["devices"], cache=cache)
    clip = placed["clip_bytes"]
    if None in one["peak_bytes"] + placed["peak_bytes"]:
        print(json.dumps({"benchmark": "depth_memory", "footprints": placed["footprints"],
                          "error": "these devices report no peak memory (memory_stats): run on GPUs"}))
        return
    share = shares(one["peak_bytes"][0], clip, placed["footprints"], placed["optimizer_bytes"])
    row = {"model": args.model, "mode": args.mode, "res": args.resolution, "B": args.batch, "T": args.frames,
           "dtype": args.dtype, "groups": plan["groups"], "one_device_peak_gb": one["peak_bytes"][0] / GB,
           "peak_gb": [round(p / GB, 3) for p in placed["peak_bytes"]],
           "share_gb": [round(s / GB, 3) for s in share],
           "peak_over_share": [round(p / s, 3) for p, s in zip(placed["peak_bytes"], share, strict=True)],
           "sum_of_peaks_over_one": sum(placed["peak_bytes"]) / one["peak_bytes"][0],
           "clip_gb": clip / GB, "footprint_gb": [round(f / GB, 3) for f in placed["footprints"]],
           "optimizer_gb": [round(b / GB, 3) for b in placed["optimizer_bytes"]],
           "share_by_footprint_gb": [round(s / GB, 3) for s in shares(one["peak_bytes"][0], clip,
                                                                      placed["footprints"])]}
    if first:
        row["with_autotuning"] = {"one_device_peak_gb": round(first["one"]["peak_bytes"][0] / GB, 3),
                                  "peak_gb": [round(p / GB, 3) for p in first["placed"]["peak_bytes"]]}
    report("depth_memory", [row], list(row), {"steps": args.steps,
                                              "one_device_timeline": one["timeline_gb_in_use_and_peak"],
                                              "timeline": placed["timeline_gb_in_use_and_peak"],
                                              "autotune_cache": cache})
    if args.png:
        plot(args.png, row)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
