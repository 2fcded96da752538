"""The TensorFlow backend of the engine: `GradientTape` VJPs and a `tf.while_loop` over frames."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional, Sequence

import tensorflow as tf

# Steps of the frame loop TensorFlow may run at once. More than one lets independent work of
# later steps start early, at the cost of holding several steps' activations: memory would then
# depend on the schedule, not on D.
PARALLEL_ITERATIONS = 1


def value_and_vjp(
    fn: Callable,
    primals: Sequence,
    cotangent=None,
    head: Optional[Callable] = None,
):
    """Runs `fn(*primals) -> (output, aux)` once and pulls a cotangent back to the primals.

    Exactly one of `cotangent` (shaped like `output`) and `head` (a scalar function of
    `output`, a loss) is given. `aux` is returned as computed and not differentiated.

    Args:
      fn: `fn(*primals) -> (output, aux)`.
      primals: tensors or nested lists of tensors to differentiate with respect to.
      cotangent: the incoming gradient about `output`.
      head: a scalar function of `output`.

    Returns:
      `(output, aux, head_value, primal_grads)`; `head_value` is None with a cotangent;
      `primal_grads` has the structure of `primals`, zeros where unconnected.
    """
    if (cotangent is None) == (head is None):
        raise ValueError("value_and_vjp needs exactly one of `cotangent` and `head`.")
    primals = list(primals)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(primals)
        output, aux = fn(*primals)
        head_value = head(output) if head is not None else None
    grads = tape.gradient(
        head_value if head is not None else output,
        primals,
        output_gradients=None if head is not None else cotangent,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return output, aux, head_value, grads


def scan(body: Callable, init, length, output_dtype):
    """`carry, y_s = body(s, carry)` for `s = 0 .. length-1`, in one `tf.while_loop`.

    Args:
      body: `body(s, carry) -> (carry, y)`; `s` is an int32 scalar tensor.
      init: the initial carry (a nest of tensors).
      length: the number of steps (int or scalar tensor).
      output_dtype: the dtype of `y`, or a nest of dtypes when `y` is a nest of tensors.

    Returns:
      `(carry, ys)` with `ys` `[length, *y.shape]` (a nest like `y`).
    """
    outputs = tf.nest.map_structure(lambda dtype: tf.TensorArray(dtype, size=length), output_dtype)

    def loop(s, carry, outputs):
        carry, y = body(s, carry)
        return s + 1, carry, tf.nest.map_structure(lambda array, value: array.write(s, value), outputs, y)

    _, carry, outputs = tf.while_loop(
        lambda s, *_: s < length,
        loop,
        (tf.constant(0), init, outputs),
        parallel_iterations=PARALLEL_ITERATIONS,
    )
    return carry, tf.nest.map_structure(lambda array: array.stack(), outputs)


def compile_function(fn: Callable, jit_compile: bool = False) -> Callable:
    """A `tf.function` of a pure function of tensors (XLA-compiled with `jit_compile`).

    The engine has no Python control flow on tensors, so AutoGraph is off: tracing does not
    depend on reading source files.
    """
    return tf.function(fn, reduce_retracing=True, jit_compile=jit_compile, autograph=False)


@contextlib.contextmanager
def unit_scope(k: int, devices: Optional[Sequence[str]] = None):
    """Unit k's work: the name scope `stage_k` (seen in graphs and profiles), on `devices[k]` if given."""
    with tf.name_scope(f"stage_{k}"), (tf.device(devices[k]) if devices else contextlib.nullcontext()):
        yield


def placement(devices: Optional[Sequence[str]] = None, programs: bool = False):
    """Units in one program, unit k's work in `tf.device(devices[k])` (`placement.Placement`).

    `programs` (one program per device, a JAX runtime) is ignored: TensorFlow's executor already
    runs the units of different `tf.device`s concurrently within one graph.

    Raises:
      ValueError: naming the entry of `devices` that names no device TensorFlow has.
    """
    from sideways_tf.core.placement import Placement

    del programs
    if devices is not None:
        check_devices(devices)
    return Placement(devices)


