"""`sw.training.strategy` under TensorFlow: `tf.distribute` strategies, and what a cluster of workers is.

`make` gives `TPUStrategy`, `MultiWorkerMirroredStrategy`, `MirroredStrategy` or the default
strategy. A TPU is looked for only where one can be: a TPU device TensorFlow sees, or the
`TPU_NAME` / `COLAB_TPU_ADDR` variables that TPU runtimes set; the resolver is never asked to
search the network on a machine without them. The workers of a cluster come from `TF_CONFIG`.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import tensorflow as tf

TPU_VARIABLES = ("TPU_NAME", "COLAB_TPU_ADDR")


def make(name: str, cluster: dict, tpu: Optional[str]):
    """The strategy for `name` (one of `training.distribution.STRATEGIES`); `cluster` holds JAX's
    process arguments, which TensorFlow takes from `TF_CONFIG` instead (an error names them)."""
    given = [k for k, v in cluster.items() if v is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: under TensorFlow the workers come from TF_CONFIG (every worker's "
                         "address and this process's task); set it instead (docs/distributed.md).")
    return _tf_strategy(name, tpu)


def _tf_strategy(name: str, tpu: Optional[str]):
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
        return _tpu_strategy(tpu)
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


def _tpu_strategy(tpu: Optional[str]):
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
    return bool(tf.config.list_physical_devices("TPU"))


def _tf_config_workers() -> int:
    """Workers (and chief) that `TF_CONFIG` names; 0 without it."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief(distribution: Any) -> bool:
    """Whether this process writes the run's files: the `chief` task, or worker 0 without one."""
    resolver = getattr(distribution, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def num_processes(distribution: Any) -> int:
    """The workers (and chief) training together; 1 without a cluster."""
    resolver = getattr(distribution, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(job, [])) for job in ("chief", "worker"))


def barrier(distribution: Any) -> None:
    """Returns once every worker has reached it (an all-reduce across them)."""
    def all_reduce():
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.constant(1.0))

    tf.function(lambda: distribution.run(all_reduce))()
