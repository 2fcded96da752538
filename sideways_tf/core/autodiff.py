"""The one backend-specific piece of the engine: a unit's forward pass and its VJP.

Everything else in `sideways_tf.core` is written against `value_and_vjp`, so porting the
engine to another Keras backend (JAX) means re-implementing this file only.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import tensorflow as tf


def value_and_vjp(
    fn: Callable[..., tf.Tensor],
    primals: Sequence[tf.Tensor],
    variables: Sequence,
    cotangent: Optional[tf.Tensor] = None,
    head: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
) -> tuple[tf.Tensor, Optional[tf.Tensor], list[tf.Tensor], list[tf.Tensor]]:
    """Runs `fn(*primals)` once and pulls a cotangent back to its inputs and variables.

    Exactly one of `cotangent` and `head` is given:

    * `cotangent` (shaped like the output): the vector-Jacobian product
      `cotangent . d fn / d (primals, variables)` at the given primals.
    * `head`: a scalar function of the output (a loss); the gradient of `head(fn(...))`.

    Args:
      fn: the unit, `fn(*primals) -> output`.
      primals: the input tensors to differentiate with respect to.
      variables: Keras (or tf) variables to differentiate with respect to.
      cotangent: the incoming gradient about the output.
      head: a scalar function of the output.

    Returns:
      `(output, head_value, primal_grads, variable_grads)`; `head_value` is None when a
      cotangent was given. Unconnected gradients are zeros, never None.
    """
    if (cotangent is None) == (head is None):
        raise ValueError("value_and_vjp needs exactly one of `cotangent` and `head`.")
    primals = list(primals)
    watched = [getattr(v, "value", v) for v in variables]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(primals)
        tape.watch(watched)
        output = fn(*primals)
        head_value = head(output) if head is not None else None
    target = head_value if head is not None else output
    grads = tape.gradient(
        target,
        primals + watched,
        output_gradients=None if head is not None else cotangent,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return output, head_value, grads[: len(primals)], grads[len(primals):]
