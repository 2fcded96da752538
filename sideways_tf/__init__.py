"""sideways_tf: depth-parallel training of video models with Sideways and Skip-Sideways."""

from sideways_tf import data, layers, models
from sideways_tf.core.schedule import MODES
from sideways_tf.core.shortcut import FUSIONS, SHORTCUTS
from sideways_tf.model import SidewaysModel

__version__ = "0.1.0"

__all__ = ["FUSIONS", "MODES", "SHORTCUTS", "SidewaysModel", "__version__", "data", "layers", "models"]
