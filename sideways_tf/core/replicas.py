"""Data x depth: each group's step runs once per data replica, and its sums are merged once per update.

Under `sw.parallel.data_and_stages`, a device group runs on the same stage of every replica (its
"column" of the mesh), each replica on its share of the batch. A group's step is mapped over the
replicas (`shard_map` over the column's "batch" axis), so each replica computes its own frame
with no collective: its clips' pieces, its batch-norm statistics, and its own gradient sums,
counts and loss. Each replica's loss is divided by the number of replicas, as Keras and
`tf.distribute` scale a replica's loss, so that its gradient messages and sums are its share of
the whole batch's (for a loss averaged over the batch, Keras' default reduction). What a replica
keeps of its own carries a leading replica axis `[R, ...]` split over the column
(`PER_REPLICA`); per-example arrays `[B, ...]` are split on their batch axis, and `[T, B, ...]`
buffers on their second axis.

The replicas meet only when a window is read (`merged`, once per update or clip): a unit's
gradient sums and the loss are the sums of the replicas' (`SUMMED`), its counts and the
batch-norm moving statistics their means. As under MirroredStrategy, batch norm normalizes each
replica's clips by their own statistics.

    frame s, replica r (every r at once, no collective):
        carry[r] = step(params, carry[r], inbox[r], clips of r)        (loss / R)
    update:  gradient_k = sum_r acc_k[r] / mean_r counts_k[r]          (one all-reduce per array)
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

AXIS = "batch"
# What each replica keeps of its own: a leading replica axis.
PER_REPLICA = ("states", "acc", "counts", "loss_sum", "loss_count")
# Of those, the ones that are shares of the whole batch's: summed over the replicas (the rest: averaged).
SUMMED = ("acc", "loss_sum")
# Buffers over the frames of the clip, `[T, B, ...]` (or the delay line `[L, B, ...]`).
OVER_TIME = ("outputs", "valid", "line", "targets")
# The same on every replica.
SHARED = ("s", "open")


def count(group) -> int:
    """How many data replicas a group (`group_steps.Group`) runs on (1 without a data x depth mesh)."""
    batched = group.batched
    if isinstance(batched, NamedSharding) and AXIS in batched.mesh.axis_names:
        return batched.mesh.shape[AXIS]
    return 1


def spec(key: str) -> PartitionSpec:
    """How a carry entry is split over the replicas."""
    if key in SHARED:
        return PartitionSpec()
    if key in OVER_TIME:
        return PartitionSpec(None, AXIS)
    return PartitionSpec(AXIS)  # PER_REPLICA, and the per-example "steps" and "pieces"


def shardings(carry: dict, group) -> dict:
    """Each carry entry's sharding on the group's column of the mesh."""
    mesh = group.batched.mesh
    return {key: NamedSharding(mesh, spec(key)) for key in carry}


def _shard_map(fn: Callable, mesh, in_specs, out_specs) -> Callable:
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map

    return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def per_replica(step: Callable, group) -> Callable:
    """`step(params, carry, spare, inbox, video, labels, sample_weight, starts) -> (carry, outbox)`
    mapped over the group's replicas: each runs it on its own clips and its own `PER_REPLICA` entries
    (seen without the replica axis), the parameters shared."""
    mesh = group.batched.mesh
    batch = PartitionSpec(AXIS)

    def mapped(params, carry, spare, inbox, video, labels, sample_weight, starts):
        carry_specs = {key: spec(key) for key in carry}

        def local(params, carry, spare, inbox, video, labels, sample_weight, starts):
            own = {key: jax.tree.map(lambda x: x[0], carry[key]) for key in PER_REPLICA if key in carry}
            new, outbox = step(params, {**carry, **own}, spare, inbox, video, labels, sample_weight, starts)
            own = {key: jax.tree.map(lambda x: x[None], new[key]) for key in PER_REPLICA if key in new}
            return {**new, **own}, outbox

        return _shard_map(local, mesh, (PartitionSpec(), carry_specs, batch, batch, batch, batch, batch, batch),
                          (carry_specs, batch))(params, carry, spare, inbox, video, labels, sample_weight, starts)

    return mapped


@functools.lru_cache(maxsize=64)
def _spreader(mesh, replicas: int, keys: tuple) -> Callable:
    out = {key: NamedSharding(mesh, spec(key)) for key in keys}
    def spread_one(key, x):
        return jnp.broadcast_to(x / replicas if key in SUMMED else x, (replicas,) + x.shape)

    return jax.jit(lambda fields: {key: jax.tree.map(functools.partial(spread_one, key), value)
                                   for key, value in fields.items()}, out_shardings=out)


def spread(carry: dict, group) -> dict:
    """A carry in the single-device form, for the group's replicas: each `PER_REPLICA` entry on a
    leading replica axis, every entry on its sharding (`shardings`). Each replica starts from the
    same states and counts and from its share (1 / R) of the sums, so that `merged` gives them back.
    """
    replicas = count(group)
    if replicas == 1:
        return carry
    fields = {key: carry[key] for key in PER_REPLICA if key in carry}
    mesh = group.batched.mesh
    spread_fields = _spreader(mesh, replicas, tuple(sorted(fields)))(fields)
    rest = {key: value for key, value in carry.items() if key not in fields}
    return {**jax.device_put(rest, shardings(rest, group)), **spread_fields}


@jax.jit
def _merge(fields: dict) -> dict:
    def merge(key, x):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            return x[0]  # integer state (a seed generator's): the same on every replica
        reduce = jnp.sum if key in SUMMED else jnp.mean
        return reduce(x.astype(jnp.float32), axis=0).astype(x.dtype)

    merged = {key: jax.tree.map(functools.partial(merge, key), fields[key])
              for key in ("states", "acc", "counts", "loss_sum") if key in fields}
    if "loss_count" in fields:  # the steps where any clip of the whole batch was scored
        merged["loss_count"] = jnp.sum(jnp.any(fields["valid"], axis=1)).astype(jnp.float32)
    return merged


def merged(carry: dict, replicas: int) -> dict:
    """A group's carry in the single-device form: its replicas' gradient sums and loss summed, their
    counts and states averaged, the loss' count of scored steps taken over the whole batch. With
    one replica, `carry` itself.
    """
    if replicas == 1:
        return carry
    fields = {key: carry[key] for key in (*PER_REPLICA, "valid") if key in carry}
    if "valid" not in fields:
        fields.pop("loss_count", None)
    return {**carry, **_merge(fields)}
