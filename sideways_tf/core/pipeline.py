"""One computation step of the depth-parallel pipeline, as a pure function `(state, frame) -> (state, outputs)`.

At step s every unit works at once on a different frame: unit k reads what unit k-1 (and, in
the skip modes, unit k-2 through tau) produced at step s-1, and the gradient messages sent to it
at step s-1; it takes the VJP of its own function at its current input and sends its messages
on, to arrive at step s+1. Nothing in a step depends on another unit's work in the same step,
so with `devices` every unit runs on its own device concurrently (`placement`: under TensorFlow
each unit in its `tf.device`, under JAX each device's group in one program over a mesh axis).

Everything is explicit: each stage's parameters (`params[k]`, its trainable values) and
non-trainable state (`states[k]`: batch-norm statistics, RNG seeds) come in as tensors and the
new state goes out, so the same code runs inside `tf.while_loop` and `jax.lax.scan`.

Units are numbered 0..D-1 here. Shapes: frames `[B, *F]`, activations `[B, *S_k]`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

from keras import ops

from sideways_tf.core import backends
from sideways_tf.core.placement import Placement, add_gradients
from sideways_tf.core.schedule import Rule
from sideways_tf.core.stage import Stage

Head = Callable[[object], object]
"""`head(output)`: the top unit's scalar loss for its output `[B, *O]`."""


class PipelineState(NamedTuple):
    """What travels between computation steps.

    Attributes:
      steps: `[B]` int32, per slot the frames its current video has fed in so far (the
        index of its next step). Validity is per slot: a slot restarted by a new video
        fills its pipeline again while the others go on.
      activations: `h_k` produced at the previous step by units 0..D-2, `[B, *S_k]`.
      gradients: for units 0..D-2, the sum of the gradient messages about `h_k` sent to
        them at the previous step, `[B, *S_k]` (zero while invalid).
    """

    steps: object
    activations: tuple
    gradients: tuple


class StepResult(NamedTuple):
    """What one training step yields besides the new pipeline state.

    Attributes:
      top_output: the top unit's output at this step, `[B, *S_{D-1}]`.
      loss: the top unit's loss at this step over its valid slots (zero where none is).
      accumulators: the accumulators given to the step plus this step's gradients, in the
        same form; slots that do not count contribute nothing (their messages and top loss
        are masked out).
      counted: per stage, `[B]` bool: which slots count for its update at this step.
      states: per stage, its non-trainable state after this step.
    """

    top_output: object
    loss: object
    accumulators: list
    counted: list
    states: list


def zero_state(batch_size, activation_shapes: Sequence[Sequence[int]], dtype) -> PipelineState:
    """The state before any frame has entered: zeros everywhere, step 0.

    Args:
      batch_size: B, a Python int or a scalar tensor.
      activation_shapes: `S_k` (no batch axis) for units 0..D-2.
      dtype: the activations' dtype.
    """
    zeros = tuple(ops.zeros((batch_size,) + tuple(shape), dtype) for shape in activation_shapes)
    return PipelineState(steps=ops.zeros((batch_size,), "int32"), activations=zeros, gradients=zeros)


def per_slot(mask, x):
    """`[B]` mask -> `x.dtype`, shaped `[B, 1, ..., 1]` to broadcast against `x` `[B, ...]`."""
    return ops.reshape(ops.cast(mask, x.dtype), (-1,) + (1,) * (len(x.shape) - 1))


def restart(state: PipelineState, starts) -> PipelineState:
    """Slots where `starts` (`[B]` bool) begin a new video: zero activations and messages, step 0.

    The other slots are left as they are (a per-example reset).
    """
    keep = ops.logical_not(starts)
    return PipelineState(
        steps=ops.where(starts, ops.zeros_like(state.steps), state.steps),
        activations=tuple(a * per_slot(keep, a) for a in state.activations),
        gradients=tuple(g * per_slot(keep, g) for g in state.gradients),
    )


def apply_stage(stage: Stage, params: Sequence, state: Sequence, direct, shortcut=None, training: bool = False):
    """Stage k's function with explicit parameters and state.

    Args:
      stage: the stage.
      params: its trainable values, in `stage.trainable_variables` order.
      state: its non-trainable values, in `stage.non_trainable_variables` order.
      direct: `h_{k-1}` (or the frame), `[B, *S]`.
      shortcut: `h_{k-2}` or None.
      training: passed to the unit (dropout, batch norm).

    Returns:
      `(h_k, new_state)`.
    """
    return stage.stateless_call(list(params), list(state), direct, shortcut, training=training)


