"""sideways_tf: depth-parallel training of video models with Sideways and Skip-Sideways.

`import sideways_tf` needs only Keras and its backend: under `KERAS_BACKEND=jax` it does not
import TensorFlow. The TensorFlow-only parts (`sideways_tf.data`, built on tf.data and tfds, and
`sideways_tf.training`) are imported on first use of `sw.data` / `sw.training`; so is
`sw.streaming` and `sw.parallel`.
"""

import importlib

from sideways_tf import layers, models
from sideways_tf.core.schedule import MODES
from sideways_tf.core.shortcut import FUSIONS, SHORTCUTS
from sideways_tf.model import SidewaysModel
from sideways_tf.precision import highest_precision
from sideways_tf.receptive_field import temporal_receptive_field

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("data", "parallel", "streaming", "training")


def __getattr__(name):
    if name == "split":  # `sw.split(model, num_units)`: `sw.parallel.split`
        return importlib.import_module("sideways_tf.parallel").split
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"sideways_tf.{name}")
    raise AttributeError(f"module 'sideways_tf' has no attribute {name!r}")


__all__ = ["FUSIONS", "MODES", "SHORTCUTS", "SidewaysModel", "__version__", "data", "highest_precision", "layers",
           "models", "parallel", "split", "streaming", "temporal_receptive_field", "training"]
