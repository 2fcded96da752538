"""The GPipe baseline (JAX): exact per-frame backprop, the units pipelined over devices, frames as micro-batches.

What the papers compare Skip-Sideways with on several devices (Skip-Sideways Table 5). The
units of a `"bp"` (or `"sideways"`) model with `devices=` are cut into the same consecutive
groups as depth-parallel training; the T frames of a clip are the micro-batches. The forward
pass runs every micro-batch through the groups (group g works on frame `t - g` at tick t),
each group keeping only its input per frame; then the backward pass runs from the top group
down, recomputing each group's forward from its kept input (GPipe's re-materialisation). Each
phase takes `M + S - 1` ticks for M frames and S devices, so a device idles for a fraction
`(S - 1) / (M + S - 1)` of the clip (the bubble). The gradients are exactly those of `"bp"`: the
mean over frames of each frame's gradient.

On two or more devices the baseline runs on per-device programs, the runtime of depth-parallel
training (`gpipe_programs`), so that the two are compared on equal terms. `runtime="mesh"` runs
it as below, in one program over the model's "stage" mesh axis (`core.backends.jax_stages`),
with a `ppermute` of the boundary activation (forward) or its gradient (backward) per tick. Each
device keeps its group's inputs and sums its gradients in packed buffers of its own, written
outside the switch, so no tick copies another group's buffers (a fair baseline).
"""

from __future__ import annotations

import weakref

import jax
import jax.numpy as jnp
import numpy as np

from sideways_tf.core import backends, schedule, targets
from sideways_tf.core.backends.jax_stages import AXIS, StagePlacement
from sideways_tf.core.pipeline import apply_stage


def bubble(num_frames: int, num_devices: int) -> float:
    """The fraction of a GPipe clip a device idles: `(S - 1) / (M + S - 1)`."""
    return (num_devices - 1) / (num_frames + num_devices - 1)


def _check(model) -> StagePlacement:
    backends.require("jax", "the GPipe baseline")
    if schedule.rule(model.mode, model.depth).shortcuts:
        raise ValueError(f"the GPipe baseline pipelines the plain chain of units: `model.mode` must be 'bp' or "
                         f"'sideways' (no shortcuts); got {model.mode!r}.")
    if model.devices is None:
        raise ValueError("the GPipe baseline pipelines the units over the model's `devices`; build the model with "
                         "devices=[...] (one device per unit, consecutive units grouped).")
    if not model.built:
        raise ValueError("the GPipe baseline needs a built model: call model.build(video_shape) first.")
    if model.losses:
        raise ValueError("the GPipe baseline does not take weight regularizers (the model has "
                         f"{len(model.losses)} regularization losses).")
    place = model.engine.place
    unit_group = list(place.unit_group)
    if unit_group != sorted(unit_group):
        raise ValueError(f"the GPipe baseline needs consecutive units on each device; `devices` is {model.devices!r}.")
    return place


