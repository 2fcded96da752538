"""Depth parallelism beyond the engine: grouping units over devices by time (`balance`) and the
GPipe baseline (`gpipe`, JAX, imported on use).

`devices=` of `SidewaysModel` is the engine's (`core.placement`); this package helps choose it and
gives what to compare it with.
"""

from sideways_tf.parallel.balance import Balance, balance, partition

__all__ = ["Balance", "balance", "partition"]
