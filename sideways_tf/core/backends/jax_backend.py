"""The JAX backend of the engine: `jax.vjp` and a `jax.lax.scan` over frames.

Everything here is traced: no Keras variable is read or assigned inside the loop; parameters and
non-trainable state arrive as arrays and leave in the loop carry.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp

from sideways_tf.core.backends.jax_graphs import GraphJit


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
    """`jax.jit(fn)` (JAX always compiles), on NVIDIA GPUs with convolutions in CUDA graphs
    (`jax_graphs.GraphJit`)."""
    del jit_compile
    return GraphJit(fn)


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
                   gradients: Sequence, keep: Optional[Sequence] = None, consumes: bool = False) -> tuple[list, list]:
    """One optimizer step on explicit values, nothing assigned (it may run inside a traced loop):
    `place.optimizer_step`. Returns `(new values, new optimizer_state)`.

    `consumes`: `values` and `optimizer_state` are not read again and every check of the step is
    known (`jax_finite.refused`): the update may take over their memory, holding a refused step
    itself.
    """
    hold = None
    if consumes:
        from sideways_tf.core.backends import jax_finite

        refused = jax_finite.refused()
        hold = False if refused is None else refused
    return place.optimizer_step(optimizer, variables, values, optimizer_state, gradients, keep, hold)


def assign_step(variables: Sequence, values: Sequence, optimizer, optimizer_state: Sequence) -> None:
    """Puts a step's new values into the variables and the optimizer's."""
    for variable, value in zip([*variables, *optimizer.variables], [*values, *optimizer_state], strict=True):
        variable.assign(value)


def per_device_programs(devices: Optional[Sequence[str]], mode: str) -> bool:
    """Units over two devices or more run one compiled program per device group, for the pipelined rules."""
    return devices is not None and devices != "auto" and len(set(devices)) >= 2 and mode != "bp"


@contextlib.contextmanager
def highest_precision() -> Iterator[None]:
    """Float32 matmuls and convolutions at full precision inside the block (`sw.highest_precision`)."""
    with jax.default_matmul_precision("highest"):
        yield


def device_names(num_devices: int) -> list[str]:
    """The first `num_devices` devices JAX has (its default platform's), as device names."""
    return [f"{d.platform}:{i}" for i, d in enumerate(jax.devices()[:num_devices])]
