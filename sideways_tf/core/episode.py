"""The frame loop: the computation step run over the T frames of a clip inside one compiled loop.

The loop is the backend's `scan` (`tf.while_loop` / `jax.lax.scan`), so program size and
memory do not grow with T: nothing but the pipeline state, the stages' non-trainable state, one
gradient accumulator per parameter, the targets still in flight and the top unit's outputs
(label-sized, for the metrics) is carried from step to step. The loop itself is never
differentiated.

A clip is one episode (`docs/rules.md`) when it starts from `fresh_stream` and nothing is
applied inside the loop. Streaming (section 6) is the same loop with two options: an `Updater`
applies the optimizer every L steps inside the loop, and the `Stream` it returns carries the
pipeline on into the next chunk of the same streams (with per-slot restarts where a new video
begins).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import keras
from keras import ops

from sideways_tf.core import backends, pipeline
from sideways_tf.core.placement import Placement
from sideways_tf.core.schedule import Rule
from sideways_tf.core.stage import Stage

FrameTarget = Callable[[object], object]
"""`frame_target(s)`: the target (any structure of `[B, ...]` tensors) of the chunk's frame s."""

TopLoss = Callable[[object, object], object]
"""`top_loss(target, output)`: the scalar loss of one step's top output `[B, *O]`."""


class Stream(NamedTuple):
    """What carries over from one chunk of a stream to the next.

    Attributes:
      pipe: the pipeline state (`pipeline.PipelineState`).
      accumulators: per stage, per parameter, the sum of its counted gradients since its
        last update.
      counts: per stage, a float32 scalar: its counted (step, slot) pairs since its last
        update, divided by B (the number of counted steps when every slot counts).
      step: int32 scalar, steps since the stream began (where the update window stands).
      targets: the targets of the last `latency` frames, oldest first (each leaf
        `[latency, B, ...]`), or `()` when the rule has no latency.
    """

    pipe: pipeline.PipelineState
    accumulators: list
    counts: list
    step: object
    targets: object


class Updater(NamedTuple):
    """The optimizer applied inside the frame loop every `every` steps.

    Attributes:
      every: L, the steps between updates (after steps L-1, 2L-1, ... of the stream).
      apply: `apply(params, optimizer_state, gradients, counted) -> (params, optimizer_state)`,
        with `params` and `gradients` per stage and `counted` per stage a bool scalar (a unit
        that did not count in the window keeps its parameters).
      optimizer: the Keras optimizer that `apply` runs, when it is nothing more (no gradient
        added to the window's): per-device programs then update each group on its own
        (`core.program_streams`); None otherwise.
      variables: the trainable variables `optimizer` updates, in its `optimizer_state` order.
    """

    every: int
    apply: Callable
    optimizer: object = None
    variables: Sequence = ()


class EpisodeResult(NamedTuple):
    """What the frame loop gives.

    Attributes:
      gradients: per stage, its parameters' gradients averaged over the counted steps of
        the window still open at the end (all of a clip when nothing is applied inside).
      states: per stage, its non-trainable state after the loop.
      loss: the mean of the top unit's loss over the steps where it counted (float32).
      outputs: `[B, T, *O]`, the top output of every step.
      output_targets: the target of every step's top output, each leaf `[B, T, ...]` (streams
        only: None for a plain clip).
      output_valid: `[B, T]` bool, where the top output is valid.
      stream: the `Stream` after the last step.
      params: per stage, the parameters after the loop (updated inside it by an `Updater`).
      optimizer_state: the optimizer's variables after the loop (`()` without an `Updater`).
    """

    gradients: list
    states: list
    loss: object
    outputs: object
    output_targets: object
    output_valid: object
    stream: Stream
    params: list
    optimizer_state: object


def frame_at(video, step, dtype):
    """`video[:, step]` cast to `dtype`: `[B, T, *F]` -> `[B, *F]`."""
    return ops.cast(ops.take(video, step, axis=1), dtype)


def dim(x, axis: int):
    """`x.shape[axis]`: a Python int when static (always under JAX), else a scalar tensor."""
    return x.shape[axis] if x.shape[axis] is not None else ops.shape(x)[axis]


def fresh_stream(
    params: Sequence[Sequence], batch_size, activation_shapes, dtype, first_target, latency: int
) -> Stream:
    """The stream before any frame: zero pipeline, empty accumulators, no targets in flight.

    Args:
      params: per stage, its parameters (for the accumulators' shapes).
      batch_size: B.
      activation_shapes: `S_k` of units 0..D-2.
      dtype: the activations' dtype.
      first_target: a target structure of one frame (for the delay line's shapes).
      latency: the rule's latency.
    """
    line = ()
    if latency:
        line = keras.tree.map_structure(lambda t: ops.zeros((latency,) + tuple(ops.shape(t)), t.dtype), first_target)
    return Stream(
        pipe=pipeline.zero_state(batch_size, activation_shapes, dtype),
        accumulators=[[ops.zeros_like(p) for p in unit] for unit in params],
        counts=[ops.zeros((), "float32") for _ in params],
        step=ops.convert_to_tensor(0, "int32"),
        targets=line,
    )