def _keep_if(valid, new: Sequence, old: Sequence) -> list:
    """The new non-trainable values where `valid`, else the old ones (an invalid step leaves no trace)."""
    return [ops.where(valid, n, o) for n, o in zip(new, old, strict=True)]


def _masked(head: Head, valid) -> Head:
    """The top loss, seen only through the slots where `valid` (`[B]` bool).

    The other slots' outputs are constants (no gradient), and the loss is zero when no slot
    is valid. (Keras losses cannot take a `[B]` weight against every target shape, hence the
    masking of the output rather than of the loss.)
    """

    def loss(out):
        kept = per_slot(valid, out)
        masked = out * kept + ops.stop_gradient(out) * (1 - kept)
        return ops.cast(head(masked), "float32") * ops.cast(ops.any(valid), "float32")

    return loss


def _unit_inputs(k: int, rule: Rule, state: PipelineState, frame):
    direct = frame if k == 0 else state.activations[k - 1]
    shortcut = state.activations[k - 2] if (rule.shortcuts and k >= 2) else None
    return direct, shortcut


def readers(k: int, rule: Rule, depth: int) -> list[int]:
    """The units that read `h_k` at the next step: unit k+1, and unit k+2 through a shortcut."""
    return [k + 1] + ([k + 2] if rule.shortcuts and k + 2 < depth else [])


def sends_shortcut_message(k: int, rule: Rule) -> bool:
    """Whether unit k sends a gradient message through its shortcut to unit k-2."""
    return rule.shortcuts and rule.shortcut_gradients and k >= 2


def unit_vjp(stage: Stage, params: Sequence, states: Sequence, direct, shortcut, first: bool,
             shortcut_is_primal: bool, cotangent=None, head: Optional[Head] = None, training: bool = True):
    """A unit's output and its VJP at its inputs (`direct`: `h_{k-1}` or, for the `first` unit, the
    frame; `shortcut`: `h_{k-2}` or None), about `cotangent` or, for the top unit, its loss `head`:
    the work of one unit at one step, run by `unit_step` and by `parallel.balance`'s timer.

    Returns:
      `(output, new state, loss or None, grads)`: `grads[0]` per parameter, then the gradient about
      `direct` (unless `first`), then about `shortcut` (with `shortcut_is_primal`).
    """
    primals = [list(params)] + ([] if first else [direct]) + ([shortcut] if shortcut_is_primal else [])

    def unit_fn(p, *inputs):
        d = direct if first else inputs[0]
        sc = inputs[-1] if shortcut_is_primal else shortcut
        return apply_stage(stage, p, states, d, sc, training)

    if head is not None:
        return backends.current().value_and_vjp(unit_fn, primals, head=head)
    out, unit_state, _, grads = backends.current().value_and_vjp(unit_fn, primals, cotangent=cotangent)
    return out, unit_state, None, grads


def unit_step(stage: Stage, k: int, depth: int, rule: Rule, params: Sequence, states: Sequence, steps, direct,
              shortcut, cotangent, head: Optional[Head], training: bool = True) -> dict:
    """Unit k's work at one step: its output, its VJP, its messages, its new state.

    Args:
      stage: stage k.
      k, depth: the unit's index and D.
      rule: a pipelined rule.
      params, states: the unit's trainable and non-trainable values.
      steps: `[B]` int32, the frames each slot has fed in before this step.
      direct: `h_{k-1}` `[B, *S_{k-1}]` (the frame for k = 0); shortcut: `h_{k-2}` or None.
      cotangent: the gradient message about `h_k` (`[B, *S_k]`; unused for the top unit).
      head: the top unit's loss of its output (unmasked; only for k = D - 1).
      training: passed to the unit.

    Returns:
      `{"out": h_k, "loss": the masked top loss or None, "state": new state (unchanged where
      its input is invalid), "grads": per parameter, "direct": the message to unit k-1 or None,
      "shortcut": the message to unit k-2 or None}`; messages of slots that do not count are zero.
    """
    counted = steps >= rule.first_counted_step(k, depth)
    input_valid = ops.all(steps >= rule.first_valid_input_step(k))
    shortcut_is_primal = shortcut is not None and rule.shortcut_gradients
    top = k == depth - 1
    out, unit_state, loss, grads = unit_vjp(stage, params, states, direct, shortcut, k == 0, shortcut_is_primal,
                                            None if top else cotangent, _masked(head, counted) if top else None,
                                            training)
    return {
        "out": out,
        "loss": loss,
        "state": _keep_if(input_valid, unit_state, states),
        # Slots that do not count sent zero messages, so their gradients are zero already.
        "grads": list(grads[0]),
        "direct": _shaped_like(grads[1] * per_slot(counted, grads[1]), direct) if k > 0 else None,
        "shortcut": _shaped_like(grads[-1] * per_slot(counted, grads[-1]), shortcut) if shortcut_is_primal else None,
    }


