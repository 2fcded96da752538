"""The GPipe baseline on per-device programs: the same runtime as depth-parallel training.

Each device group gets compiled functions of its own (its forward pass over one frame, and its
backward pass over one frame recomputing the forward from the kept input), holding only its
units' parameters and gradient sums on its device. A worker per group (`core.workers`) runs
GPipe's schedule for its group with the frames as micro-batches:

    forward:   for m in 0..M-1:    x_m <- frame m (group 0) or what group g-1 sent; keep x_m;
                                   send forward_g(x_m) to group g+1           (not the top group)
    backward:  for m in M-1..0:    dy_m <- what group g+1 sent (the top group: the loss of frame m);
                                   grads += vjp of forward_g at x_m; send dx_m to group g-1

Group g starts frame m as soon as group g-1 has queued it, so the pipeline fills and drains by
itself: `core.schedule.clock_cycles` gives the resulting ticks, the table of the schedule. The gradients are
those of exact per-frame backprop (`"bp"`): the mean over frames of each frame's gradient.
"""

from __future__ import annotations

import weakref

import jax
import jax.numpy as jnp

from sideways_tf.core import targets, workers
from sideways_tf.core.backends.jax_graphs import GraphJit, traced
from sideways_tf.core.pipeline import apply_stage
from sideways_tf.core.programs import ProgramsPlacement


def _functions(model, g: int, units: tuple, device, top: bool, per_frame: bool, weights_per_frame: bool) -> dict:
    """Group g's compiled forward and backward steps over one frame on `device`, with the options of the
    rules' group steps (`jax_graphs`: on NVIDIA GPUs, convolutions in CUDA graphs)."""
    stages = model.engine.stages
    dtype = stages[0].compute_dtype

    def source(x, m):
        """The group's input: frame m of the clip for group 0, else what the group below sent."""
        return jnp.take(x, m, axis=1).astype(dtype) if g == 0 else x

    def forward(params, states, x, m):
        x = source(x, m)
        for k, p, s in zip(units, params, states, strict=True):
            x, _ = apply_stage(stages[k], p, s, x, training=True)
        return x

    def add(sums, grads):
        return [[a + d for a, d in zip(sa, sd, strict=True)] for sa, sd in zip(sums, grads, strict=True)]

    def pull(function, params, x, cotangent=None):
        """`(value, parameter gradients, input gradient)` of `function(params, x)` (a scalar's when
        `cotangent` is None); group 0's input is the clip, not differentiated."""
        if g == 0:
            value, pullback = jax.vjp(lambda p: function(p, x), params)
            return value, pullback(jnp.ones_like(value) if cotangent is None else cotangent)[0], None
        value, pullback = jax.vjp(function, params, x)
        return (value, *pullback(jnp.ones_like(value) if cotangent is None else cotangent))

    def backward(params, states, x, m, cotangent, sums):
        _, grads, dx = pull(lambda p, x_: forward(p, states, x_, m), params, x, cotangent)
        return add(sums, grads), dx

    def top_backward(params, states, x, m, labels, sample_weight, sums, loss_sum):
        target = targets.frame_target(labels, sample_weight, m, per_frame, weights_per_frame)

        def loss(p, x_):
            out = forward(p, states, x_, m)
            return jnp.asarray(model.compute_frame_loss(target["y"], out, target.get("w")), jnp.float32)

        value, grads, dx = pull(loss, params, x)
        return add(sums, grads), loss_sum + value, dx

    found = {"backward": GraphJit(top_backward if top else backward, device, donate_argnums=(6,) if top else (5,))}
    if not top:
        found["forward"] = GraphJit(forward, device)
    return found


_COMPILED = weakref.WeakKeyDictionary()


def clip_gradients(model, params, states, video, labels, sample_weight=None):
    """The GPipe gradients of one clip on one program per device group (see the module docstring).

    Arguments and result as `gpipe.clip_gradients`: one gradient per trainable variable (each
    on its group's device) and the mean per-frame loss (on the top group's device).
    """
    engine = model.engine
    place = ProgramsPlacement(model.devices)  # the rules' placement: each group's units and device
    unit_group, devices = place.unit_group, place.group_devices
    groups = [tuple(k for k in range(len(unit_group)) if unit_group[k] == g) for g in range(place.num_groups)]
    num_groups, num_frames = len(groups), int(video.shape[1])
    per_stage_params = engine.split(params, model.trainable_variables, trainable=True)
    per_stage_states = engine.split(states, model.non_trainable_variables, trainable=False)
    per_frame, weights_per_frame = engine.label_layout(labels, sample_weight, num_frames)
    compiled = _COMPILED.setdefault(model, {})
    key = (per_frame, weights_per_frame)
    if key not in compiled:
        compiled[key] = [_functions(model, g, units, device, g == num_groups - 1, per_frame, weights_per_frame)
                         for g, (units, device) in enumerate(zip(groups, devices, strict=True))]
    nested = traced((params, video))  # inside another trace: the functions without XLA options
    functions = [{name: function.variant(nested) for name, function in found.items()} for found in compiled[key]]
    mine = [jax.device_put(([list(per_stage_params[k]) for k in units], [list(per_stage_states[k]) for k in units]),
                           device) for units, device in zip(groups, devices, strict=True)]
    clip = jax.device_put(video, devices[0])
    top_inputs = jax.device_put((labels, sample_weight), devices[-1])

    def work(g, boxes):
        p, s = mine[g]
        top = g == num_groups - 1
        kept = []
        for m in range(num_frames):
            x = clip if g == 0 else boxes.get(("forward", g, m))
            kept.append(x)
            if not top:
                boxes.put(("forward", g + 1, m), jax.device_put(functions[g]["forward"](p, s, x, m), devices[g + 1]))
        sums = [[jnp.zeros_like(v) for v in unit] for unit in p]
        loss_sum = jnp.zeros((), jnp.float32)
        for m in reversed(range(num_frames)):
            if top:
                sums, loss_sum, dx = functions[g]["backward"](p, s, kept[m], m, *top_inputs, sums, loss_sum)
            else:
                cotangent = boxes.get(("backward", g, m))
                sums, dx = functions[g]["backward"](p, s, kept[m], m, cotangent, sums)
            kept[m] = None
            if g > 0:
                boxes.put(("backward", g - 1, m), jax.device_put(dx, devices[g - 1]))
        return sums, loss_sum

    results = workers.run(num_groups, work, jax.config.jax_default_matmul_precision)
    gradients = [None] * len(engine.stages)
    for units, (sums, _) in zip(groups, results, strict=True):
        for k, unit_sums in zip(units, sums, strict=True):
            gradients[k] = [a / num_frames for a in unit_sums]
    return engine.merge_gradients(gradients, model.trainable_variables), results[-1][1] / num_frames
