"""Picks the distribution engine for the machine: `tf.distribute` under TensorFlow, `keras.distribution` under JAX.

    strategy = sw.training.strategy("auto")     # TPU, several workers, local GPUs, or none
    with strategy.scope():
        model = sw.SidewaysModel(units, mode="skip_sideways")
        model.compile(...)
    model.fit(dataset)

Both kinds of object have `scope()`. Nothing home-made: the TensorFlow names give `TPUStrategy`,
`MultiWorkerMirroredStrategy`, `MirroredStrategy` or the default strategy; the JAX names give a
`keras.distribution.DataParallel` over the matching devices (after `keras.distribution.initialize`
for several processes). Each backend's part is `core/backends/{backend}_distribution.py`. The TPU
and multi-worker branches were not run on this project's CI machine (a CPU); the tests cover the
choices and the errors around them.
"""

from __future__ import annotations

from typing import Any, Optional

from sideways_tf.core import backends

STRATEGIES = ("auto", "tpu", "gpu", "cpu", "multiworker")
SingleDevice = backends.SingleDevice  # JAX without a distribution


def strategy(name: str = "auto", tpu: Optional[str] = None, coordinator: Optional[str] = None,
             num_processes: Optional[int] = None, process_id: Optional[int] = None) -> Any:
    """The distribution for `name` under the current Keras backend.

    Args:
      name: "auto" (a TPU if there is one, else several workers if `TF_CONFIG` names them, else
        the local GPUs, else no distribution), "tpu", "gpu", "cpu" (no distribution) or
        "multiworker" (TensorFlow: the workers in `TF_CONFIG`; JAX: the processes that
        `keras.distribution.initialize` finds in `KERAS_DISTRIBUTION_*` or the TPU environment).
      tpu: the TPU's name or `grpc://` address (default: `TPU_NAME`, `COLAB_TPU_ADDR`, or the TPU
        of this TPU VM).
      coordinator, num_processes, process_id: JAX's "multiworker" only: process 0's `host:port`,
        the number of processes and this one's index (`jax.distributed.initialize`'s arguments;
        default: from `KERAS_DISTRIBUTION_*` or the TPU environment). TensorFlow reads the
        cluster from `TF_CONFIG` instead.

    Returns:
      Under TensorFlow a `tf.distribute.Strategy`; under JAX a `keras.distribution.DataParallel`,
      already made the global distribution, or a `SingleDevice` for "cpu" and for "auto" without
      accelerators.

    Raises:
      ValueError: `name` is not one of `STRATEGIES`, or names hardware that is not there.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not one of {STRATEGIES}.")
    cluster = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    given = [k for k, v in cluster.items() if v is not None]
    if given and name != "multiworker":
        raise ValueError(f"{', '.join(given)} only apply to strategy='multiworker'; got strategy={name!r}.")
    return backends.distribution().make(name, cluster, tpu)


def num_replicas(distribution: Any) -> int:
    """Replicas a batch is split over: `num_replicas_in_sync`, or the devices of a JAX distribution."""
    if hasattr(distribution, "num_replicas_in_sync"):
        return int(distribution.num_replicas_in_sync)
    return int(distribution.device_mesh.devices.size)


def is_chief(distribution: Any) -> bool:
    """Whether this process writes the run's files: always, but in a cluster of several processes only
    the `chief` task (or worker 0 without one) under TensorFlow, process 0 under JAX."""
    return backends.distribution().is_chief(distribution)


def num_processes(distribution: Any) -> int:
    """The processes training together: TensorFlow's workers, JAX's processes (1 on one host)."""
    return backends.distribution().num_processes(distribution)


def barrier(distribution: Any) -> None:
    """Returns once every process has reached it (at once with a single process)."""
    if num_processes(distribution) == 1:
        return
    backends.distribution().barrier(distribution)