def check_devices(devices: Sequence[str]) -> None:
    """Every device string names a device TensorFlow has (logical devices, after any configuration)."""
    known = tf.config.list_logical_devices()
    for k, name in enumerate(devices):
        try:
            wanted = tf.DeviceSpec.from_string(name)
        except ValueError as error:
            raise ValueError(f"devices[{k}]={name!r} is not a device name: {error}") from error
        if not any(_same_device(wanted, tf.DeviceSpec.from_string(d.name)) for d in known):
            raise ValueError(f"devices[{k}]={name!r} names no device on this machine; TensorFlow has "
                             f"{[d.name for d in known]}.")


def _same_device(wanted, known) -> bool:
    if wanted.device_type and wanted.device_type.upper() != (known.device_type or "").upper():
        return False
    return wanted.device_index is None or wanted.device_index == known.device_index


def num_replicas() -> int:
    """Replicas in sync of the current `tf.distribute` strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def mean_over_replicas(values: list) -> list:
    """Float `values` averaged over the replicas of the current strategy; others and a lone replica as they are."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return list(values)
    floats = [i for i, v in enumerate(values) if v.dtype.is_floating]
    means = context.all_reduce(tf.distribute.ReduceOp.MEAN, [values[i] for i in floats]) if floats else []
    out = list(values)
    for i, mean in zip(floats, means, strict=True):
        out[i] = mean
    return out


def check_finite(x, message: str):
    """`x`, failing at run time with `message` if it holds NaN or Inf (use the returned tensor)."""
    return tf.debugging.assert_all_finite(x, message)


def assert_at_least(value, minimum: int, message: str):
    """Fails at run time with `message` when the int32 scalar `value` < `minimum` (shapes unknown while tracing)."""
    return tf.debugging.assert_greater_equal(value, tf.cast(minimum, value.dtype), message=message)


def optimizer_values(optimizer) -> tuple:
    """The optimizer's state as the frame loop carries it: nothing (it updates its variables in place)."""
    del optimizer
    return ()


def optimizer_step(place, optimizer, variables: Sequence, values: Sequence, optimizer_state,
                   gradients: Sequence, keep: Optional[Sequence] = None, consumes: bool = False) -> tuple[list, tuple]:
    """One optimizer step, applied to the variables in place (`place.apply_gradients`; inside the
    `tf.while_loop` in step order: `stateless_apply` refuses TensorFlow). A variable whose `keep`
    is True gets its old value back. Returns `(the values read back, optimizer_state)`. `consumes`
    changes nothing here (the variables are updated in place)."""
    del consumes
    place.apply_gradients(optimizer, gradients, variables)
    new = [v.value for v in variables]
    if keep is not None:
        new = [tf.where(k, old, value) for old, value, k in zip(values, new, keep, strict=True)]
        for variable, value in zip(variables, new, strict=True):
            variable.assign(value)
    return new, optimizer_state


def assign_step(variables: Sequence, values: Sequence, optimizer, optimizer_state) -> None:
    """Nothing: the step updated the variables in place."""
    del variables, values, optimizer, optimizer_state


def per_device_programs(devices: Optional[Sequence[str]], mode: str) -> bool:
    """Never: TensorFlow's executor runs the units of different `tf.device`s concurrently in one graph."""
    del devices, mode
    return False


@contextlib.contextmanager
def highest_precision() -> Iterator[None]:
    """TF32 execution switched off inside the block and restored after it (`sw.highest_precision`);
    TensorFlow functions traced before the block keep their kernels' choice."""
    enabled = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(enabled)


def device_names(num_devices: int) -> list[str]:
    """The first `num_devices` GPUs TensorFlow sees (else TPUs, else CPUs), as device names."""
    found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU") or \
        tf.config.list_logical_devices("CPU")
    return [d.name for d in found[:num_devices]]
