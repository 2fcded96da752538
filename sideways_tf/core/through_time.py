"""Exact backprop through time of the network a skip mode's pipeline computes: its exact reference.

In the pipeline, unit k at step s reads `h_{k-1}` and, through a shortcut, `tau(h_{k-2})`, both
produced at step s - 1 (`pipeline.sideways_step`). The two came from different frames: the direct
input from frame `s - k`, the shortcut's from frame `s - k + 1`. So the function of the clip that
the pipeline computes is not the per-frame network with shortcuts read from the same frame: its
top output at step s mixes D - 1 consecutive frames. Its exact gradient is the gradient of the
mean loss over the steps whose top output is valid (`s >= D - 1`, scored against frame
`s - (D - 1)`, as the pipeline scores it), taken through every step of the unrolled clip, with
the weights fixed. `"fa_skip_sideways"` stops the gradient at each shortcut's input, as its rule
does.

On a constant clip this equals exact per-frame backprop of the network with its shortcuts (every
step then sees the same activations), hence the skip modes' pseudo-gradients (`docs/rules.md`).

Memory grows with T: every step's activations are kept for the backward pass. It is a reference
(`SidewaysModel.exact_gradients`), not a training rule.
"""

from __future__ import annotations

from typing import Callable, Sequence

from keras import ops

from sideways_tf.core import backends, pipeline
from sideways_tf.core.episode import EpisodeResult, dim, frame_at
from sideways_tf.core.placement import Placement
from sideways_tf.core.schedule import Rule
from sideways_tf.core.stage import Stage


def unrolled(stages: Sequence[Stage], rule: Rule, params: Sequence[Sequence], states: Sequence[Sequence], video,
             activation_shapes: Sequence[Sequence[int]], devices=None):
    """The pipeline's forward pass over every step of a clip, in one differentiable function.

    Args:
      stages, rule: as in `pipeline.sideways_step` (`rule.shortcuts` decides whether units k >= 2
        read `tau(h_{k-2})`; without `rule.shortcut_gradients` their input is a `stop_gradient`).
      params: per stage, its trainable values.
      states: per stage, its non-trainable values.
      video: `[B, T, *F]` with T known.
      activation_shapes: `S_k` (no batch axis) of units 0..D-2.
      devices: None, or one device string per unit (`backends.unit_scope`).

    Returns:
      `(outputs, new_states)`: the top output of every step, a list of T tensors `[B, *S_{D-1}]`
      (valid from step D - 1 on), and per stage its non-trainable values after the clip (a unit's
      state absorbs only the steps whose input came from real frames).
    """
    backend = backends.current()
    dtype = stages[0].compute_dtype
    activations = list(pipeline.zero_state(dim(video, 0), activation_shapes, dtype).activations)
    current = [list(s) for s in states]
    outputs = []
    for s in range(video.shape[1]):
        produced = []
        for k, stage in enumerate(stages):
            direct = frame_at(video, s, dtype) if k == 0 else activations[k - 1]
            shortcut = activations[k - 2] if (rule.shortcuts and k >= 2) else None
            if shortcut is not None and not rule.shortcut_gradients:
                shortcut = ops.stop_gradient(shortcut)
            with backend.unit_scope(k, devices):
                out, new_state = pipeline.apply_stage(stage, params[k], current[k], direct, shortcut, training=True)
            if s >= k:  # the input came from real frames (`schedule`): the state absorbs this step
                current[k] = list(new_state)
            produced.append(out)
        outputs.append(produced[-1])
        activations = produced[:-1]
    return outputs, current


def train_through_time(stages: Sequence[Stage], rule: Rule, params: Sequence[Sequence], states: Sequence[Sequence],
                       video, frame_target: Callable, top_loss: Callable, activation_shapes: Sequence[Sequence[int]],
                       place: Placement) -> EpisodeResult:
    """Exact gradients of the clip's mean top loss through time (`unrolled`), as an `EpisodeResult`.

    Args:
      stages, rule, params, states, video, activation_shapes: as in `unrolled`.
      frame_target: `frame_target(j)`, the target of frame j.
      top_loss: `top_loss(target, output)`, the loss of one step's top output.
      place: where the units run (its `devices`, for TensorFlow's placement).

    Returns:
      An `EpisodeResult`: per stage its gradients, its state after the clip, the mean loss over the
      valid steps, every step's top output and where it is valid.

    Raises:
      ValueError: when the clip's length is unknown, or no step's top output is valid.
    """
    num_frames, latency = video.shape[1], rule.latency
    if num_frames is None:
        raise ValueError("Exact gradients through time need the clip length T known when tracing; got `video` of "
                         f"shape {tuple(video.shape)}.")
    if num_frames <= latency:
        raise ValueError(f"Exact gradients through time need a clip longer than {latency} frames (a top output "
                         f"must be valid); got T = {num_frames}.")

    def network(per_stage_params):
        outputs, new_states = unrolled(stages, rule, per_stage_params, states, video, activation_shapes,
                                       place.devices)
        losses = [ops.cast(top_loss(frame_target(s - latency), outputs[s]), "float32")
                  for s in range(latency, num_frames)]
        return ops.stack(losses), (outputs, new_states)

    _, (outputs, new_states), loss, (gradients,) = backends.current().value_and_vjp(
        network, [[list(p) for p in params]], head=ops.mean)
    batch = dim(video, 0)
    valid = ops.stack([ops.full((batch,), s >= latency, "bool") for s in range(num_frames)], axis=1)
    return EpisodeResult(gradients=[list(g) for g in gradients], states=new_states, loss=loss,
                         outputs=ops.stack(outputs, axis=1), output_targets=None, output_valid=valid, stream=None,
                         params=[list(p) for p in params], optimizer_state=())
