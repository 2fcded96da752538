"""A clip's gradients from explicit values: the pure functions behind a `SidewaysModel`'s training.

`clip_gradients` is what a training step computes (`train_step`): the rule's pseudo-gradients
(or exact backprop) of one clip, with the model's compiled loss and its weight regularizers,
from the values of its variables; nothing is assigned. `gradient_function` compiles it for
`pseudo_gradients` and `exact_gradients`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
from keras import ops

from sideways_tf import model_checks
from sideways_tf.core import backends
from sideways_tf.core.engine import ClipResult


def clip_gradients(model, params, states, video, labels, sample_weight=None, exact: bool = False,
                   **streaming) -> ClipResult:
    """The pure function behind training: gradients and new state for one clip, from explicit values.

    Args:
      model: a built, compiled `SidewaysModel`.
      params: values of `model.trainable_variables`.
      states: values of `model.non_trainable_variables`.
      video: `[B, T, *F]`.
      labels: `[B, ...]` per clip or `[B, T, ...]` per frame.
      sample_weight: None, `[B]` or `[B, T]`.
      exact: the rule's exact reference instead of the rule (`SidewaysModel.exact_gradients`).
      **streaming: `stream`, `starts`, `updater`, `optimizer_state`, `flush` of
        `Engine.train_clip` (with an updater, the regularizers' gradient enters each update).

    Returns:
      An `engine.ClipResult` aligned with the model's variable lists; nothing is applied
      to the variables (updates inside the loop are in its `params`).
    """
    params, states = list(params), list(states)
    engine = model.engine
    penalized = bool(model.losses)
    # On per-device programs the top group's step cannot read every unit's parameters: its
    # loss leaves the regularizers out, and their value is added to the clip's loss below.
    separate = penalized and engine.programs and not exact
    if engine.programs:  # the per-device steps are traced with the compiled loss
        engine.place.use_loss(getattr(model, "loss", None))

    # The per-device steps are compiled once and keep this loss: it must not hold this clip's
    # parameters (they would stay alive on the first device), so it reads them only where needed.
    constants = params if penalized and not separate else None

    def frame_loss(y, y_pred, w):
        if separate:
            return data_loss(model, y, y_pred, w)
        if not penalized:
            return model.compute_frame_loss(y, y_pred, w)
        # Regularizers enter the reported loss at every step but their gradient once per
        # clip (below), so the per-step loss sees the parameters as constants.
        frozen = [(v, ops.stop_gradient(p)) for v, p in zip(model.trainable_variables, constants, strict=True)]
        with keras.StatelessScope(state_mapping=frozen):
            return model.compute_frame_loss(y, y_pred, w)

    result = engine.train_clip(params, states, model.trainable_variables, model.non_trainable_variables,
                               video, labels, sample_weight, frame_loss, exact=exact, **streaming)
    # With an updater and no separate value to add, the penalty's gradient enters each update instead.
    if not penalized or (streaming.get("updater") is not None and not separate):
        return result
    total, gradients = penalty(model, params)
    if separate:  # what every valid step's loss would have added
        counted = ops.any(result.episode.output_valid)
        result = result._replace(loss=ops.where(counted, result.loss + total, result.loss))
    if streaming.get("updater") is not None:  # the penalty's gradient enters each update
        return result
    return result._replace(gradients=plus(result.gradients, gradients))


def plus(gradients: Sequence, extra: Sequence) -> list:
    """`gradients + extra`, each in its gradient's dtype."""
    return [g + ops.cast(e, g.dtype) for g, e in zip(gradients, extra, strict=True)]


def penalty(model, params: Sequence) -> tuple:
    """The weight regularizers' value and gradient at `params`, scaled as Keras scales its losses."""
    return model.engine.regularization(params, model.trainable_variables, 1.0 / backends.current().num_replicas())


def data_loss(model, y, y_pred, sample_weight=None):
    """Keras' `compute_loss` of one frame without the weight regularizers (`penalty` adds them)."""
    regularized = [(v, v.regularizer) for v in model.trainable_variables if v.regularizer is not None]
    for v, _ in regularized:
        v.regularizer = None
    try:
        return keras.Model.compute_loss(model, x=None, y=y, y_pred=y_pred, sample_weight=sample_weight)
    finally:
        for v, regularizer in regularized:
            v.regularizer = regularizer


def gradient_function(model, exact: bool = False) -> Callable:
    """The compiled pure function behind `pseudo_gradients` (`exact_gradients` with `exact=True`).

    `function(params, states, video, labels, sample_weight) -> gradients`, with `params` and
    `states` the values of `trainable_variables` and `non_trainable_variables`: a `tf.function`
    (XLA-compiled when the model was compiled with `jit_compile=True`) or a `jax.jit` function;
    on per-device programs a Python function driving each group's compiled step. Made once per
    compiled loss (after a `compile` with another loss it is made again).
    """
    cache = model.__dict__.setdefault("_gradient_functions", {})
    key = (exact, bool(model.jit_compile))
    loss = getattr(model, "loss", None)
    if key in cache and cache[key][0] is not loss:
        del cache[key]
    if key not in cache:

        def gradients(params, states, video, labels, sample_weight=None):
            mapping = list(zip(model.trainable_variables, params, strict=True))
            mapping += list(zip(model.non_trainable_variables, states, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                return clip_gradients(model, params, states, video, labels, sample_weight, exact=exact).gradients

        engine = model.engine
        if not engine.programs:
            cache[key] = (loss, backends.current().compile_function(gradients, jit_compile=key[1]))
        elif exact:  # one program: everything on the first group's device
            compiled = backends.current().compile_function(gradients)
            cache[key] = (loss, lambda *args: compiled(*engine.place.local(args)))
        else:  # the host drives each group's compiled step
            cache[key] = (loss, gradients)
    return cache[key][1]


def values(variables) -> list:
    """The variables' current values as tensors (inside a `keras.StatelessScope`: the scope's)."""
    return [ops.convert_to_tensor(v.value) for v in variables]


def as_tensor(x):
    """`x` as a tensor; None stays None (an absent label or sample weight)."""
    return None if x is None else ops.convert_to_tensor(x)


def of_batch(model, video, labels, sample_weight, exact: bool) -> list:
    """`model.pseudo_gradients` (`exact_gradients` with `exact`): the batch checked, the compiled
    `gradient_function` run on the variables' current values; one gradient per trainable variable."""
    video, labels, sample_weight = as_tensor(video), as_tensor(labels), as_tensor(sample_weight)
    model_checks.check_video(model, video, training=True)
    model_checks.check_compiled(model)
    function = gradient_function(model, exact)
    return list(function(values(model.trainable_variables), values(model.non_trainable_variables), video, labels,
                         sample_weight))
