"""Depth parallelism beyond the engine: grouping units over devices by time (`balance`), cutting
an existing Keras model into units (`split`), data and depth parallelism together
(`data_and_stages`, JAX) and the GPipe baseline (`gpipe`, JAX, imported on use).

`devices=` of `SidewaysModel` is the engine's (`core.placement`); this package helps choose it and
gives what to compare it with.
"""

from sideways_tf.parallel.balance import Balance, balance, grouped, partition
from sideways_tf.parallel.mesh import data_and_stages, stage_devices
from sideways_tf.parallel.split import cut_points, split, unfolded

__all__ = ["Balance", "balance", "cut_points", "data_and_stages", "grouped", "partition", "split", "stage_devices",
           "unfolded"]
