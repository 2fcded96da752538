"""Keras' TensorFlow trainer around a `SidewaysModel`'s step: `train_step(data) -> logs`, stateful.

With `stop_on_nonfinite_loss` the step's state is held and put back where its loss is not finite
(`tensorflow_finite`), and Keras' train function raises on the host after such a step.
"""

from __future__ import annotations

import contextlib
from typing import Callable


def keras_train_step(model, step: Callable, args, checks) -> dict:
    """Keras' TensorFlow `train_step(data) -> logs`; with `stop_on_nonfinite_loss` the step's state is
    held and put back where its loss (handed over in `checks.held_losses`) is not finite."""
    if not model.stop_on_nonfinite_loss:
        return step(args[0])
    from sideways_tf.core.backends import tensorflow_finite

    checks.held_losses = losses = []
    try:
        return tensorflow_finite.held_step(model, step, args[0], losses)
    finally:
        checks.held_losses = None


def keras_test_step(model, step: Callable, args) -> dict:
    """Keras' TensorFlow `test_step(data) -> logs`."""
    del model
    return step(args[0])


def keras_train_function(model, function: Callable, checks, message: str) -> Callable:
    """Keras' train function, raising `FloatingPointError(message)` after a step refused for its loss."""
    del checks
    if getattr(function, "finite_checked", False) or not model.stop_on_nonfinite_loss:
        return function
    from sideways_tf.core.backends import tensorflow_finite

    return tensorflow_finite.raising(function, message)


def own_step(model, body: Callable, donate: bool) -> None:
    """None: Keras' `tf.function` (with `jit_compile`) compiles the steps."""
    del model, body, donate


def keras_run(model, checks):
    """Around Keras' `fit`, `evaluate` and `predict`: nothing (TensorFlow's variables stay attached)."""
    del model, checks
    return contextlib.nullcontext()
