"""Layers for Sideways units: space-(time-)to-depth, rematerialization, HardTanh."""

from sideways_tf.layers.activations import HardTanh
from sideways_tf.layers.remat import Remat
from sideways_tf.layers.space_to_depth import DepthToSpace, DepthToSpaceTime, SpaceTimeToDepth, SpaceToDepth

__all__ = ["DepthToSpace", "DepthToSpaceTime", "HardTanh", "Remat", "SpaceTimeToDepth", "SpaceToDepth"]
