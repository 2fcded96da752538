"""One clip (an episode): the computation step run over T frames inside the graph.

The frame loop is a `tf.while_loop`, so graph size and memory do not grow with T: nothing but
the pipeline state, one gradient accumulator per variable and the top unit's outputs
(label-sized, for the metrics) is carried from step to step.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import tensorflow as tf

from sideways_tf.core import pipeline, schedule
from sideways_tf.core.stage import Stage

HeadForStep = Callable[[tf.Tensor], pipeline.Head]

# Steps of the frame loop TensorFlow may run at once. More than one lets independent work of
# later steps (reading frames, the per-frame forward in "bp") start early, at the cost of
# holding several steps' activations: memory would then depend on the schedule, not on D.
PARALLEL_ITERATIONS = 1


class EpisodeResult(NamedTuple):
    """What training on one clip gives.

    Attributes:
      gradients: per unit, its variables' gradients averaged over its counted steps.
      loss: the mean of the top unit's loss over its valid steps.
      top_outputs: `[B, T', *S_{D-1}]`, the valid top outputs, `T' = T - latency`; the
        j-th is the prediction for frame j.
    """

    gradients: list
    loss: tf.Tensor
    top_outputs: tf.Tensor


def frame_at(video: tf.Tensor, step, dtype) -> tf.Tensor:
    """`video[:, step]` cast to `dtype`: `[B, T, *F]` -> `[B, *F]`."""
    return tf.cast(tf.gather(video, step, axis=1), dtype)


def _stack_valid(outputs: tf.TensorArray, latency: int) -> tf.Tensor:
    stacked = outputs.stack()[latency:]  # [T', B, ...]
    perm = [1, 0] + list(range(2, len(stacked.shape)))
    return tf.transpose(stacked, perm)


def train_episode(
    stages: Sequence[Stage],
    mode: str,
    video: tf.Tensor,
    head_for_step: HeadForStep,
    activation_shapes: Sequence[Sequence[int]],
    devices: Optional[Sequence[str]] = None,
    reference: Optional[str] = None,
) -> EpisodeResult:
    """Runs one clip through the training rule of `mode` and averages the gradients.

    Args:
      stages: the D stages.
      mode: one of `schedule.MODES`.
      video: `[B, T, *F]`, float or uint8 (cast frame by frame).
      head_for_step: `head_for_step(s)` is the top unit's loss at step s as a function of its
        output; the caller picks the target of frame `s - latency`.
      activation_shapes: `S_k` (no batch axis) of units 0..D-2.
      devices: None, or one device string per unit.
      reference: None for the rule of `mode`; `"exact"` for exact per-frame backprop of the
        same network (with its shortcuts in the skip modes, stop-gradient on them in
        `"fa_skip_sideways"`), which is what `"bp"` runs.

    Returns:
      An `EpisodeResult`.
    """
    depth = len(stages)
    dtype = stages[0].compute_dtype
    synchronous = mode == "bp" or reference == "exact"
    rule = "bp" if synchronous else mode
    latency = schedule.output_latency(depth, rule)
    num_frames = tf.shape(video)[1]
    batch_size = tf.shape(video)[0]
    state = pipeline.zero_state(batch_size, activation_shapes, dtype)
    accumulators = [[tf.zeros_like(v.value) for v in stage.trainable_variables] for stage in stages]
    outputs = tf.TensorArray(dtype, size=num_frames, element_shape=None)

    def body(s, state, accumulators, loss_sum, outputs):
        frame = frame_at(video, s, dtype)
        head = head_for_step(s)
        if synchronous:
            result = pipeline.synchronous_step(
                stages,
                frame,
                head,
                shortcuts=mode in schedule.SKIP_MODES,
                stop_shortcut_gradients=mode == "fa_skip_sideways",
                devices=devices,
            )
            state = state._replace(step=state.step + 1)
        else:
            state, result = pipeline.sideways_step(stages, mode, state, frame, head, devices)
        accumulated = []
        for k, (unit_acc, unit_grads, counts) in enumerate(
            zip(accumulators, result.variable_gradients, result.counted)
        ):
            with pipeline.on_device(devices, k):
                accumulated.append([acc + tf.cast(counts, acc.dtype) * g for acc, g in zip(unit_acc, unit_grads)])
        accumulators = accumulated
        return s + 1, state, accumulators, loss_sum + result.loss, outputs.write(s, result.top_output)

    _, _, accumulators, loss_sum, outputs = tf.while_loop(
        lambda s, *_: s < num_frames,
        body,
        (tf.constant(0), state, accumulators, tf.zeros([], dtype), outputs),
        parallel_iterations=PARALLEL_ITERATIONS,
    )
    gradients = []
    for k, unit_acc in enumerate(accumulators):
        count = tf.cast(num_frames - schedule.first_counted_step(k, depth, rule), dtype)
        count = tf.maximum(count, 1.0)
        gradients.append([acc / tf.cast(count, acc.dtype) for acc in unit_acc])
    num_valid = tf.cast(num_frames - latency, dtype)
    return EpisodeResult(gradients, loss_sum / num_valid, _stack_valid(outputs, latency))


def inference_episode(
    stages: Sequence[Stage],
    mode: str,
    video: tf.Tensor,
    activation_shapes: Sequence[Sequence[int]],
    devices: Optional[Sequence[str]] = None,
) -> tf.Tensor:
    """Predictions for one clip without gradients.

    `"bp"` runs the per-frame network on all frames at once; the sideways modes run the
    depth-parallel pipeline.

    Args:
      stages, mode, activation_shapes, devices: as in `train_episode`.
      video: `[B, T, *F]`.

    Returns:
      `[B, T', *S_{D-1}]` with `T' = T - latency`: the prediction for frame j at index j.
    """
    depth = len(stages)
    dtype = stages[0].compute_dtype
    if mode == "bp":
        shape = tf.shape(video)
        frames = tf.cast(tf.reshape(video, tf.concat([[-1], shape[2:]], 0)), dtype)
        out = pipeline.synchronous_forward(stages, frames, shortcuts=False, devices=devices)
        return tf.reshape(out, tf.concat([shape[:2], tf.shape(out)[1:]], 0))
    num_frames = tf.shape(video)[1]
    state = pipeline.zero_state(tf.shape(video)[0], activation_shapes, dtype)
    outputs = tf.TensorArray(dtype, size=num_frames)

    def body(s, state, outputs):
        state, out = pipeline.inference_step(stages, mode, state, frame_at(video, s, dtype), devices)
        return s + 1, state, outputs.write(s, out)

    _, _, outputs = tf.while_loop(
        lambda s, *_: s < num_frames, body, (tf.constant(0), state, outputs), parallel_iterations=PARALLEL_ITERATIONS
    )
    return _stack_valid(outputs, schedule.output_latency(depth, mode))
