"""Test session setup for both Keras backends.

Under TensorFlow: two logical CPU devices and one shared MirroredStrategy, both set up before
TensorFlow initialises its devices, hence at import time here. Under JAX (`KERAS_BACKEND=jax`)
tests marked `tensorflow_only` are skipped with their reason, and so are tests marked
`backend_independent` (argument checks, tf.data-only pipelines, the BUILD file, tests that start
both backends themselves): they ran in the TensorFlow pass. Everything else runs, a tf.data
pipeline feeding a JAX model and the training CLI end to end included. Where
TensorFlow is not installed at all, the folders that need it are not collected.
"""

import importlib.util
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()

# Test folders that import TensorFlow (tf.data/tfds pipelines, the training front end).
NEEDS_TENSORFLOW = ("data", "training", "reproduce")

# Where TensorFlow is not installed at all (the GPU machines carry only JAX and Keras), the
# TensorFlow-only folders cannot even be imported: leave them out of collection.
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
collect_ignore_glob = [] if HAS_TENSORFLOW else [f"{folder}/*" for folder in NEEDS_TENSORFLOW]

if BACKEND == "tensorflow":
    import tensorflow as tf

    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )

_STRATEGY = None


def pytest_configure(config):
    config.addinivalue_line("markers", "tensorflow_only(reason): the test needs the TensorFlow backend")
    config.addinivalue_line("markers", "backend_independent(reason): the code under test is the same under both "
                                       "backends, so the test runs in the TensorFlow pass only")


def pytest_addoption(parser):
    parser.addoption("--shard", default=None, metavar="K/N",
                     help="run only the K-th of N shares of the collected test files (every N-th file in "
                          "sorted order, from the K-th), for runs that must fit a time limit")


def _shard(config, items) -> None:
    """Keeps the `--shard K/N` share of `items` (whole files), deselecting the rest."""
    spec = config.getoption("--shard")
    if spec is None:
        return
    match = re.fullmatch(r"(\d+)/(\d+)", spec)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise pytest.UsageError(f"--shard takes K/N with 1 <= K <= N (e.g. --shard 1/3); got {spec!r}")
    shard, shards = int(match[1]), int(match[2])
    keep = set(sorted({item.path for item in items})[shard - 1::shards])
    deselected = [item for item in items if item.path not in keep]
    items[:] = [item for item in items if item.path in keep]
    config.hook.pytest_deselected(items=deselected)


def pytest_collection_modifyitems(config, items):
    _shard(config, items)
    if BACKEND == "tensorflow":
        return
    for item in items:
        for name, prefix in (("tensorflow_only", "TensorFlow only"), ("backend_independent", "backend-independent")):
            marker = item.get_closest_marker(name)
            if marker is not None:
                reason = marker.args[0] if marker.args else prefix
                item.add_marker(pytest.mark.skip(reason=f"{prefix}: {reason}"))
                break


@pytest.fixture(autouse=True)
def _highest_precision():
    """Every test at full float32 precision under JAX: exactness is checked to about 1e-5, and JAX
    runs float32 matmuls and convolutions in TF32 on NVIDIA GPUs by default (`sw.highest_precision`)."""
    if BACKEND != "jax":
        yield
        return
    from sideways_tf.precision import highest_precision

    with highest_precision():
        yield


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole session (two break collectives)."""
    global _STRATEGY
    if _STRATEGY is None:
        import tensorflow as tf

        _STRATEGY = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
    return _STRATEGY
