"""Test session setup: two logical CPU devices and one shared MirroredStrategy.

Both must happen before TensorFlow initialises its devices, hence at import time here.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

_STRATEGY = None


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole session (two break collectives)."""
    global _STRATEGY
    if _STRATEGY is None:
        _STRATEGY = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
    return _STRATEGY
