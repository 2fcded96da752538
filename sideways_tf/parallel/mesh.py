"""Data and depth parallelism together under JAX: a Keras distribution over a (batch, stage) mesh.

Each row of the mesh is one data replica: it trains on its share of the batch with the units
spread over its devices along the "stage" axis (`SidewaysModel(devices=...)` names the devices
of the first row). Each group of units runs one program over its stage of every replica
(`core.programs`), mapped over the replicas (`core.replicas`): each keeps its own gradient sums
and batch-norm statistics, merged once per update.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from sideways_tf.core import backends


def data_and_stages(num_stages: int, devices: Optional[Sequence[str]] = None):
    """A `keras.distribution.ModelParallel` over a `(batch, stage)` mesh, variables replicated.

    Example (4 GPUs: 2 replicas of 2 stages):
    ```python
    keras.distribution.set_distribution(sw.parallel.data_and_stages(2))
    plan = sw.parallel.balance(units, (112, 112, 3), 2)  # devices of the first replica
    model = sw.SidewaysModel(units, mode="skip_sideways", devices=plan.devices)
    ```

    Args:
      num_stages: devices per replica (the "stage" axis).
      devices: the devices to use (default: every device Keras lists), row by row: the first
        `num_stages` form replica 0.

    Returns:
      The distribution (not set: pass it to `keras.distribution.set_distribution`).

    Raises:
      ValueError: when the device count is not a multiple of `num_stages`, or not JAX.
    """
    backends.require("jax", "a data x stage mesh")
    devices = list(devices) if devices is not None else keras.distribution.list_devices()
    if num_stages < 1 or len(devices) % num_stages:
        raise ValueError(f"`num_stages` must divide the number of devices ({len(devices)}); got {num_stages}.")
    mesh = keras.distribution.DeviceMesh((len(devices) // num_stages, num_stages), ["batch", "stage"], devices)
    return keras.distribution.ModelParallel(layout_map=keras.distribution.LayoutMap(mesh), batch_dim_name="batch")


def stage_devices() -> Optional[list[str]]:
    """The first replica's devices along the "stage" axis of the current distribution, as names (or None)."""
    if not backends.is_running("jax"):
        return None
    import jax

    from sideways_tf.core.backends.jax_stages import distribution_mesh, first_replica

    mesh = distribution_mesh()
    if mesh is None:
        return None
    return [f"{d.platform}:{jax.devices(d.platform).index(d)}" for d in first_replica(mesh)]
