"""`sw.training.strategy` under JAX: a `keras.distribution.DataParallel` over the matching devices.

Several processes are joined by `keras.distribution.initialize` first (its `KERAS_DISTRIBUTION_*`
variables or the TPU environment, or the arguments given). Without accelerators (or for "cpu")
there is no distribution: `SingleDevice`, whose `scope()` does nothing, as TensorFlow's default
strategy.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import keras
from jax.experimental import multihost_utils

from sideways_tf.core.backends import SingleDevice


def make(name: str, cluster: dict, tpu: Optional[str]):
    """The distribution for `name` (one of `training.distribution.STRATEGIES`); `cluster`: the
    coordinator, number of processes and this process' index ("multiworker"). `tpu` is TensorFlow's."""
    del tpu
    return _jax_distribution(name, cluster)


def _jax_distribution(name: str, cluster: dict):
    if name == "multiworker":
        if cluster["num_processes"] is not None and (cluster["num_processes"] < 1 or not (
                0 <= (cluster["process_id"] if cluster["process_id"] is not None else 0) < cluster["num_processes"])):
            raise ValueError(f"num_processes={cluster['num_processes']} and process_id={cluster['process_id']}: "
                             "need num_processes >= 1 and 0 <= process_id < num_processes.")
        keras.distribution.initialize(job_addresses=cluster["coordinator"], num_processes=cluster["num_processes"],
                                      process_id=cluster["process_id"])
        return _data_parallel(keras.distribution.list_devices())
    if name == "auto":
        for kind in ("tpu", "gpu"):
            devices = _jax_devices(kind)
            if devices:
                return _data_parallel(devices)
        return SingleDevice()
    if name == "cpu":
        return SingleDevice()
    devices = _jax_devices(name)
    if not devices:
        raise ValueError(f"strategy={name!r}: JAX sees no {name.upper()} on this machine; use 'auto' or 'cpu'.")
    return _data_parallel(devices)


def _jax_devices(kind: str) -> list:
    try:
        return keras.distribution.list_devices(kind)
    except RuntimeError:  # JAX: "Unknown backend" when the platform is not there
        return []


def _data_parallel(devices: list):
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    return distribution


def is_chief(distribution: Any) -> bool:
    """Whether this process writes the run's files: process 0."""
    return jax.process_index() == 0


def num_processes(distribution: Any) -> int:
    """JAX's processes (1 on one host)."""
    return jax.process_count()


def barrier(distribution: Any) -> None:
    """Returns once every process has reached it."""
    multihost_utils.sync_global_devices("sideways_tf barrier")
