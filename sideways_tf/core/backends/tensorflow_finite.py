"""`stop_on_nonfinite_loss` under TensorFlow: the step held on the device, the error raised on the host.

An assertion would do inside a plain `tf.function`, but XLA (`jit_compile=True`, the default on
GPUs and TPUs) compiles `CheckNumerics` away, so the check is data, as under JAX: `held_step`
reads the model's whole state (parameters, optimizer slots, statistics, metrics) before the step
and, where the step's loss is not finite on any replica, writes it back after the step, adding
a flag to the logs; `raising` wraps Keras' train function so that the flag becomes a
`FloatingPointError` on the host. Costs one read and one select of the state per step, and one
scalar read back per call of the train function.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from sideways_tf.core.backends.tensorflow_backend import mean_over_replicas

LOG_KEY = "_nonfinite_loss"


def held_step(model, step: Callable, data, losses: list) -> dict:
    """`step(data)`'s logs, with `model`'s state put back where the loss it appends to `losses` is not finite.

    Args:
      model: the `keras.Model` whose variables the step updates.
      step: `step(data) -> logs`; it appends its loss tensor to `losses` while traced.
      data: the batch.
      losses: an empty list the step fills.

    Returns:
      The logs, with `LOG_KEY`: 1.0 where the step was refused, else 0.0.
    """
    if not model.optimizer.built:  # its slots are held too (and made here, where tf.function can lift them)
        model.optimizer.build(model.trainable_variables)
    variables = (list(model.trainable_variables) + list(model.non_trainable_variables)
                 + list(model.optimizer.variables) + list(model.metrics_variables))
    # Read before the step: automatic control dependencies order reads and writes of a variable.
    before = [tf.identity(v.value) for v in variables]
    logs = step(data)
    finite = tf.cast(tf.reduce_all([tf.reduce_all(tf.math.is_finite(loss)) for loss in losses]), tf.float32)
    finite = mean_over_replicas([finite])[0]  # 1.0 only where every replica's loss is finite
    kept = tf.equal(finite, 1.0)
    for variable, old in zip(variables, before, strict=True):
        variable.assign(tf.where(kept, variable.value, old))
    return {**logs, LOG_KEY: 1.0 - finite}


def raising(train_function: Callable, message: str) -> Callable:
    """Keras' train function, raising `FloatingPointError(message)` after a step that `held_step` refused."""

    def checked(*args, **kwargs):
        logs = train_function(*args, **kwargs)
        if isinstance(logs, dict) and LOG_KEY in logs:
            logs = dict(logs)
            if float(logs.pop(LOG_KEY)) > 0:
                raise FloatingPointError(message)
        return logs

    checked.finite_checked = True
    return checked