def window_gradients(stream: Stream) -> list:
    """Per stage, the mean of its counted gradients in the open window (zeros if none counted)."""
    return [
        [acc / ops.cast(ops.maximum(count, 1e-12), acc.dtype) for acc in unit_acc]
        for unit_acc, count in zip(stream.accumulators, stream.counts, strict=True)
    ]


def _delay(line, target):
    """Pushes this frame's target into the delay line; returns `(oldest target, new line)`."""
    if isinstance(line, tuple) and not line:
        return target, line
    oldest = keras.tree.map_structure(lambda buf: buf[0], line)
    line = keras.tree.map_structure(
        lambda buf, t: ops.concatenate([buf[1:], ops.expand_dims(t, 0)], axis=0), line, target
    )
    return oldest, line


def _counts(stream: Stream, result: pipeline.StepResult) -> list:
    """Per stage, its counted (step, slot) pairs since its last update, divided by B."""
    return [count + ops.mean(ops.cast(c, "float32")) for count, c in zip(stream.counts, result.counted, strict=True)]


def gathered(stream: Stream, place: Placement) -> Stream:
    """The stream's pipeline with every unit's part as its own device holds it (`Placement.gather`)."""
    pipe = stream.pipe
    return stream._replace(
        pipe=pipe._replace(activations=tuple(place.gather(a, k) for k, a in enumerate(pipe.activations)),
                           gradients=tuple(place.gather(g, k) for k, g in enumerate(pipe.gradients))),
    )


def empty_window(stream: Stream) -> Stream:
    """The stream with its update window emptied (after an update), in whatever form it carries."""
    return stream._replace(
        accumulators=keras.tree.map_structure(ops.zeros_like, stream.accumulators),
        counts=[ops.zeros_like(c) for c in stream.counts],
    )


def _update(updater: Updater, params, optimizer_state, stream: Stream, place: Placement):
    """Applies the window's mean gradients (each unit's from its own device); empties the window."""
    counted = [count > 0 for count in stream.counts]
    gradients = window_gradients(stream._replace(accumulators=place.unit_accumulators(stream.accumulators)))
    params, optimizer_state = updater.apply(params, optimizer_state, gradients, counted)
    return params, optimizer_state, empty_window(stream)


def _update_if(condition, updater: Updater, params, optimizer_state, stream: Stream, place: Placement):
    """`_update` where `condition` (a bool scalar, the same on every device) holds, else nothing."""
    return ops.cond(
        condition,
        lambda: _update(updater, params, optimizer_state, stream, place),
        lambda: (params, optimizer_state, stream),
    )


