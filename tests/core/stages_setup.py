"""What the checks of `stages_worker.py` share: the devices they use, placements, and models.

Imported in the worker's process, where JAX starts with several devices (host devices on the CPU
platform, or the GPUs with `STAGES_PLATFORM=gpu`).
"""

import os

import jax
import keras
import numpy as np

import sideways_tf as sw
from tests.helpers import compiled, conv_units

PLATFORM = os.environ.get("STAGES_PLATFORM", "cpu")
NUM_DEVICES = min(4, len(jax.devices(PLATFORM)))


def names(*indices: int) -> list[str]:
    """Device names of `PLATFORM` for device indices written for 4 devices (modulo the count)."""
    return [f"{PLATFORM}:{i % NUM_DEVICES}" for i in indices]


# Groups of consecutive units, one unit per device, and groups that are not consecutive:
# shortcuts (h_{k-2}) then cross one or two device boundaries, forward and back.
PLACEMENTS = {
    "grouped": names(0, 0, 1, 1, 1),
    "one_per_device": names(0, 1, 2, 3, 0),
    "interleaved": names(1, 0, 1, 0, 0),
}
MODES = ("sideways", "skip_sideways", "fa_skip_sideways")


def model_on(devices, mode, units=lambda: conv_units(), **kwargs):
    """A compiled model of `units()` placed on `devices` (None: one device), seeded for equal weights."""
    keras.utils.set_random_seed(0)
    return compiled(sw.SidewaysModel(units(), mode=mode, devices=devices, **kwargs), keras.optimizers.Adam(0.01))


def pair_on(devices, mode, units=lambda: conv_units(), **kwargs):
    """A model placed on `devices` and the same model (same weights) on one device."""
    return model_on(devices, mode, units, **kwargs), model_on(None, mode, units, **kwargs)


def close(actual, expected, what, atol=1e-5):
    assert len(actual) == len(expected), what
    for k, (a, b) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=1e-4, err_msg=f"{what} [{k}]")
