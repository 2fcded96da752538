"""`sw.highest_precision()`: float32 matmuls and convolutions at full float32 precision, on any device.

On NVIDIA GPUs JAX (and TensorFlow on Ampere and newer) runs float32 matrix products and
convolutions in TF32 by default: a 10-bit mantissa, about 1e-3 relative error per product. That
is usually fine for training but hides the engine's promise that pseudo-gradients equal exact
backprop to about 1e-5 (`docs/backends.md`). Inside this block they run at full float32
precision; compiled functions traced inside it are compiled for it (under JAX the precision is
part of `jax.jit`'s cache key).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras

from sideways_tf.core import backends


@contextlib.contextmanager
def highest_precision() -> Iterator[None]:
    """Float32 matmuls and convolutions at full precision inside the block (no TF32, no bf16 passes).

    Example:
    ```python
    with sw.highest_precision():
        pseudo = model.pseudo_gradients(video, labels)
        exact = model.exact_gradients(video, labels)   # equal to ~1e-5 on a constant clip
    ```

    Under JAX: `jax.default_matmul_precision("highest")`. Under TensorFlow: TF32 execution
    switched off (`tf.config.experimental.enable_tensor_float_32_execution(False)`) and restored
    after the block; TensorFlow functions traced before the block keep their kernels' choice.
    """
    if keras.backend.backend() not in backends.SUPPORTED_BACKENDS:
        yield
        return
    with backends.current().highest_precision():
        yield