def train_episode(
    stages: Sequence[Stage],
    rule: Rule,
    params: Sequence[Sequence],
    states: Sequence[Sequence],
    video,
    frame_target: FrameTarget,
    top_loss: TopLoss,
    activation_shapes: Sequence[Sequence[int]],
    place: Optional[Placement] = None,
    stream: Optional[Stream] = None,
    starts=None,
    updater: Optional[Updater] = None,
    optimizer_state=(),
    flush: bool = True,
) -> EpisodeResult:
    """Runs the frames of `video` through `rule`, from `stream` on.

    Args:
      stages: the D stages.
      rule: the rule (`schedule.rule`): the pipeline or exact per-frame backprop.
      params: per stage, its trainable values.
      states: per stage, its non-trainable values.
      video: `[B, T, *F]`, float or uint8 (cast frame by frame).
      frame_target: the target of the chunk's frame s (`FrameTarget`); the top output at step
        s is scored against the target of frame `s - rule.latency`, kept in a delay line.
      top_loss: `top_loss(target, output)`, the loss of one step's top output.
      activation_shapes: `S_k` (no batch axis) of units 0..D-2.
      place: where the units run (`placement.Placement`; None: one program). When it spans
        devices the call must run inside `place.wrap`, and its results are the same on every
        device.
      stream: where the streams stand (None: a fresh start, as for one clip).
      starts: None, or `[B, T]` bool: slot b begins a new video at frame s (its pipeline
        restarts there; `pipeline.restart`).
      updater: None (nothing is applied; the gradients of the whole loop are returned), or
        the optimizer applied every `updater.every` steps inside the loop.
      optimizer_state: the optimizer's variables (with an `updater`).
      flush: with an `updater`, also apply the window left open at the last step (an
        episode); False leaves it in the returned stream for the next chunk.

    Returns:
      An `EpisodeResult`.
    """
    backend = backends.current()
    place = place or Placement()
    dtype = stages[0].compute_dtype
    batch_size = dim(video, 0)
    first_target = frame_target(0)
    # Streams carry the targets in flight and return every step's target; a plain clip (a fresh
    # start, no restarts, no updates inside) reads the target of frame s - latency directly.
    record_targets = stream is not None or starts is not None or updater is not None
    if stream is None:
        stream = fresh_stream(params, batch_size, activation_shapes, dtype, first_target,
                              rule.latency if record_targets else 0)
    # Inside the loop the accumulators take the placement's form (one packed buffer per device).
    stream = stream._replace(accumulators=place.carry_accumulators(stream.accumulators))
    target_dtypes = (keras.tree.map_structure(lambda t: t.dtype, first_target),) if record_targets else ()
    output_dtypes = (dtype, *target_dtypes, "bool")
    carry = (stream, [list(p) for p in params], [list(s) for s in states], optimizer_state, ops.zeros((), "float32"),
             ops.zeros((), "float32"))

    def body(s, carry):
        stream, params, states, optimizer_state, loss_sum, loss_count = carry
        pipe = stream.pipe
        if starts is not None:
            pipe = pipeline.restart(pipe, ops.take(starts, s, axis=1))
        if record_targets:
            target, line = _delay(stream.targets, frame_target(s))
        else:
            target, line = frame_target(ops.maximum(s - rule.latency, 0)), stream.targets

        def head(out):
            return top_loss(target, out)

        frame = frame_at(video, s, dtype)
        if rule.synchronous:
            result = pipeline.synchronous_step(stages, rule, params, states, frame, head, stream.accumulators,
                                               place.devices)
            pipe = pipe._replace(steps=pipe.steps + 1)
        else:
            pipe, result = pipeline.sideways_step(stages, rule, params, states, pipe, frame, head,
                                                  stream.accumulators, place)
        stream = Stream(pipe, result.accumulators, _counts(stream, result), stream.step + 1, line)
        if updater is not None:
            params, optimizer_state, stream = _update_if(
                stream.step % updater.every == 0, updater, params, optimizer_state, stream, place
            )
        top_valid = result.counted[-1]
        loss_count = loss_count + ops.cast(ops.any(top_valid), "float32")
        outputs = (result.top_output, *((target,) if record_targets else ()), top_valid)
        return (stream, params, [list(x) for x in result.states], optimizer_state, loss_sum + result.loss,
                loss_count), outputs

    final, scanned = backend.scan(body, carry, dim(video, 1), output_dtypes)
    outputs, output_valid = scanned[0], scanned[-1]
    output_targets = keras.tree.map_structure(_batch_major, scanned[1]) if record_targets else None
    stream, params, states, optimizer_state, loss_sum, loss_count = final
    depth = len(stages)
    # Each unit's results are valid on its own device (all of them, in one program).
    states = [place.gather(s, k) for k, s in enumerate(states)]
    loss_sum, outputs = place.gather((loss_sum, outputs), depth - 1)
    window = place.unit_accumulators(stream.accumulators)
    gradients = window_gradients(stream._replace(accumulators=window))
    if updater is not None and flush:
        params, optimizer_state, stream = _update_if(
            ops.any(ops.stack([c > 0 for c in stream.counts])), updater, params, optimizer_state, stream, place
        )
        window = place.unit_accumulators(stream.accumulators)
    stream = gathered(stream._replace(accumulators=window), place)
    return EpisodeResult(
        gradients=gradients,
        states=states,
        loss=loss_sum / ops.maximum(loss_count, 1.0),
        outputs=_batch_major(outputs),
        output_targets=output_targets,
        output_valid=_batch_major(output_valid),
        stream=stream,
        params=params,
        optimizer_state=optimizer_state,
    )


def _batch_major(x):
    """`[T, B, ...]` -> `[B, T, ...]`."""
    return ops.transpose(x, [1, 0] + list(range(2, len(x.shape))))


def inference_episode(
    stages: Sequence[Stage],
    rule: Rule,
    params: Sequence[Sequence],
    states: Sequence[Sequence],
    video,
    activation_shapes: Sequence[Sequence[int]],
    place: Optional[Placement] = None,
):
    """Predictions for one clip without gradients.

    `"bp"` runs the per-frame network on all frames at once; the sideways modes run the
    depth-parallel pipeline.

    Args:
      stages, rule, params, states, activation_shapes, place: as in `train_episode`.
      video: `[B, T, *F]`.

    Returns:
      `[B, T', *S_{D-1}]` with `T' = T - rule.latency`: the prediction for frame j at index j.
    """
    backend = backends.current()
    place = place or Placement()
    dtype = stages[0].compute_dtype
    if rule.synchronous:
        shape = ops.shape(video)
        frames = ops.cast(ops.reshape(video, (-1,) + tuple(video.shape[2:])), dtype)
        out, _ = pipeline.synchronous_forward(stages, rule, params, states, frames, place.devices)
        return ops.reshape(out, (shape[0], shape[1]) + tuple(out.shape[1:]))

    def body(s, pipe):
        return pipeline.inference_step(stages, rule, params, states, pipe, frame_at(video, s, dtype), place)

    _, outputs = backend.scan(body, pipeline.zero_state(dim(video, 0), activation_shapes, dtype), dim(video, 1), dtype)
    return _batch_major(place.gather(outputs, len(stages) - 1))[:, rule.latency:]
