"""Picks the distribution engine for the machine: `tf.distribute` under TensorFlow, `keras.distribution` under JAX.

    strategy = sw.training.strategy("auto")     # TPU, several workers, local GPUs, or none
    with strategy.scope():
        model = sw.SidewaysModel(units, mode="skip_sideways")
        model.compile(...)
    model.fit(dataset)

Both kinds of object have `scope()`. Nothing home-made: the TensorFlow names give `TPUStrategy`,
`MultiWorkerMirroredStrategy`, `MirroredStrategy` or the default strategy; the JAX names give a
`keras.distribution.DataParallel` over the matching devices (after `keras.distribution.initialize`
for several processes). A TPU is looked for only where one can be: a TPU device TensorFlow sees, or
the `TPU_NAME` / `COLAB_TPU_ADDR` variables that TPU runtimes set; the resolver is never asked to
search the network on a machine without them. The TPU and multi-worker branches were not run on
this project's CI machine (a CPU); the tests cover the choices and the errors around them.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Optional

import keras

STRATEGIES = ("auto", "tpu", "gpu", "cpu", "multiworker")
TPU_VARIABLES = ("TPU_NAME", "COLAB_TPU_ADDR")


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
    if keras.backend.backend() == "jax":
        return _jax_distribution(name, cluster)
    if given:
        raise ValueError(f"{', '.join(given)}: under TensorFlow the workers come from TF_CONFIG (every worker's "
                         "address and this process's task); set it instead (docs/distributed.md).")
    return _tf_strategy(name, tpu)


def _tf_strategy(name: str, tpu: Optional[str]):
    import tensorflow as tf

    if name == "auto":
        if tpu or _tpu_hint():
            name = "tpu"
        elif _tf_config_workers() > 1:
            name = "multiworker"
        elif tf.config.list_logical_devices("GPU"):
            name = "gpu"
        else:
            name = "cpu"
    if name == "tpu":
        return _tpu_strategy(tf, tpu)
    if name == "multiworker":
        if _tf_config_workers() < 1:
            raise ValueError("strategy='multiworker' needs TF_CONFIG naming the cluster's workers and this "
                             "process's task (docs/distributed.md shows one for two processes).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "gpu":
        gpus = tf.config.list_logical_devices("GPU")
        if not gpus:
            raise ValueError("strategy='gpu': TensorFlow sees no GPU on this machine (tf.config.list_logical_devices"
                             "('GPU') is empty); use 'auto' or 'cpu'.")
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    return tf.distribute.get_strategy()


def _tpu_strategy(tf, tpu: Optional[str]):
    address = tpu or os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
    if address and os.environ.get("COLAB_TPU_ADDR") == address and not address.startswith("grpc://"):
        address = f"grpc://{address}"
    if not address and not tf.config.list_physical_devices("TPU"):
        raise ValueError("strategy='tpu': no TPU was found (TensorFlow sees no TPU device, and neither tpu=, "
                         "TPU_NAME nor COLAB_TPU_ADDR is set). On Colab choose a TPU runtime; elsewhere pass tpu=.")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise ValueError(f"strategy='tpu': cannot connect to the TPU {address or 'of this TPU VM'}: {error}") from error
    return tf.distribute.TPUStrategy(resolver)


def _tpu_hint() -> bool:
    if any(os.environ.get(v) for v in TPU_VARIABLES):
        return True
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("TPU"))


def _tf_config_workers() -> int:
    """Workers (and chief) that `TF_CONFIG` names; 0 without it."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


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


class SingleDevice:
    """JAX without a distribution: what TensorFlow's default strategy is, a `scope()` that does nothing."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


def num_replicas(distribution: Any) -> int:
    """Replicas a batch is split over: `num_replicas_in_sync`, or the devices of a JAX distribution."""
    if hasattr(distribution, "num_replicas_in_sync"):
        return int(distribution.num_replicas_in_sync)
    return int(distribution.device_mesh.devices.size)


def is_chief(distribution: Any) -> bool:
    """Whether this process writes the run's files: always, but in a cluster of several processes only
    the `chief` task (or worker 0 without one) under TensorFlow, process 0 under JAX."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index() == 0
    resolver = getattr(distribution, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def num_processes(distribution: Any) -> int:
    """The processes training together: TensorFlow's workers, JAX's processes (1 on one host)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_count()
    resolver = getattr(distribution, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(job, [])) for job in ("chief", "worker"))


def barrier(distribution: Any) -> None:
    """Returns once every process has reached it (at once with a single process)."""
    if num_processes(distribution) == 1:
        return
    if keras.backend.backend() == "jax":
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("sideways_tf barrier")
        return
    import tensorflow as tf

    def all_reduce():
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.constant(1.0))

    tf.function(lambda: distribution.run(all_reduce))()

