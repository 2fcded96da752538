"""Units over devices under JAX: one compiled program over a "stage" mesh axis.

The frame loop runs inside `shard_map` over a one-axis mesh of the distinct devices of
`devices=`. Every device runs the same program, but at each step a `lax.switch` on its index in
the axis computes only its own group of units; for the others it passes on their state and
produces zeros. Each device accumulates its own units' gradients in one packed buffer, added to
after the switch (`carry_accumulators`), so no accumulator passes through a branch (XLA would
copy it at every step). What a unit reads from a unit on another device (the activation
`h_k`, through a shortcut `h_{k-2}`, a gradient message) crosses with a `ppermute` from producer
to reader, once per step and pair of devices. At the end of the loop each unit's results are
taken from its own device (a `psum` of values masked to that device), so the loop's results are
the same on every device and equal the single-device ones.

Parameters and the optimizer state are replicated on every device (the optimizer step inside a
streaming loop runs on each); only the per-step work and the accumulated gradients are split.
`data_and_stages` adds a data axis, left to XLA's automatic partitioning.

Models of a pipelined rule run one program per device group instead (`core.programs`), which
does not drain every device at every frame; this runtime remains for `"bp"` models with
`devices=` (whose training is per frame in one program anyway) and GPipe's `runtime="mesh"`.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from sideways_tf.core.placement import Placement, UnitWork, groups_of

AXIS = "stage"
# Keras' JAX trainer before 3.12 constrains every variable to the device it lives on inside the
# step (`_enforce_jax_state_sharding`), which a program over several devices cannot meet, unless
# the variables live on the mesh (a Keras distribution).
MIN_KERAS = (3, 12)
_NAME = re.compile(r"^/?(?:device:)?(cpu|gpu|tpu|cuda|rocm)[:/](\d+)$", re.IGNORECASE)


def jax_device(name: str, position: int):
    """The JAX device that `name` (`"gpu:1"`, `"/GPU:1"`, `"/device:GPU:1"`, `"cpu:0"`, `"tpu:3"`) names.

    Raises:
      ValueError: naming `devices[position]` when the name is malformed or names no device.
    """
    match = _NAME.match(name.strip())
    if match is None:
        raise ValueError(f"devices[{position}]={name!r} is not a device name; use 'gpu:0', '/GPU:0', 'tpu:3' or "
                         f"'cpu:0'.")
    platform, index = match.group(1).lower(), int(match.group(2))
    platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
    try:
        found = jax.devices(platform)
    except RuntimeError:
        found = []
    if index >= len(found):
        known = list(dict.fromkeys([*found, *jax.devices()]))
        raise ValueError(f"devices[{position}]={name!r} names no device on this machine; JAX has "
                         f"{[f'{d.platform}:{jax.devices(d.platform).index(d)}' for d in known]}.")
    return found[index]


def _shard_map(fn: Callable, mesh: Mesh, num_inputs: int) -> Callable:
    """`shard_map(fn)` over the stage axis only, inputs and outputs replicated over it, unchecked.

    Other axes of `mesh` (a data axis) stay automatic: arrays keep their sharding on them and
    XLA partitions the body over them (both JAX spellings).
    """
    spec = dict(mesh=mesh, in_specs=(PartitionSpec(),) * num_inputs, out_specs=PartitionSpec())
    others = frozenset(mesh.axis_names) - {AXIS}
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, check_vma=False, **spec, **({"axis_names": {AXIS}} if others else {}))
    from jax.experimental.shard_map import shard_map

    return shard_map(fn, check_rep=False, **spec, **({"auto": others} if others else {}))


def distribution_mesh() -> "Mesh | None":
    """The device mesh of the current Keras distribution, as a JAX mesh, if it has a "stage" axis."""
    import keras

    device_mesh = getattr(keras.distribution.distribution(), "device_mesh", None)
    if device_mesh is None or AXIS not in device_mesh.axis_names:
        return None
    devices = np.empty(device_mesh.devices.shape, dtype=object)
    for index, device in np.ndenumerate(device_mesh.devices):
        devices[index] = jax_device(device, 0) if isinstance(device, str) else device
    return Mesh(devices, tuple(device_mesh.axis_names))


def first_replica(mesh: Mesh) -> list:
    """The devices along the stage axis of `mesh` at index 0 of every other axis."""
    axis = mesh.axis_names.index(AXIS)
    return list(np.moveaxis(mesh.devices, axis, -1).reshape(-1, mesh.devices.shape[axis])[0])


def keras_version() -> tuple[int, int]:
    """(major, minor) of the installed Keras."""
    import keras

    return tuple(int(part) for part in keras.__version__.split(".")[:2])


def _check_keras_version() -> None:
    import keras

    if keras_version() < MIN_KERAS:
        raise ValueError(f"`devices` under JAX needs Keras >= {'.'.join(map(str, MIN_KERAS))} for mode='bp', whose "
                         f"units run in one program over a mesh of the devices: the JAX trainer of Keras "
                         f"{keras.__version__} keeps every variable on one device, which that program cannot meet. "
                         f"Upgrade Keras, or train under "
                         f"keras.distribution.set_distribution(sw.parallel.data_and_stages(num_stages)), which "
                         f"works with this release (the pipelined modes run one program per device on any release).")


def _stand_in(spec, kept):
    """Zeros shaped like `spec` (from `jax.eval_shape`), except the entries `kept` gives (dicts nest)."""
    if isinstance(spec, dict):
        return {key: _stand_in(value, kept.get(key)) if isinstance(kept, dict) and key in kept
                else _stand_in(value, None) for key, value in spec.items()}
    if kept is not None:
        return kept
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), spec)


class StagePlacement(Placement):
    """Unit k on `devices[k]`, its group's units on one device of a "stage" mesh axis.

    Without a Keras distribution, the mesh is the distinct devices of `devices`, in order of
    first use. Under a Keras distribution whose device mesh has a "stage" axis (data x stage,
    `sw.parallel.data_and_stages`), that mesh is used: `devices` name devices of its first data
    replica, and every replica runs the same grouping on its own row of devices, on its share
    of the batch.

    Args:
      devices: one device string per unit (consecutive or not; units sharing a device form its
        group).

    Raises:
      ValueError: naming the entry of `devices` that is malformed, names no device, or (under a
        data x stage mesh) is not a device of the first replica; or when two names give the
        same device.
    """

    def __init__(self, devices: Sequence[str]):
        super().__init__(devices)
        names, unit_group = groups_of(self.devices)
        first = {name: self.devices.index(name) for name in names}
        found = [jax_device(name, first[name]) for name in names]
        if len(set(found)) != len(found):
            raise ValueError(f"`devices` names the same device twice under different names: {self.devices!r}.")
        mesh = distribution_mesh()
        if mesh is None:
            _check_keras_version()
            self.mesh, self.unit_group = Mesh(np.array(found), (AXIS,)), unit_group
        else:
            row = first_replica(mesh)
            for name, device in zip(names, found, strict=True):
                if device not in row:
                    raise ValueError(f"devices[{first[name]}]={name!r} is not on the stage axis of the first data "
                                     f"replica of the distribution's mesh, {[str(d) for d in row]}.")
            self.mesh, self.unit_group = mesh, tuple(row.index(found[g]) for g in unit_group)
        self.num_stages = self.mesh.shape[AXIS]

    def _index(self):
        return jax.lax.axis_index(AXIS)

    def groups(self) -> list[list[int]]:
        """Per device of the stage axis, the units it runs."""
        return [[k for k, group in enumerate(self.unit_group) if group == g] for g in range(self.num_stages)]

    def run_stages(self, work: Callable[[int], dict], idle: Callable[[int], dict]) -> tuple[list[dict], object]:
        """Device g computes `work(g)`; for every other stage h it holds `idle(h)`, zeros elsewhere.

        Args:
          work: stage g's work, a dict (of dicts) of tensors. Its entry `"mine"`, if any, must
            have the same shape for every stage: it is returned once, as this device's own (no
            stand-in is made for it, so nothing of its size is zero-filled or passed through).
          idle: what stands for stage h's results where h does not run: a dict (of dicts) of the
            entries passed on unchanged; every entry it leaves out is zeros.

        Returns:
          `(per stage its results, valid on its own device; this device's "mine" or None)`.
        """
        shapes = [jax.eval_shape(lambda g=g: work(g)) for g in range(self.num_stages)]
        kept = [{key: value for key, value in spec.items() if key != "mine"} for spec in shapes]

        def branch(stage):
            def run():
                results, mine = [], None
                for g in range(self.num_stages):
                    if g != stage:
                        results.append(_stand_in(kept[g], idle(g)))
                        continue
                    result = dict(work(g))
                    mine = result.pop("mine", None)
                    results.append(result)
                return jax.tree.map(lambda x, s: x.astype(s.dtype), results, kept), mine

            return run

        return jax.lax.switch(self._index(), [branch(stage) for stage in range(self.num_stages)])

    def run_units(self, work: UnitWork, idle: UnitWork, depth: int, accumulators=None) -> tuple[list[dict], object]:
        """Every device computes its own group's units; the others' entries are `idle(k)` or zeros.

        With `accumulators` (this device's packed buffer, `carry_accumulators`), each branch packs
        its units' `"grads"` into one buffer of that layout, added to the accumulators after the
        switch: no accumulator passes through a branch unchanged (XLA copied such pass-throughs
        at every step).
        """
        del depth
        groups = self.groups()

        def group_work(g):
            results, grads = {}, {}
            for k in groups[g]:
                with jax.named_scope(f"stage_{k}"):
                    results[k] = dict(work(k))
                grads[k] = results[k].pop("grads", None)
            return {"units": results, **({"mine": self.pack(g, grads)} if accumulators is not None else {})}

        per_stage, packed = self.run_stages(group_work, lambda g: {"units": {k: idle(k) for k in groups[g]}})
        units = [per_stage[g]["units"][k] for k, g in enumerate(self.unit_group)]
        # Added outside the switch, where XLA updates the loop's buffer in place.
        return units, None if accumulators is None else accumulators + packed

    def pack(self, stage: int, per_unit: dict):
        """Stage `stage`'s units' values (`{unit: [per parameter]}`) in one flat buffer of the layout."""
        size, dtype = self._layout["size"], self._layout["dtype"]
        parts = [jnp.ravel(x).astype(dtype) for k in sorted(per_unit) for x in per_unit[k]]
        used = sum(int(p.size) for p in parts)
        return jnp.concatenate(parts + [jnp.zeros((size - used,), dtype)])

    def carry_accumulators(self, accumulators):
        """Per-unit accumulators -> on each device one flat buffer of its own group's, padded to the
        largest group's size (laid out by unit, then parameter)."""
        sizes = [0] * self.num_stages
        offsets, shapes = [], []
        for k, unit in enumerate(accumulators):
            stage = self.unit_group[k]
            offsets.append([])
            for a in unit:
                offsets[-1].append(sizes[stage])
                sizes[stage] += int(np.prod(a.shape))
            shapes.append([(tuple(a.shape), a.dtype) for a in unit])
        dtype = jnp.result_type(*[d for unit in shapes for _, d in unit]) if any(shapes) else jnp.float32
        self._layout = {"size": max(max(sizes), 1), "dtype": dtype, "offsets": offsets, "shapes": shapes}
        groups = self.groups()
        return jax.lax.switch(self._index(), [lambda g=g: self.pack(g, {k: accumulators[k] for k in groups[g]})
                                              for g in range(self.num_stages)])

    def unit_accumulators(self, carried) -> list[list]:
        """The packed buffers -> per unit, per parameter, taken from the unit's own device."""
        per_unit = []
        for k, (offsets, shapes) in enumerate(zip(self._layout["offsets"], self._layout["shapes"], strict=True)):
            values = [jax.lax.dynamic_slice_in_dim(carried, offset, int(np.prod(shape))).reshape(shape).astype(dtype)
                      for offset, (shape, dtype) in zip(offsets, shapes, strict=True)]
            per_unit.append(self.gather(values, k))
        return per_unit

    def share(self, value, producer: int, readers: Sequence[int]):
        """`ppermute` from the producer's device to each other device that reads `value`."""
        source = self.unit_group[producer]
        index = self._index()
        for target in sorted({self.unit_group[r] for r in readers} - {source}):
            received = jax.lax.ppermute(value, AXIS, [(source, target)])
            value = jnp.where(index == target, received, value)
        return value

    def gather(self, value, unit: int):
        """Every leaf of `value` as `unit`'s device holds it, on every device."""
        mine = self._index() == self.unit_group[unit]

        def take(x):
            x = jnp.asarray(x)
            if x.dtype == jnp.bool_:
                return jax.lax.psum(jnp.where(mine, x, False).astype(jnp.int32), AXIS) > 0
            return jax.lax.psum(jnp.where(mine, x, jnp.zeros_like(x)), AXIS)

        return jax.tree.map(take, value)

    def wrap(self, fn: Callable) -> Callable:
        """`fn` run on every device of the stage axis, inside one `shard_map` (arguments replicated).

        The arrays among the arguments enter the `shard_map` as its inputs (an array closed over
        would keep the mesh sharding it may carry from an earlier call, which the body's
        operations refuse); everything else (stages, the rule, functions) is passed as it is.
        """

        def across_stages(*args, **kwargs):
            leaves, tree = jax.tree.flatten((args, kwargs))
            arrays = [i for i, leaf in enumerate(leaves) if isinstance(leaf, (jax.Array, np.ndarray))]

            def body(*values):
                filled = list(leaves)
                for i, value in zip(arrays, values, strict=True):
                    filled[i] = value
                inner_args, inner_kwargs = jax.tree.unflatten(tree, filled)
                return fn(*inner_args, **inner_kwargs)

            return _shard_map(body, self.mesh, len(arrays))(*[leaves[i] for i in arrays])

        return across_stages
