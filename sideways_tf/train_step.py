"""One training step of a `SidewaysModel`, whatever the batch is: a clip, or a chunk of streams.

A plain clip is a chunk with no stream kept, no restarts and one update at its end; a chunk of
streams (`stateful=True`, restarts) may also update inside the frame loop (`update_every`). Both
run the same sequence (`train_batch`): the clip's gradients from the model's pure
`clip_gradients`, the checks of `check_finite` and `stop_on_nonfinite_loss`, the optimizer's
update, the variables assigned, the loss, the gradient statistics and the metrics tracked. Every
optimizer update, at the end of a clip or inside the frame loop, is one call of `update`, whose
backend-dependent part (TensorFlow updates the variables in place, JAX returns new values) is
the backend's `optimizer_step` (`core.backends`).

The model's Keras glue calls `keras_train_batch` and `keras_test_batch` inside Keras' steps,
`keras_function` and `keras_step` to make and run Keras' step functions, and `fit` around Keras'
`fit`; nothing here is private to the model.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import keras
from keras import ops

from sideways_tf import gradients as gradients_lib
from sideways_tf import input_checks, model_checks, stream_state
from sideways_tf.core import backends, episode, targets
from sideways_tf.core.engine import ClipResult
from sideways_tf.gradients import as_tensor, values


def assign(variables, new_values) -> None:
    """Assigns each variable its new value."""
    for variable, value in zip(variables, new_values, strict=True):
        variable.assign(value)


def update(model, params: Sequence, optimizer_state, gradients: Sequence, keep: Optional[Sequence] = None,
           regularized: bool = True, consumes: bool = False) -> tuple[list, list]:
    """One optimizer update of `model` on explicit values: every update goes through here.

    Args:
      model: a compiled `SidewaysModel`.
      params: the trainable variables' current values.
      optimizer_state: the optimizer's state as the backend carries it (`optimizer_values`).
      gradients: one per trainable variable.
      keep: None (every variable updated), or one bool scalar per trainable variable: keep the
        old value (its unit did not count in the window).
      regularized: add the weight regularizers' gradient at `params` (the gradients of a whole
        clip already hold it).
      consumes: `params` and `optimizer_state` are not read again and the step's checks are all
        made (a clip's one update): on per-device programs the update takes over their memory.

    Returns:
      `(new values, new optimizer_state)`; under TensorFlow the variables are already updated.
    """
    if regularized and model.losses:
        gradients = gradients_lib.plus(gradients, gradients_lib.penalty(model, params)[1])
    return backends.current().optimizer_step(model.engine.place, model.optimizer, model.trainable_variables,
                                             params, optimizer_state, gradients, keep, consumes)


def checked(model, result: ClipResult, held_losses: Optional[list] = None) -> ClipResult:
    """With `check_finite`, the result's gradients checked for NaN and Inf, each named by its unit;
    then, with `stop_on_nonfinite_loss`, its loss (a culprit named first): appended to
    `held_losses` when the step's state is held by the caller (TensorFlow), else checked in the step."""
    backend = backends.current()
    gradients = result.gradients
    if model.check_finite:
        gradients = input_checks.finite_gradients(gradients, model.trainable_variables, model.stages,
                                                  backend.check_finite)
    loss = result.loss
    if model.stop_on_nonfinite_loss:
        if held_losses is not None:
            held_losses.append(loss)
        else:
            loss = backend.check_finite(loss, input_checks.NONFINITE_LOSS)
    return result._replace(loss=loss, gradients=gradients)


def track_loss(model, loss, video) -> None:
    """The batch's loss, unscaled from Keras' per-replica scaling, weighted by its B clips."""
    model.loss_tracker.update_state(loss * backends.current().num_replicas(), sample_weight=ops.shape(video)[0])


def track_gradients(model, gradients: Sequence) -> None:
    """Per unit, the mean and L2 norm of its gradients (`gradient_stats=True`)."""
    if not model.gradient_trackers:
        return
    per_stage = model.engine.split(gradients, model.trainable_variables, trainable=True)
    for (mean_tracker, norm_tracker), unit_grads in zip(model.gradient_trackers, per_stage, strict=True):
        if unit_grads:
            flat = ops.concatenate([ops.reshape(ops.cast(g, "float32"), (-1,)) for g in unit_grads], 0)
            mean_tracker.update_state(ops.mean(flat))
            norm_tracker.update_state(ops.norm(flat))


def prepare(model, video_shape, labels, has_weights: bool) -> None:
    """Before the first step: the optimizer built (for updates inside the loop; on per-device programs
    with each slot made on its group's device) and the stream state of `stateful=True`.

    Args:
      model: a built `SidewaysModel`.
      video_shape: the batches' clip shape `[B, T, *F]`.
      labels: the labels (or their spec).
      has_weights: whether batches carry sample weights.
    """
    if getattr(model, "optimizer", None) is not None and not model.optimizer.built:
        if model.engine.programs:
            model.engine.place.build_optimizer(model.optimizer, model.trainable_variables)
        elif model.update_every is not None:
            model.optimizer.build(model.trainable_variables)
    if model.stateful:
        stream_state.prepare(model, video_shape, labels, has_weights)


def _streams(model, starts) -> dict:
    """`clip_gradients`' arguments for a chunk of streams: the stream kept, restarts, the updater."""
    stream = None
    if model.stateful:
        if not model.stream_state.created:
            raise ValueError("`stateful=True`: the stream state is made by `fit` or `train_on_batch`; a custom "
                             "loop must call `model.train_on_batch` once first.")
        stream = model.stream_state.value()
    updater, optimizer_state = None, ()
    if model.update_every is not None:
        if backends.current().num_replicas() > 1:
            raise ValueError("`update_every` applies the optimizer inside the frame loop, which tf.distribute "
                             "cannot do with more than one replica; use update_every=None under a strategy.")
        # Without regularizers the step is the optimizer's alone (per-device programs fuse it).
        updater = model.engine.updater(model.update_every, functools.partial(update, model),
                                       model.trainable_variables, None if model.losses else model.optimizer)
        optimizer_state = backends.current().optimizer_values(model.optimizer)
    return {"stream": stream, "starts": starts, "updater": updater, "optimizer_state": optimizer_state,
            "flush": not model.stateful}


def train_batch(model, video, starts, labels, sample_weight, held_losses: Optional[list] = None) -> dict:
    """`model`'s training step on one batch (checked by the caller): a clip, or a chunk of streams.

    Args:
      model: a built, compiled `SidewaysModel`.
      video: `[B, T, *F]`.
      starts: None, or `[B, T]` bool: slot b begins a new video at frame t (a chunk of streams).
      labels: `[B, ...]` per clip or `[B, T, ...]` per frame.
      sample_weight: None, `[B]` or `[B, T]`.
      held_losses: where `stop_on_nonfinite_loss` hands the loss to a caller that holds the
        step's state (TensorFlow), or None (the step checks it).

    Returns:
      The metrics' logs, as Keras' `train_step` returns them.
    """
    backend = backends.current()
    model.engine.place.settle(model.optimizer, model.trainable_variables)
    params, states = values(model.trainable_variables), values(model.non_trainable_variables)
    if model.check_finite:
        video = input_checks.finite_video(video, backend.check_finite)
    chunk = model.stateful or model.update_every is not None or starts is not None
    streams = _streams(model, starts) if chunk else {}
    result = checked(model, model.clip_gradients(params, states, video, labels, sample_weight, **streams),
                     held_losses)
    outcome = result.episode
    if streams.get("updater") is None:  # one update, at the clip's end
        new, optimizer_state = update(model, params, backend.optimizer_values(model.optimizer), result.gradients,
                                      regularized=False, consumes=True)
        if chunk:
            outcome = outcome._replace(stream=episode.empty_window(outcome.stream))
    else:  # updated inside the loop
        new, optimizer_state = result.params, outcome.optimizer_state
    backend.assign_step(model.trainable_variables, new, model.optimizer, optimizer_state)
    assign(model.non_trainable_variables, result.non_trainable)
    if model.stateful:
        model.stream_state.assign(outcome.stream)
    track_gradients(model, result.gradients)
    track_loss(model, result.loss, video)
    if chunk:
        y, y_pred, weights = targets.flatten_stream(outcome.outputs, outcome.output_targets, outcome.output_valid)
    else:
        y, y_pred, weights = targets.flatten_steps(result.predictions, labels, sample_weight,
                                                   result.labels_per_frame, result.weights_per_frame)
    return keras.Model.compute_metrics(model, video, y, y_pred, weights)


def keras_train_batch(model, checks, data) -> dict:
    """Keras' training step on one batch `(x, y[, sample_weight])`, checked: `train_batch`'s logs.
    `checks`: the model's `backends.StepChecks` (where TensorFlow's held losses go)."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    video, starts = stream_state.video_and_restarts(x)
    y, sample_weight = as_tensor(y), as_tensor(sample_weight)
    if model.stateful and model.stream_state.created:
        video, starts, y, sample_weight = (stream_state.with_batch_size(t, model.stream_state.batch_size)
                                           for t in (video, starts, y, sample_weight))
    model_checks.check_video(model, video, training=True)
    model_checks.check_compiled(model)
    model_checks.check_targets(model, video.shape[1], y, sample_weight)
    return train_batch(model, video, starts, y, sample_weight, checks.held_losses)


def keras_test_batch(model, data) -> dict:
    """Keras' test step on one batch: depth-parallel inference (per-frame in `"bp"`), the loss and the
    metrics (the training-only gradient statistics left out)."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    x, y, sample_weight = as_tensor(x), as_tensor(y), as_tensor(sample_weight)
    model_checks.check_targets(model, x.shape[1] if len(getattr(x, "shape", ())) > 1 else None, y, sample_weight)
    y_pred = model(x, training=False)
    track_loss(model, model.compute_loss(x, y, y_pred, sample_weight, training=False), x)
    logs = model.compute_metrics(x, y, y_pred, sample_weight)
    training_only = {tracker.name for pair in model.gradient_trackers for tracker in pair}
    return {name: value for name, value in logs.items() if name not in training_only}


def keras_function(model, kind: str, make: Callable, body: Callable, force: bool):
    """Keras' `make_{kind}_function(force)` (`make`) for `kind` "train", "test" or "predict".

    Where the backend compiles the step `body` itself (`backends.trainer().own_step`: under JAX on
    NVIDIA GPUs, with XLA options that Keras' `jax.jit` cannot take), Keras makes its function with
    `jit_compile` off, around that compiled step (`keras_step`), and `jit_compile` is put back.
    """
    if getattr(model, f"{kind}_function") is not None and not force:
        return make(force)
    steps = model.__dict__.setdefault("_own_steps", {})
    steps.pop(kind, None)
    own = backends.trainer().own_step(model, body, donate=kind != "predict")
    if own is None:
        return make(force)
    steps[kind] = own
    model.jit_compile = False
    try:
        return make(force)
    finally:
        model.jit_compile = True


def keras_step(model, kind: str, body: Callable, args: Sequence):
    """Keras' `{kind}_step(*args)`: `body(*args)`, or the backend's compiled `body` (`keras_function`)."""
    own = model.__dict__.get("_own_steps", {}).get(kind)
    return (body if own is None else own)(*args)


def fit(model, keras_fit, checks, x, y, args: Sequence, kwargs: dict):
    """`keras_fit(x, y, **kwargs)` (Keras' own `fit`, run with the model's `backends.StepChecks`),
    after checking the clips' shape where it is known before the first step and preparing the
    model for them (`prepare`); a `fit` that trains on no batch at all (an empty dataset) raises
    a `ValueError` (`input_checks.check_trained`)."""
    kwargs = model_checks.fit_arguments(args, kwargs)
    found = model_checks.check_fit_batches(model, x, y, kwargs)
    if found is None and model.stateful:  # a generator: its first batch makes the stream state
        x, found = model_checks.peek_stream(model, x)
    if found is not None:  # the batches' shape, labels, whether they carry weights
        prepare(model, *found)
    counter = input_checks.BatchCounter()
    kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), counter]
    epochs, initial_epoch = kwargs.get("epochs", 1), kwargs.get("initial_epoch", 0)
    if getattr(x, "element_spec", None) is not None and hasattr(x, "cardinality") and int(x.cardinality()) == 0:
        input_checks.check_trained(counter, epochs, initial_epoch)  # known empty: say so before Keras starts
    x = model_checks.checked_lengths(model, x, training=True)
    try:
        with backends.trainer().keras_run(model, checks), input_checks.first_line_ours():
            history = keras_fit(x, y, **kwargs)
    except StopIteration:  # Keras' JAX trainer peeks at a first batch that is not there
        input_checks.check_trained(counter, epochs, initial_epoch)
        raise
    input_checks.check_trained(counter, epochs, initial_epoch)
    return history
