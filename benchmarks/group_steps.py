"""Where a depth-parallel clip's time goes on per-device programs: each group's step, the transfers, the loop.

    python -m benchmarks.group_steps [--model vgg16|vgg8|resnet50] [--mode sideways] [--batch 32] [--frames 32]
        [--resolution 224] [--devices 2] [--reps 3]

Each group's compiled step is run T times on its own (its inbox fixed, nothing waiting on
another group), then every group's so at once, each from a thread of its own (near the slowest
group: the hosts' launches overlap); the boundary pieces are moved T times on their own, and the
whole clip is run with each dispatch (`core.frame_loop.DISPATCH`); the host's time per dispatched
step and transfer is timed too. If the loop is much slower than the slowest group alone plus a
transfer, the groups are waiting on each other or on the host.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

os.environ["KERAS_BACKEND"] = "jax"

from benchmarks.common import report  # noqa: E402
from benchmarks.depth_parallel import clip_and_plan, values  # noqa: E402
from benchmarks.networks import NETWORKS, compiled_network  # noqa: E402

# isort: split
import jax  # noqa: E402
import keras  # noqa: E402

from sideways_tf.core import frame_loop, targets  # noqa: E402
from sideways_tf.core.frame_loop import DISPATCH  # noqa: E402
from sideways_tf.core.group_steps import Clip  # noqa: E402


def _best(function, reps: int) -> float:
    """The least wall time of `function()` (which waits for its results) over `reps` calls after one."""
    function()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _host_seconds(function, calls: int) -> float:
    """The host's time per call of `calls` dispatches that `function` makes (its final wait excluded).

    `function` must end with `jax.block_until_ready`; that wait is patched out while timing."""
    real = jax.block_until_ready
    jax.block_until_ready = lambda x: x
    try:
        start = time.perf_counter()
        result = function()
        seconds = time.perf_counter() - start
    finally:
        jax.block_until_ready = real
    jax.block_until_ready(result)
    return seconds / calls


def prepared(model, video, labels):
    """A placed model's training clip ready to run (`ProgramsPlacement.prepare`): per group its compiled
    step and inputs, for a clip with one label per clip."""
    engine = model.engine
    params = engine.split([v.value for v in model.trainable_variables], model.trainable_variables, True)
    states = engine.split([v.value for v in model.non_trainable_variables], model.non_trainable_variables, False)
    clip = Clip(engine.rule(), lambda y, w, s: targets.frame_target(y, w, s, False, False),
                lambda target, out: model.compute_frame_loss(target["y"], out, target.get("w")), training=True)
    return engine.place.prepare(engine.stages, clip, params, states, video, engine.activation_shapes, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16", choices=list(NETWORKS))
    parser.add_argument("--mode", default="sideways", choices=["sideways", "skip_sideways", "fa_skip_sideways"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--ahead", type=int, default=frame_loop.AHEAD,
                        help="frames a group's worker may dispatch ahead of its device (core.frame_loop.AHEAD)")
    parser.add_argument("--profile", choices=DISPATCH, help="also print the host's profile of one clip so dispatched")
    args = parser.parse_args()
    frame_loop.AHEAD = args.ahead
    keras.mixed_precision.set_global_policy(args.dtype)
    video, labels, plan = clip_and_plan(args.model, args.mode, args.batch, args.frames, args.resolution, args.devices)
    model = compiled_network(args.model, args.mode, args.resolution, plan.devices)
    model.build(video.shape)
    place = model.engine.place
    ready = prepared(model, video, labels)
    row = {"model": args.model, "mode": args.mode, "B": args.batch, "T": args.frames, "res": args.resolution,
           "dtype": args.dtype, "groups": [list(g) for g in plan.groups],
           "balance_unit_ms": [round(t, 3) for t in plan.unit_ms],
           "balance_group_ms": [round(t, 3) for t in plan.group_ms]}
    outs, alones = [], []
    for g in range(len(ready.groups)):
        state = {"carry": ready.carries[g], "inbox": dict(ready.inboxes[g])}

        def alone(g=g, state=state):
            step = ready.steps[g]
            for _ in range(args.frames):
                state["carry"], out = step(ready.params[g], state["carry"], state["inbox"], *ready.inputs[g])
                # The step donated its spare inbox pieces: the pieces it sent stand in for them.
                state["inbox"].update({name: out[sent] for name, sent in step.spare.items()})
            jax.block_until_ready(state["carry"])
            return out

        outs.append(jax.tree.map(jax.numpy.copy, alone()))  # later runs donate the pieces they send
        alones.append(alone)
        row[f"group{g}_step_ms"] = round(1e3 * _best(alone, args.reps) / args.frames, 3)
        row[f"group{g}_dispatch_ms"] = round(1e3 * _host_seconds(alone, args.frames), 3)
    # Every group's loop alone, all at once on threads of their own: if this is near the slowest
    # group alone, the hosts' launches overlap; near their sum, they are serialised on the host.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(len(alones)) as pool:
        def together():
            for future in [pool.submit(alone) for alone in alones]:
                future.result()

        row["groups_together_ms"] = round(1e3 * _best(together, args.reps) / args.frames, 3)
    routes = [(g, name, h) for g, group in enumerate(ready.groups) for name, h in group.sends]
    pieces = [outs[g][name] for g, name, _ in routes]
    where = [ready.groups[h].device for _, _, h in routes]
    row["crossing_mb"] = round(sum(p.nbytes for p in pieces) / 2**20, 2)

    def transfers():
        for _ in range(args.frames):
            moved = jax.device_put(pieces, where)
        jax.block_until_ready(moved)

    row["transfer_ms"] = round(1e3 * _best(transfers, args.reps) / args.frames, 3)
    row["transfer_dispatch_ms"] = round(1e3 * _host_seconds(transfers, args.frames), 3)
    function = model.gradient_function()
    current = values(model)
    for dispatch in DISPATCH:
        place.dispatch = dispatch
        seconds = _best(lambda: jax.block_until_ready(function(*current, video, labels, None)), args.reps)
        row[f"loop_{dispatch}_ms_per_frame"] = round(1e3 * seconds / args.frames, 3)
    if args.profile:
        place.dispatch = args.profile
        profile = cProfile.Profile()
        profile.runcall(lambda: jax.block_until_ready(function(*current, video, labels, None)))
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    slowest = max(row[f"group{g}_step_ms"] for g in range(len(ready.groups)))
    row["bound_ms_per_frame"] = round(slowest, 3)
    report("group_steps", [row], list(row), {"devices": str(jax.devices()[:args.devices])})


if __name__ == "__main__":
    main()
