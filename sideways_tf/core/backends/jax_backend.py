"""The JAX backend of the engine: `jax.vjp` and a `jax.lax.scan` over frames.

Everything here is traced: no Keras variable is read or assigned inside the loop; parameters and
non-trainable state arrive as arrays and leave in the loop carry.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp


def value_and_vjp(
    fn: Callable,
    primals: Sequence,
    cotangent=None,
    head: Optional[Callable] = None,
):
    """Runs `fn(*primals) -> (output, aux)` once and pulls a cotangent back to the primals.

    Arguments and result as in the TensorFlow backend's `value_and_vjp`.
    """
    if (cotangent is None) == (head is None):
        raise ValueError("value_and_vjp needs exactly one of `cotangent` and `head`.")
    primals = list(primals)
    if head is not None:

        def scalar(*args):
            output, aux = fn(*args)
            return head(output), (output, aux)

        argnums = tuple(range(len(primals)))
        (head_value, (output, aux)), grads = jax.value_and_grad(scalar, argnums=argnums, has_aux=True)(*primals)
        return output, aux, head_value, list(grads)
    output, pullback, aux = jax.vjp(fn, *primals, has_aux=True)
    return output, aux, None, list(pullback(cotangent.astype(output.dtype)))


def scan(body: Callable, init, length: int, output_dtype=None):
    """`carry, y_s = body(s, carry)` for `s = 0 .. length-1`, in one `jax.lax.scan`.

    Args:
      body: `body(s, carry) -> (carry, y)`; `s` is an int32 scalar.
      init: the initial carry (a pytree).
      length: the number of steps, a Python int (shapes are static under JAX).
      output_dtype: unused (JAX infers it).

    Returns:
      `(carry, ys)` with `ys` `[length, *y.shape]` (a pytree like `y`).
    """
    del output_dtype

    def step(carry, s):
        return body(s, carry)

    return jax.lax.scan(step, init, jnp.arange(int(length), dtype=jnp.int32))


def compile_function(fn: Callable, jit_compile: bool = True) -> Callable:
    """`jax.jit(fn)`: JAX always compiles."""
    del jit_compile
    return jax.jit(fn)


def unit_scope(k: int, devices: Optional[Sequence[str]] = None):
    """Unit k's work: the name scope `stage_k` in profiles (devices are the placement's business)."""
    del devices
    return jax.named_scope(f"stage_{k}")


def placement(devices: Optional[Sequence[str]] = None, programs: bool = False):
    """None: every unit in one program (`placement.Placement`). A device per unit: with `programs`,
    one compiled program per device group driven from the host (`core.programs`); else one
    program over a "stage" mesh axis of the devices, each running its own units (`jax_stages`).

    Raises:
      ValueError: naming the entry of `devices` that is malformed or names no device JAX has.
    """
    from sideways_tf.core.placement import Placement

    if devices is None:
        return Placement()
    if programs:
        from sideways_tf.core.programs import ProgramsPlacement

        return ProgramsPlacement(devices)
    from sideways_tf.core.backends.jax_stages import StagePlacement

    return StagePlacement(devices)


def num_replicas() -> int:
    """Keras' JAX losses are not divided by replicas: 1."""
    return 1


def mean_over_replicas(values: list) -> list:
    """As they are: under a `keras.distribution` every statistic is already over the global batch."""
    return list(values)


def check_finite(x, message: str):
    """`x`; a training step that finds NaN or Inf in it keeps its old state and raises
    `FloatingPointError(message)` on the host (`jax_finite`: no host callback, which GPUs ignore)."""
    from sideways_tf.core.backends import jax_finite

    return jax_finite.check(x, message)


def assert_at_least(value, minimum: int, message: str):
    """Raises `ValueError(message)` when `value` < `minimum` (shapes are static under JAX)."""
    if int(value) < minimum:
        raise ValueError(message)


def optimizer_values(optimizer) -> list:
    """The optimizer's state as the frame loop carries it: its variables' values."""
    return [v.value for v in optimizer.variables]


