"""One computation step of the depth-parallel pipeline, as a function `(state, frame) -> (state, outputs)`.

At step s every unit works at once on a different frame: unit k reads what unit k-1 (and, in
the skip modes, unit k-2 through tau) produced at step s-1, and the gradient messages sent to it
at step s-1; it takes the VJP of its own function at its current input and sends its messages
on, to arrive at step s+1. Nothing in a step depends on another unit's work in the same step,
so with `devices` every unit runs on its own device concurrently.

Units are numbered 0..D-1 here. Shapes: frames `[B, *F]`, activations `[B, *S_k]`.
"""

from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple, Optional, Sequence

import tensorflow as tf

from sideways_tf.core import schedule
from sideways_tf.core.autodiff import value_and_vjp
from sideways_tf.core.stage import Stage

Head = Callable[[tf.Tensor], tf.Tensor]


class PipelineState(NamedTuple):
    """What travels between computation steps.

    Attributes:
      step: int32 scalar, the index of the next step (frames consumed so far).
      activations: `h_k` produced at the previous step by units 0..D-2, `[B, *S_k]`.
      gradients: for units 0..D-2, the sum of the gradient messages about `h_k` sent to
        them at the previous step, `[B, *S_k]` (zero while invalid).
    """

    step: tf.Tensor
    activations: tuple
    gradients: tuple


class StepResult(NamedTuple):
    """What one training step yields besides the new state.

    Attributes:
      top_output: the top unit's output at this step, `[B, *S_{D-1}]`.
      loss: the top unit's loss at this step, zero before its output is valid.
      variable_gradients: per unit, the gradients of its trainable variables.
      counted: per unit, a bool scalar: whether this step counts for its update.
    """

    top_output: tf.Tensor
    loss: tf.Tensor
    variable_gradients: list
    counted: list


def zero_state(batch_size, activation_shapes: Sequence[Sequence[int]], dtype) -> PipelineState:
    """The state before any frame has entered: zeros everywhere, step 0.

    Args:
      batch_size: B, a Python int or a scalar tensor.
      activation_shapes: `S_k` (no batch axis) for units 0..D-2.
      dtype: the activations' dtype.
    """
    zeros = tuple(tf.zeros(tf.concat([[batch_size], list(shape)], 0), dtype) for shape in activation_shapes)
    return PipelineState(step=tf.constant(0, tf.int32), activations=zeros, gradients=zeros)


def on_device(devices: Optional[Sequence[str]], k: int):
    """A `tf.device` scope for unit k's work, or a no-op without placement."""
    return tf.device(devices[k]) if devices else contextlib.nullcontext()


def _commit_state_if(valid: tf.Tensor, layer, snapshot) -> None:
    """Undoes the non-trainable updates (batch-norm statistics, ...) of an invalid step."""
    for variable, old in zip(layer.non_trainable_variables, snapshot):
        variable.assign(tf.where(valid, variable.value, old))


def _snapshot(layer) -> list:
    return [tf.identity(v.value) for v in layer.non_trainable_variables]


def _unit_inputs(k: int, mode: str, state: PipelineState, frame: tf.Tensor):
    direct = frame if k == 0 else state.activations[k - 1]
    shortcut = state.activations[k - 2] if (mode in schedule.SKIP_MODES and k >= 2) else None
    return direct, shortcut


