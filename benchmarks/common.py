"""Shared pieces of the benchmarks: the backend flag, the 8-unit VGG-style network, clips, reporting.

Importing this module reads `--backend tensorflow|jax` from the command line and sets
`KERAS_BACKEND` before Keras is imported, so every benchmark takes the flag.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

BACKENDS = ("tensorflow", "jax")


def backend_from_argv(argv: Sequence[str]) -> str:
    """The value of `--backend` in `argv` (default: `KERAS_BACKEND`, else tensorflow)."""
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return os.environ.get("KERAS_BACKEND", "tensorflow")


if backend_from_argv(sys.argv) in BACKENDS:
    os.environ["KERAS_BACKEND"] = backend_from_argv(sys.argv)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import sideways_tf as sw  # noqa: E402
from benchmarks.report import report  # noqa: E402, F401  (re-exported for the benchmarks)


def add_clip_flag(parser) -> None:
    """`--clip device|host`: the clip on the first device before timing (as `fit` has it when a step
    starts; the default), or NumPy on the host, copied again in every timed call."""
    parser.add_argument("--clip", default="device", choices=["device", "host"],
                        help="the clip on the first device before timing (as `fit` puts it), or NumPy on the host")


def add_backend_flag(parser, choices: Sequence[str] = BACKENDS) -> None:
    """`--backend` (read before Keras is imported; listed here for `--help`)."""
    parser.add_argument("--backend", default=os.environ["KERAS_BACKEND"] if "KERAS_BACKEND" in os.environ
                        else "tensorflow", choices=list(choices), help="the Keras backend to measure")


def split_cpu(num_devices: int = 2) -> None:
    """Splits the CPU into logical devices under TensorFlow; call before TensorFlow touches a device."""
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)


def vgg_style_units(num_classes: int = 51, width: int = 16) -> list:
    """An 8-unit VGG-style frame model for 112x112 frames (one weight layer per unit).

    Activations: 28x28xw, 14x14x2w, 14x14x4w, 14x14x4w, 7x7x4w, [16w], [8w], [num_classes];
    every shortcut of the skip modes is an integer-stride or global pool.
    """

    def conv(filters, kernel, strides=1, pool=False):
        layers = [keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False),
                  keras.layers.BatchNormalization(), keras.layers.ReLU()]
        if pool:
            layers.append(keras.layers.MaxPooling2D(2))
        return keras.Sequential(layers)

    return [
        conv(width, 7, strides=2, pool=True),
        conv(2 * width, 5, strides=2),
        conv(4 * width, 3),
        conv(4 * width, 3),
        conv(4 * width, 3, pool=True),
        keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(16 * width, activation="relu", use_bias=False)]),
        keras.layers.Dense(8 * width, activation="relu", use_bias=False),
        keras.layers.Dense(num_classes),
    ]


def compiled_model(mode: str, devices=None, width: int = 16, jit_compile="auto", **kwargs) -> sw.SidewaysModel:
    """The 8-unit VGG-style model in `mode`, compiled (`kwargs` go to `SidewaysModel`)."""
    keras.utils.set_random_seed(0)
    model = sw.SidewaysModel(vgg_style_units(width=width), mode=mode, devices=devices, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-4, clipvalue=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
    return model


def uint8_clips(batch: int, frames: int, size: int = 112, seed: int = 0) -> np.ndarray:
    """Random uint8 clips `[B, T, size, size, 3]`."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, frames, size, size, 3), dtype=np.uint8)


def median_seconds(function, args, reps: int) -> float:
    """Median wall time of `function(*args)` over `reps` calls, after one call that compiles it.

    Each call waits for its results (under JAX `jax.block_until_ready`, so that nothing is copied
    to the host; under TensorFlow their NumPy values).
    """
    import time

    if keras.backend.backend() == "jax":
        import jax

        wait = jax.block_until_ready
    else:
        def wait(x):
            return keras.tree.map_structure(np.asarray, x)

    wait(function(*args))
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        wait(function(*args))
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))
