"""What differs between Keras backends, and nothing else.

Each backend module provides the same functions:

* `value_and_vjp(fn, primals, cotangent=None, head=None)`: a unit's output and its
  vector-Jacobian product at given inputs (TF: `GradientTape`; JAX: `jax.vjp`);
* `scan(body, init, length, output_dtype)`: the frame loop, never differentiated
  (TF: `tf.while_loop` + `TensorArray`; JAX: `jax.lax.scan`);
* `compile_function(fn, jit_compile)`: a compiled pure function (`tf.function` / `jax.jit`);
* `unit_scope(k, devices)`: the name scope of unit k's work, on `devices[k]` (TF: `tf.device`);
* `placement(devices)`: where the units run (`placement.Placement`; TF: each unit in its
  `tf.device`; JAX: one program over a "stage" mesh axis of the devices, `jax_stages`);
* `num_replicas()`: replicas of the current data-parallel strategy (what Keras' losses divide by);
* `mean_over_replicas(values)`: batch-norm statistics averaged over those replicas (TF:
  `all_reduce` in the replica context; JAX: as they are, already over the global batch);
* `check_finite(x, message)`: `x`, failing with `message` at run time if it holds NaN or Inf
  (TF: `tf.debugging.assert_all_finite`; JAX: a flag of the step, raised on the host,
  `jax_finite`);
* `assert_at_least(value, minimum, message)`: a run-time check of a size unknown while tracing
  (TF: `tf.debugging.assert_greater_equal`; JAX: shapes are static, a Python check);
* `optimizer_values(optimizer)`: the optimizer's state as the frame loop carries it (TF: nothing;
  JAX: its variables' values);
* `optimizer_step(place, optimizer, variables, values, optimizer_state, gradients, keep, consumes)`:
  one optimizer update on explicit values (TF: applied in place, in step order inside the loop;
  JAX: stateless, `Placement.optimizer_step`; with `consumes`, a clip's one update after all its
  checks, per-device programs take over the old values' memory and hold a refused step themselves);
* `assign_step(variables, values, optimizer, optimizer_state)`: a step's new values into the
  variables (TF: nothing, already in place; JAX: assigned);
* `per_device_programs(devices, mode)`: whether units over `devices` run one compiled program
  per device group (TF: never; JAX: over two devices or more, for the pipelined rules);
* `highest_precision()`: a block with float32 matmuls at full precision (`sw.highest_precision`);
* `device_names(n)`: the first n devices to put units on (TF: GPUs, else TPUs, else CPUs; JAX:
  its default platform's);

and, in the module `trainer()` returns (`{backend}_keras.py`), the five pieces of Keras' trainer
around a model's step, whose contracts differ (TF: `train_step(data)`, stateful; JAX:
`train_step(state, data) -> (logs, state)`, stateless): `keras_train_step(model, step, args,
checks)`, `keras_test_step(model, step, args)`, `keras_train_function(model, function, checks,
message)` (raising on the host when a step's check failed), `own_step(model, body, donate)` (a
step the backend compiles itself instead of Keras, or None: JAX on NVIDIA GPUs, for XLA options)
and `keras_run(model, checks)` (around `fit`, `evaluate` and `predict`: JAX puts the variables
back after a failure). `StepChecks` carries what they hand each other.

The module of the running backend is imported on first use, so `import sideways_tf` under
`KERAS_BACKEND=jax` never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from types import ModuleType
from typing import Optional

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax")


@dataclasses.dataclass
class StepChecks:
    """What a model's training step, Keras' train function and `fit` hand each other.

    Attributes:
      messages: the messages of the checks the last traced step made, in the order of their flags (JAX).
      held_losses: while a step is traced, the list its loss goes to, to be checked by the caller
        that holds the step's state (TensorFlow, `stop_on_nonfinite_loss`); else None.
      state_kept: a failed step's state was put back into the variables (JAX), which `keras_run`
        must then leave alone.
    """

    messages: list = dataclasses.field(default_factory=list)
    held_losses: Optional[list] = None
    state_kept: bool = False


class SingleDevice:
    """JAX without a distribution: what TensorFlow's default strategy is, a `scope()` that does nothing."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


_LOADED: dict = {}


def current() -> ModuleType:
    """The backend module of the Keras backend in use (`keras.backend.backend()`).

    Raises:
      ValueError: under a Keras backend other than TensorFlow or JAX.
    """
    return _load("backend")


def trainer() -> ModuleType:
    """The Keras-trainer glue of the Keras backend in use (`jax_keras` or `tensorflow_keras`).

    Raises:
      ValueError: under a Keras backend other than TensorFlow or JAX.
    """
    return _load("keras")


def require(backend: str, feature: str, advice: str = "") -> None:
    """Raises a `ValueError` saying that `feature` runs under `KERAS_BACKEND=backend` only, and which
    backend runs now (then `advice`), when another one does."""
    if keras.backend.backend() != backend:
        raise ValueError(f"{feature} runs under KERAS_BACKEND={backend}; the backend is {keras.backend.backend()!r}."
                         + (f" {advice}" if advice else ""))


def is_running(backend: str) -> bool:
    """Whether the Keras backend in use is `backend` (for what exists under one backend only)."""
    return keras.backend.backend() == backend


def distribution() -> ModuleType:
    """`sw.training.strategy`'s backend part (`jax_distribution` or `tensorflow_distribution`): `make`,
    `is_chief`, `num_processes`, `barrier`.

    Raises:
      ValueError: under a Keras backend other than TensorFlow or JAX.
    """
    return _load("distribution")


def _load(part: str) -> ModuleType:
    """`sideways_tf.core.backends.{backend}_{part}`, imported on first use."""
    name = keras.backend.backend()
    if name not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"sideways_tf runs under KERAS_BACKEND={' or '.join(SUPPORTED_BACKENDS)}; the Keras backend is {name!r}."
        )
    key = f"{name}_{part}"
    if key not in _LOADED:
        _LOADED[key] = importlib.import_module(f"sideways_tf.core.backends.{key}")
    return _LOADED[key]