def sideways_step(
    stages: Sequence[Stage],
    mode: str,
    state: PipelineState,
    frame: tf.Tensor,
    head: Head,
    devices: Optional[Sequence[str]] = None,
    training: bool = True,
) -> tuple[PipelineState, StepResult]:
    """One training step of `"sideways"`, `"skip_sideways"` or `"fa_skip_sideways"`.

    Args:
      stages: the D stages.
      mode: one of the three sideways modes.
      state: the state after the previous step.
      frame: `x_s`, `[B, *F]`, already cast to the compute dtype.
      head: the top unit's loss at this step as a function of its output (unmasked).
      devices: None, or one device string per unit.
      training: passed to the units (dropout, batch norm).

    Returns:
      `(new_state, StepResult)`. The caller averages `variable_gradients` over `counted` steps.
    """
    depth = len(stages)
    step = state.step
    outputs, direct_msgs, shortcut_msgs, var_grads, counted = [], [], [], [], []
    for k, stage in enumerate(stages):
        direct, shortcut = _unit_inputs(k, mode, state, frame)
        counts = step >= schedule.first_counted_step(k, depth, mode)
        input_valid = step >= schedule.first_valid_input_step(k, mode)
        with on_device(devices, k):
            primals = [] if k == 0 else [direct]
            shortcut_is_primal = shortcut is not None and mode == "skip_sideways"
            if shortcut_is_primal:
                primals.append(shortcut)

            def unit_fn(*args, _k=k, _direct=direct, _shortcut=shortcut, _stage=stage, _sp=shortcut_is_primal):
                d = _direct if _k == 0 else args[0]
                sc = args[-1] if _sp else _shortcut
                return _stage(d, sc, training=training)

            snapshot = _snapshot(stage)
            if k == depth - 1:
                valid_top = tf.cast(counts, frame.dtype)
                out, loss, input_grads, grads = value_and_vjp(
                    unit_fn, primals, stage.trainable_variables, head=lambda o: head(o) * valid_top
                )
            else:
                out, _, input_grads, grads = value_and_vjp(
                    unit_fn, primals, stage.trainable_variables, cotangent=state.gradients[k]
                )
            if snapshot:
                _commit_state_if(input_valid, stage, snapshot)
            mask = tf.cast(counts, out.dtype)
            direct_msgs.append(input_grads[0] * mask if k > 0 else None)
            shortcut_msgs.append(input_grads[1] * mask if shortcut_is_primal else None)
        outputs.append(out)
        var_grads.append(grads)
        counted.append(counts)
    new_gradients = []
    for k in range(depth - 1):
        message = direct_msgs[k + 1]
        if k + 2 < depth and shortcut_msgs[k + 2] is not None:
            # The shortcut message becomes valid one step before the direct one; a sum
            # with an invalid part is invalid, hence zero.
            complete = step + 1 >= schedule.first_counted_step(k, depth, mode)
            message = (message + shortcut_msgs[k + 2]) * tf.cast(complete, message.dtype)
        new_gradients.append(message)
    new_state = PipelineState(step=step + 1, activations=tuple(outputs[:-1]), gradients=tuple(new_gradients))
    return new_state, StepResult(outputs[-1], loss, var_grads, counted)


def inference_step(
    stages: Sequence[Stage],
    mode: str,
    state: PipelineState,
    frame: tf.Tensor,
    devices: Optional[Sequence[str]] = None,
) -> tuple[PipelineState, tf.Tensor]:
    """One step of depth-parallel inference in a sideways mode (no gradients, no state updates).

    Args:
      stages, mode, state, devices: as in `sideways_step`.
      frame: `x_s`, `[B, *F]`.

    Returns:
      `(new_state, top_output)`; the output is valid from step `D - 1` on.
    """
    outputs = []
    for k, stage in enumerate(stages):
        direct, shortcut = _unit_inputs(k, mode, state, frame)
        with on_device(devices, k):
            outputs.append(stage(direct, shortcut, training=False))
    new_state = PipelineState(step=state.step + 1, activations=tuple(outputs[:-1]), gradients=state.gradients)
    return new_state, outputs[-1]


def synchronous_forward(
    stages: Sequence[Stage],
    frame: tf.Tensor,
    shortcuts: bool,
    stop_shortcut_gradients: bool = False,
    devices: Optional[Sequence[str]] = None,
    training: bool = False,
) -> tf.Tensor:
    """The per-frame network: every unit on the same frame, in order, like ordinary backprop.

    Args:
      stages: the D stages.
      frame: `[N, *F]`.
      shortcuts: whether units k >= 2 read `tau(h_{k-2})` of the same frame.
      stop_shortcut_gradients: `stop_gradient` on the shortcuts (the FA ablation's limit).
      devices: None, or one device string per unit.
      training: passed to the units.

    Returns:
      The top unit's output, `[N, *S_{D-1}]`.
    """
    hidden = []
    for k, stage in enumerate(stages):
        direct = frame if k == 0 else hidden[k - 1]
        shortcut = hidden[k - 2] if (shortcuts and k >= 2) else None
        if shortcut is not None and stop_shortcut_gradients:
            shortcut = tf.stop_gradient(shortcut)
        with on_device(devices, k):
            hidden.append(stage(direct, shortcut, training=training))
    return hidden[-1]


def synchronous_step(
    stages: Sequence[Stage],
    frame: tf.Tensor,
    head: Head,
    shortcuts: bool,
    stop_shortcut_gradients: bool = False,
    devices: Optional[Sequence[str]] = None,
    training: bool = True,
) -> StepResult:
    """Exact backprop of the per-frame network on one frame (`"bp"`, and the reference).

    Args:
      stages, shortcuts, stop_shortcut_gradients, devices, training: as in
        `synchronous_forward`.
      frame: `x_s`, `[B, *F]`.
      head: the loss of this frame's prediction.

    Returns:
      A `StepResult` in which every unit counts.
    """
    variables = [v for stage in stages for v in stage.trainable_variables]

    def network():
        return synchronous_forward(stages, frame, shortcuts, stop_shortcut_gradients, devices, training)

    out, loss, _, grads = value_and_vjp(network, [], variables, head=head)
    per_stage, start = [], 0
    for stage in stages:
        n = len(stage.trainable_variables)
        per_stage.append(grads[start:start + n])
        start += n
    return StepResult(out, loss, per_stage, [tf.constant(True)] * len(stages))