def _shaped_like(message, primal):
    """`message` with the static shape of `primal` (TensorFlow's gradient of a global max-pool
    loses the spatial sizes when B is unknown, which the frame loop's carry cannot take)."""
    tail = tuple(primal.shape[1:])
    if tuple(message.shape[1:]) == tail or any(d is None for d in tail):
        return message
    return ops.reshape(message, (-1,) + tail)


def incoming_message(k: int, rule: Rule, depth: int, steps, direct, shortcut=None):
    """The gradient message about `h_k` for the next step: unit k+1's, plus unit k+2's through its shortcut.

    Args:
      k, rule, depth: the receiving unit, the rule, D.
      steps: `[B]` int32 after the step that sent the messages.
      direct: unit k+1's message; shortcut: unit k+2's (None where it sends none).
    """
    if shortcut is None:
        return direct
    # The shortcut message becomes valid one step before the direct one; a sum with an invalid
    # part is invalid, hence zero.
    complete = steps >= rule.first_counted_step(k, depth)
    return (direct + shortcut) * per_slot(complete, direct)


def sideways_step(
    stages: Sequence[Stage],
    rule: Rule,
    params: Sequence[Sequence],
    states: Sequence[Sequence],
    state: PipelineState,
    frame,
    head: Head,
    accumulators: Sequence[Sequence],
    place: Optional[Placement] = None,
    training: bool = True,
) -> tuple[PipelineState, StepResult]:
    """One training step of `"sideways"`, `"skip_sideways"` or `"fa_skip_sideways"`.

    Args:
      stages: the D stages.
      rule: a pipelined rule (`rule.synchronous` is False).
      params: per stage, its trainable values.
      states: per stage, its non-trainable values.
      state: the pipeline state after the previous step.
      frame: `x_s`, `[B, *F]`, already cast to the compute dtype.
      head: the top unit's loss at this step as a function of its output (unmasked).
      accumulators: the sum of each parameter's gradients so far, in `place`'s form
        (`Placement.carry_accumulators`: per stage, per parameter, without devices); this
        step's are added to them.
      place: where the units run (`placement.Placement`; None: one program, no devices).
      training: passed to the units (dropout, batch norm).

    Returns:
      `(new_state, StepResult)`. The caller divides the accumulators by the `counted` steps.
    """
    place = place or Placement()
    depth = len(stages)
    steps = state.steps
    counted = [steps >= rule.first_counted_step(k, depth) for k in range(depth)]

    def work(k: int) -> dict:
        direct, shortcut = _unit_inputs(k, rule, state, frame)
        cotangent = state.gradients[k] if k < depth - 1 else None
        return unit_step(stages[k], k, depth, rule, params[k], states[k], steps, direct, shortcut, cotangent, head,
                         training)

    def idle(k: int) -> dict:
        return {"state": list(states[k])}

    units, accumulators = place.run_units(work, idle, depth, accumulators)
    new_gradients = []
    for k in range(depth - 1):
        direct = place.share(units[k + 1]["direct"], k + 1, [k])
        shortcut = None
        if k + 2 < depth and units[k + 2]["shortcut"] is not None:
            shortcut = place.share(units[k + 2]["shortcut"], k + 2, [k])
        new_gradients.append(incoming_message(k, rule, depth, steps + 1, direct, shortcut))
    activations = tuple(place.share(units[k]["out"], k, readers(k, rule, depth)) for k in range(depth - 1))
    new_state = PipelineState(steps=steps + 1, activations=activations, gradients=tuple(new_gradients))
    top = units[-1]
    return new_state, StepResult(top["out"], top["loss"], accumulators, counted, [u["state"] for u in units])