def clip_gradients(model, params, states, video, labels, sample_weight=None):
    """The GPipe gradients of one clip, a pure function of values (for `jax.jit`).

    Args:
      model: a built `SidewaysModel` in `"bp"` or `"sideways"` mode with `devices=`, compiled
        (its loss scores each frame).
      params: the values of `model.trainable_variables`.
      states: the values of `model.non_trainable_variables`.
      video: `[B, T, *F]`.
      labels: `[B, ...]` or `[B, T, ...]`.
      sample_weight: None, `[B]` or `[B, T]`.

    Returns:
      `(gradients, loss)`: one gradient per trainable variable, equal to `model.exact_gradients`,
      and the mean per-frame loss.
    """
    place = _check(model)
    engine = model.engine
    stages = engine.stages
    groups = place.groups()
    num_stages, num_frames = len(groups), video.shape[1]
    per_stage_params = engine.split(params, model.trainable_variables, trainable=True)
    per_stage_states = engine.split(states, model.non_trainable_variables, trainable=False)
    dtype = stages[0].compute_dtype
    per_frame, weights_per_frame = engine.label_layout(labels, sample_weight, num_frames)
    in_shapes = [tuple(video.shape[2:])] + [engine.activation_shapes[g[0] - 1] for g in groups[1:]]
    batch = video.shape[0]

    def run_group(g, p, x):
        for k in groups[g]:
            x, _ = apply_stage(stages[k], p[k], per_stage_states[k], x, training=True)
        return x

    def own(g):
        return [per_stage_params[k] if k in groups[g] else [] for k in range(len(stages))]

    def frame_index(t, backward):
        """This device's micro-batch at tick t (computed from its index on the stage axis)."""
        m = schedule.gpipe_frame(t, jax.lax.axis_index(AXIS), num_stages, num_frames, backward)
        return (m >= 0) & (m < num_frames), jnp.clip(m, 0, num_frames - 1)

    # Each device keeps its group's input of every frame in one row of a packed buffer (groups'
    # inputs differ in shape; group 0 reads the clip instead), so that no branch of the switch
    # passes another group's buffer through (XLA would copy it at every tick).
    row_size = max([batch * int(np.prod(in_shapes[g])) for g in range(1, num_stages)] + [1])

    def as_row(x):
        flat = jnp.ravel(x)
        return jnp.concatenate([flat, jnp.zeros((row_size - flat.size,), dtype)])

    def from_row(row, g):
        return row[:batch * int(np.prod(in_shapes[g]))].reshape((batch,) + in_shapes[g])

    def across_stages(video_, labels_, weights_):
        def frame(m):
            return jax.lax.dynamic_index_in_dim(video_, m, axis=1, keepdims=False).astype(dtype)

        # ---- forward: group g reads frame t - g (group 0) or what group g-1 sent at tick t-1.
        kept = jnp.zeros((num_frames, row_size), dtype)
        incoming = [jnp.zeros((batch,) + in_shapes[g], dtype) for g in range(num_stages)]

        def forward_tick(carry, t):
            kept, incoming = carry
            on, m = frame_index(t, backward=False)

            def work(g):
                x = frame(m) if g == 0 else incoming[g]
                new = {"mine": jnp.zeros((row_size,), dtype) if g == 0 else as_row(x)}
                if g < num_stages - 1:
                    new["out"] = run_group(g, own(g), x)
                return new

            results, row = place.run_stages(work, lambda g: {})
            kept = kept.at[m].set(jnp.where(on, row, kept[m]))
            incoming = [incoming[0]] + [place.share(results[g]["out"], groups[g][-1], [groups[g + 1][0]])
                                        for g in range(num_stages - 1)]
            return (kept, incoming), None

        ticks = jnp.arange(num_frames + num_stages - 1)
        (kept, _), _ = jax.lax.scan(forward_tick, (kept, incoming), ticks)

        # ---- backward: the top group starts with the last frame; group g gets the gradient of
        # its output from group g+1 one tick after group g+1 computed it. Each device sums its
        # group's parameter gradients in one packed buffer (`StagePlacement.pack`).
        accumulators = place.carry_accumulators([[jnp.zeros_like(v) for v in unit] for unit in per_stage_params])
        cotangents = [jnp.zeros((batch,) + in_shapes[g + 1], dtype) for g in range(num_stages - 1)]

        def backward_tick(carry, t):
            accumulators, cotangents, loss_sum = carry
            on, m = frame_index(t, backward=True)
            row = kept[m]

            def work(g):
                x = frame(m) if g == 0 else from_row(row, g)
                if g == num_stages - 1:
                    target = targets.frame_target(labels_, weights_, m, per_frame, weights_per_frame)

                    def loss(p, x_):
                        out = run_group(g, p, x_)
                        return jnp.asarray(model.compute_frame_loss(target["y"], out, target.get("w")), jnp.float32)

                    value, (grads, dx) = jax.value_and_grad(loss, argnums=(0, 1))(own(g), x)
                else:
                    _, pullback = jax.vjp(lambda p, x_: run_group(g, p, x_), own(g), x)
                    grads, dx = pullback(cotangents[g])
                    value = jnp.zeros((), jnp.float32)
                return {"mine": place.pack(g, {k: grads[k] for k in groups[g]}),
                        "message": dx if g > 0 else None, "loss": value}

            results, packed = place.run_stages(work, lambda g: {})
            scale = jnp.where(on, 1.0, 0.0)
            accumulators = accumulators + scale.astype(accumulators.dtype) * packed
            cotangents = [place.share(results[g + 1]["message"] * scale.astype(dtype), groups[g + 1][0],
                                      [groups[g][-1]]) for g in range(num_stages - 1)]
            return (accumulators, cotangents, loss_sum + results[-1]["loss"] * scale), None

        start = (accumulators, cotangents, jnp.zeros((), jnp.float32))
        (accumulators, _, loss_sum), _ = jax.lax.scan(backward_tick, start, ticks)
        gradients = [[a / num_frames for a in unit] for unit in place.unit_accumulators(accumulators)]
        return gradients, place.gather(loss_sum, len(stages) - 1) / num_frames

    gradients, loss = place.wrap(across_stages)(video, labels, sample_weight)
    return engine.merge_gradients(gradients, model.trainable_variables), loss


def gradients(model, video, labels, sample_weight=None) -> list:
    """`clip_gradients` at the model's current weights (`gradient_function`, compiled once per model).

    Returns:
      One gradient per trainable variable of `model` (equal to `model.exact_gradients`).
    """
    params = [v.value for v in model.trainable_variables]
    states = [v.value for v in model.non_trainable_variables]
    return gradient_function(model)(params, states, video, labels, sample_weight)[0]


_COMPILED = weakref.WeakKeyDictionary()


RUNTIMES = ("auto", "programs", "mesh")


def gradient_function(model, runtime: str = "auto"):
    """The GPipe gradients of `model`: `(params, states, video, labels, sample_weight) -> (gradients, loss)`.

    Args:
      model: as in `clip_gradients`.
      runtime: "programs" (one compiled program per device group, driven by a worker each;
        `gpipe_programs`), "mesh" (`jax.jit(clip_gradients)`, one program over the stage mesh),
        or "auto": "programs" where the units span two devices or more.

    One function per model and runtime (kept while the model lives), so repeated calls reuse
    its compilations.

    Raises:
      ValueError: naming `runtime` when it is not one of `RUNTIMES`, and as `clip_gradients`.
    """
    from sideways_tf.parallel import gpipe_programs

    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {RUNTIMES}; got {runtime!r}.")
    _check(model)
    if runtime == "auto":
        runtime = "programs" if len(set(model.devices)) >= 2 else "mesh"
    functions = _COMPILED.setdefault(model, {})
    if runtime not in functions:
        if runtime == "programs":
            functions[runtime] = lambda params, states, video, labels, sample_weight=None: \
                gpipe_programs.clip_gradients(model, params, states, video, labels, sample_weight)
        else:
            functions[runtime] = jax.jit(lambda params, states, video, labels, sample_weight=None: clip_gradients(
                model, params, states, video, labels, sample_weight))
    return functions[runtime]
