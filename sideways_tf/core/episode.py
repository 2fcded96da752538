"""One clip (an episode): the computation step run over T frames inside one compiled loop.

The frame loop is the backend's `scan` (`tf.while_loop` / `jax.lax.scan`), so program size and
memory do not grow with T: nothing but the pipeline state, the stages' non-trainable state, one
gradient accumulator per parameter and the top unit's outputs (label-sized, for the metrics) is
carried from step to step. The loop itself is never differentiated.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

from keras import ops

from sideways_tf.core import backends, pipeline
from sideways_tf.core.schedule import Rule
from sideways_tf.core.stage import Stage

HeadForStep = Callable[[object], pipeline.Head]


class EpisodeResult(NamedTuple):
    """What training on one clip gives.

    Attributes:
      gradients: per stage, its parameters' gradients averaged over its counted steps.
      states: per stage, its non-trainable state after the clip.
      loss: the mean of the top unit's loss over its valid steps (float32).
      top_outputs: `[B, T', *S_{D-1}]`, the valid top outputs, `T' = T - latency`; the
        j-th is the prediction for frame j.
    """

    gradients: list
    states: list
    loss: object
    top_outputs: object


def frame_at(video, step, dtype):
    """`video[:, step]` cast to `dtype`: `[B, T, *F]` -> `[B, *F]`."""
    return ops.cast(ops.take(video, step, axis=1), dtype)


def dim(x, axis: int):
    """`x.shape[axis]`: a Python int when static (always under JAX), else a scalar tensor."""
    return x.shape[axis] if x.shape[axis] is not None else ops.shape(x)[axis]


def _valid_outputs(outputs, latency: int):
    """`[T, B, *O]` -> `[B, T - latency, *O]`."""
    outputs = outputs[latency:]
    return ops.transpose(outputs, [1, 0] + list(range(2, len(outputs.shape))))


def train_episode(
    stages: Sequence[Stage],
    rule: Rule,
    params: Sequence[Sequence],
    states: Sequence[Sequence],
    video,
    head_for_step: HeadForStep,
    activation_shapes: Sequence[Sequence[int]],
    devices: Optional[Sequence[str]] = None,
) -> EpisodeResult:
    """Runs one clip through `rule` and averages the gradients.

    Args:
      stages: the D stages.
      rule: the rule (`schedule.rule`): the pipeline or exact per-frame backprop.
      params: per stage, its trainable values.
      states: per stage, its non-trainable values.
      video: `[B, T, *F]`, float or uint8 (cast frame by frame).
      head_for_step: `head_for_step(s)` is the top unit's loss at step s as a function of its
        output; the caller picks the target of frame `s - rule.latency`.
      activation_shapes: `S_k` (no batch axis) of units 0..D-2.
      devices: None, or one device string per unit.

    Returns:
      An `EpisodeResult`.
    """
    backend = backends.current()
    depth = len(stages)
    dtype = stages[0].compute_dtype
    num_frames = dim(video, 1)
    accumulators = [[ops.zeros_like(p) for p in unit_params] for unit_params in params]
    carry = (
        pipeline.zero_state(dim(video, 0), activation_shapes, dtype),
        [list(s) for s in states],
        accumulators,
        ops.zeros((), "float32"),
    )

    def body(s, carry):
        pipe, states, accumulators, loss_sum = carry
        frame = frame_at(video, s, dtype)
        head = head_for_step(s)
        if rule.synchronous:
            result = pipeline.synchronous_step(stages, rule, params, states, frame, head, devices)
            pipe = pipe._replace(step=pipe.step + 1)
        else:
            pipe, result = pipeline.sideways_step(stages, rule, params, states, pipe, frame, head, devices)
        accumulated = []
        for k, (unit_acc, unit_grads, counts) in enumerate(
            zip(accumulators, result.variable_gradients, result.counted, strict=True)
        ):
            with backend.unit_scope(k, devices):
                accumulated.append(
                    [acc + ops.cast(counts, acc.dtype) * ops.cast(g, acc.dtype)
                     for acc, g in zip(unit_acc, unit_grads, strict=True)]
                )
        new_states = [list(s) for s in result.states]
        return (pipe, new_states, accumulated, loss_sum + result.loss), result.top_output

    (_, states, accumulators, loss_sum), outputs = backend.scan(body, carry, num_frames, dtype)
    gradients = []
    for k, unit_acc in enumerate(accumulators):
        count = ops.maximum(ops.cast(num_frames - rule.first_counted_step(k, depth), "float32"), 1.0)
        gradients.append([acc / ops.cast(count, acc.dtype) for acc in unit_acc])
    num_valid = ops.cast(num_frames - rule.latency, "float32")
    return EpisodeResult(gradients, states, loss_sum / num_valid, _valid_outputs(outputs, rule.latency))


def inference_episode(
    stages: Sequence[Stage],
    rule: Rule,
    params: Sequence[Sequence],
    states: Sequence[Sequence],
    video,
    activation_shapes: Sequence[Sequence[int]],
    devices: Optional[Sequence[str]] = None,
):
    """Predictions for one clip without gradients.

    `"bp"` runs the per-frame network on all frames at once; the sideways modes run the
    depth-parallel pipeline.

    Args:
      stages, rule, params, states, activation_shapes, devices: as in `train_episode`.
      video: `[B, T, *F]`.

    Returns:
      `[B, T', *S_{D-1}]` with `T' = T - rule.latency`: the prediction for frame j at index j.
    """
    backend = backends.current()
    dtype = stages[0].compute_dtype
    if rule.synchronous:
        shape = ops.shape(video)
        frames = ops.cast(ops.reshape(video, (-1,) + tuple(video.shape[2:])), dtype)
        out, _ = pipeline.synchronous_forward(stages, rule, params, states, frames, devices)
        return ops.reshape(out, (shape[0], shape[1]) + tuple(out.shape[1:]))
    def body(s, pipe):
        return pipeline.inference_step(stages, rule, params, states, pipe, frame_at(video, s, dtype), devices)

    _, outputs = backend.scan(body, pipeline.zero_state(dim(video, 0), activation_shapes, dtype), dim(video, 1), dtype)
    return _valid_outputs(outputs, rule.latency)