def inference_step(
    stages: Sequence[Stage],
    rule: Rule,
    params: Sequence[Sequence],
    states: Sequence[Sequence],
    state: PipelineState,
    frame,
    place: Optional[Placement] = None,
) -> tuple[PipelineState, object]:
    """One step of depth-parallel inference in a sideways mode (no gradients, state unchanged).

    Args:
      stages, rule, params, states, state, place: as in `sideways_step`.
      frame: `x_s`, `[B, *F]`.

    Returns:
      `(new_state, top_output)`; the output is valid from step `D - 1` on (on the top unit's
      device when `place` spans devices).
    """
    place = place or Placement()
    depth = len(stages)

    def work(k: int) -> dict:
        direct, shortcut = _unit_inputs(k, rule, state, frame)
        return {"out": apply_stage(stages[k], params[k], states[k], direct, shortcut, training=False)[0]}

    units, _ = place.run_units(work, lambda k: {}, depth)
    activations = tuple(place.share(units[k]["out"], k, readers(k, rule, depth)) for k in range(depth - 1))
    new_state = PipelineState(steps=state.steps + 1, activations=activations, gradients=state.gradients)
    return new_state, units[-1]["out"]


def synchronous_forward(
    stages: Sequence[Stage],
    rule: Rule,
    params: Sequence[Sequence],
    states: Sequence[Sequence],
    frame,
    devices: Optional[Sequence[str]] = None,
    training: bool = False,
):
    """The per-frame network: every unit on the same frame, in order, like ordinary backprop.

    With `rule.shortcuts`, unit k >= 2 reads `tau(h_{k-2})` of the same frame, behind a
    `stop_gradient` unless `rule.shortcut_gradients` (the FA ablation's limit).

    Args:
      stages, rule, params, states: as in `sideways_step`.
      devices: None, or one device string per unit (`backends.unit_scope`).
      frame: `[N, *F]`.
      training: passed to the units.

    Returns:
      `(top_output [N, *S_{D-1}], new_states)`.
    """
    backend = backends.current()
    hidden, new_states = [], []
    for k, stage in enumerate(stages):
        direct = frame if k == 0 else hidden[k - 1]
        shortcut = hidden[k - 2] if (rule.shortcuts and k >= 2) else None
        if shortcut is not None and not rule.shortcut_gradients:
            shortcut = ops.stop_gradient(shortcut)
        with backend.unit_scope(k, devices):
            out, unit_state = apply_stage(stage, params[k], states[k], direct, shortcut, training)
        hidden.append(out)
        new_states.append(unit_state)
    return hidden[-1], new_states


def synchronous_step(
    stages: Sequence[Stage],
    rule: Rule,
    params: Sequence[Sequence],
    states: Sequence[Sequence],
    frame,
    head: Head,
    accumulators: Sequence[Sequence],
    devices: Optional[Sequence[str]] = None,
    training: bool = True,
) -> StepResult:
    """Exact backprop of the per-frame network on one frame (`"bp"`, and the exact reference).

    Args:
      stages, rule, params, states, devices, training: as in `synchronous_forward`.
      frame: `x_s`, `[B, *F]`.
      head: the loss of this frame's prediction.
      accumulators: per stage, per parameter, the sum of its gradients so far.

    Returns:
      A `StepResult` in which every unit counts.
    """
    backend = backends.current()
    every_slot = ops.ones((ops.shape(frame)[:1]), "bool")

    def network(p):
        return synchronous_forward(stages, rule, p, states, frame, devices, training)

    out, new_states, loss, (grads,) = backend.value_and_vjp(
        network, [[list(p) for p in params]], head=lambda o: ops.cast(head(o), "float32")
    )
    summed = [add_gradients(unit_acc, unit_grads) for unit_acc, unit_grads in zip(accumulators, grads, strict=True)]
    return StepResult(out, loss, summed, [every_slot] * len(stages), new_states)
