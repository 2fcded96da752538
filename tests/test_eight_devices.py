"""The papers' scale on CPU: 8 units, one per device over 8 logical CPUs, give the one-device gradients.

The test session has 2 logical CPUs (`conftest.py`), set before TensorFlow starts; 8 need a process of
their own, started here.
"""

import os
import subprocess
import sys

import pytest

from tests.helpers import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = r"""
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 8)
import keras
import sideways_tf as sw
from tests.helpers import compiled, dense_units, random_clip

video, labels = random_clip((2, 17, 6)), np.array([0, 2])
devices = [f"/CPU:{k}" for k in range(8)]
for mode in ("sideways", "skip_sideways", "fa_skip_sideways"):
    keras.utils.set_random_seed(0)
    placed = compiled(sw.SidewaysModel(dense_units(8), mode=mode, devices=devices))
    placed.build(video.shape)
    alone = compiled(sw.SidewaysModel(dense_units(8), mode=mode))
    alone.build(video.shape)
    alone.set_weights(placed.get_weights())
    pairs = list(zip(placed.pseudo_gradients(video, labels), alone.pseudo_gradients(video, labels), strict=True))
    assert len(pairs) == 16
    for a, b in pairs:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert max(float(np.abs(np.asarray(a)).max()) for a, _ in pairs) > 0
    print(mode, "equal on 8 devices")
"""


@pytest.mark.tensorflow_only("devices= places units with tf.device")
def test_one_unit_per_device_over_eight_logical_cpus():
    env = subprocess_env(KERAS_BACKEND="tensorflow")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("equal on 8 devices") == 3
