"""Keras' JAX trainer around a `SidewaysModel`'s step: `train_step(state, data) -> (logs, state)`, stateless.

The model's own step is stateful (it reads and assigns variables); here it runs inside a
`keras.StatelessScope` mapping every variable to Keras' state, and the new state is read back.
The run-time checks (`check_finite`, `stop_on_nonfinite_loss`) are flags of the step, raised on
the host after it (`jax_finite`).
"""

from __future__ import annotations

from typing import Callable, Optional

import keras

from sideways_tf.core.backends import jax_graphs


def _stateless(step: Callable, data, state, groups):
    """Runs a stateful step inside a `keras.StatelessScope`; returns `(logs, new state)`."""
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


def own_step(model, body: Callable, donate: bool) -> Optional[Callable]:
    """Keras' JAX step `body(state, data) -> (outputs, state)` compiled here with the package's XLA
    options (`jax_graphs`: convolutions in CUDA graphs on NVIDIA GPUs), where Keras would compile it
    with `jax.jit` and none. `donate`: the state, as Keras donates it.

    None (Keras compiles it, or runs it eagerly) where the options do not apply or Keras' own
    compilation is needed: `jit_compile` off or `run_eagerly`, a model not built yet or on per-device
    programs, a `keras.distribution` (Keras lays out the state over its devices).
    """
    engine = getattr(model, "engine", None)
    if (model.run_eagerly or not model.jit_compile or engine is None or engine.programs
            or keras.distribution.distribution() is not None or not jax_graphs.compiler_options()):
        return None
    return jax_graphs.GraphJit(body, donate_argnums=(0,) if donate else ())


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