def optimizer_step(place, optimizer, variables: Sequence, values: Sequence, optimizer_state: Sequence,
                   gradients: Sequence, keep: Optional[Sequence] = None) -> tuple[list, list]:
    """One optimizer step on explicit values, nothing assigned (it may run inside a traced loop):
    `place.optimizer_step`. Returns `(new values, new optimizer_state)`."""
    return place.optimizer_step(optimizer, variables, values, optimizer_state, gradients, keep)


def assign_step(variables: Sequence, values: Sequence, optimizer, optimizer_state: Sequence) -> None:
    """Puts a step's new values into the variables and the optimizer's."""
    for variable, value in zip([*variables, *optimizer.variables], [*values, *optimizer_state], strict=True):
        variable.assign(value)


def per_device_programs(devices: Optional[Sequence[str]], mode: str) -> bool:
    """Units over two devices or more run one compiled program per device group, for the pipelined rules."""
    return devices is not None and devices != "auto" and len(set(devices)) >= 2 and mode != "bp"


def _stateless(step: Callable, data, state, groups):
    """Runs a stateful step inside a `keras.StatelessScope`; returns `(logs, new state)`."""
    import keras

    mapping = [(v, x) for vs, xs in zip(groups, state, strict=True) for v, x in zip(vs, xs, strict=True)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = step(data)
    return logs, tuple([scope.get_current_value(v) for v in vs] for vs in groups)


def _checked(model) -> bool:
    return bool(model.check_finite or model.stop_on_nonfinite_loss)


def keras_train_step(model, step: Callable, args, checks) -> tuple:
    """Keras' JAX `train_step(state, data) -> (logs, state)` around `step(data) -> logs`, run statelessly.

    With checks (`check_finite`, `stop_on_nonfinite_loss`) the old state is kept where one failed
    (`jax_finite.hold`), and their messages go to `checks.messages`.
    """
    state, data = args
    groups = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
              model.metrics_variables)
    if not _checked(model):
        return _stateless(step, data, state, groups)
    from sideways_tf.core.backends import jax_finite

    with jax_finite.collecting() as found:
        logs, new_state = _stateless(step, data, state, groups)
    checks.messages = [message for _, message in found]
    return jax_finite.hold(logs, new_state, tuple(list(s) for s in state), found)


def keras_test_step(model, step: Callable, args) -> tuple:
    """Keras' JAX `test_step(state, data) -> (logs, state)` around `step(data) -> logs`."""
    state, data = args
    return _stateless(step, data, state, (model.trainable_variables, model.non_trainable_variables,
                                          model.metrics_variables))


def keras_train_function(model, function: Callable, checks, message: str) -> Callable:
    """Keras' train function, raising `FloatingPointError` (the failed check's message) after a step
    whose check failed, the state from before it put back into the variables first."""
    del message  # each check carries its own
    if getattr(function, "finite_checked", False) or not _checked(model):
        return function
    from sideways_tf.core.backends import jax_finite

    def keep(state):
        names = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")
        model._jax_state = dict(zip(names, state, strict=True))  # Keras' own record of the detached state
        model.jax_state_sync()
        checks.state_kept = True

    return jax_finite.raising(function, lambda: checks.messages, keep)


class keras_run:  # noqa: N801 (used as a function: `with backend.keras_run(model, checks):`)
    """Around Keras' `fit`, `evaluate` and `predict`: after a failure, the variables get the state of
    the last step that ran, or their values from before (Keras' JAX trainer detaches them while it
    runs and reattaches them only at the end of an epoch; a failed first step left them empty)."""

    def __init__(self, model, checks):
        self.model, self.checks = model, checks

    def __enter__(self):
        self.checks.state_kept = False  # a flag from an earlier call (train_on_batch) is stale
        model = self.model
        variables = [*model.trainable_variables, *model.non_trainable_variables, *model.metrics_variables]
        if getattr(model, "optimizer", None) is not None and model.optimizer.built:
            variables += list(model.optimizer.variables)
        self.before = [(v, v.value) for v in variables]
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is None or self.checks.state_kept:
            return False
        if getattr(self.model, "_jax_state", None):
            self.model.jax_state_sync()
            return False
        for variable, value in self.before:
            if not value.is_deleted():
                variable.assign(value)
        return False
