"""Units over devices under JAX: one compiled program per device group, driven from the host.

Each device group (the units that `devices=` puts on one device) gets a `jax.jit` step function
of its own, holding only that group's parameters, non-trainable state, gradient accumulators and
pipeline state on its device. A worker thread per group (`core.workers`, `dispatch="workers"`)
calls its group's step once per frame; JAX dispatches the calls asynchronously, so the groups
compute concurrently, and what crosses a boundary moves device to device with a `jax.device_put`
queued behind the step that made it and ahead of the step that reads it:

    frame s:   group 0: step(s) | group 1: step(s) | ...      (dispatched, not waited for)
               pieces of step s  --device_put-->  the groups that read them at step s+1

How the frames are dispatched (a worker per group, at most `AHEAD` frames ahead of its device;
or, for measurement, threads joined every frame or the calling thread) is `core.frame_loop`.

What a group computes per frame, and what it reads, keeps and sends (its pieces), is
`core.group_steps`; a chunk of streams (restarts, updates every L frames, the pipeline carried
into the next batch) is `core.program_streams`, which runs its frames here in segments.

Nothing waits on the host inside the clip: the loop ends by handing back arrays that live on
their groups' devices (gradients, statistics, the top unit's outputs on the top device).
"""

from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sideways_tf.core import frame_loop, replicas
from sideways_tf.core.backends.jax_graphs import traced
from sideways_tf.core.frame_loop import DISPATCH
from sideways_tf.core.group_optimizer import GroupOptimizer
from sideways_tf.core.group_steps import Clip, init_function, plan, step_function, window_gradients
from sideways_tf.core.placement import Placement, groups_of
from sideways_tf.core.schedule import Rule


class Prepared(NamedTuple):
    """A clip ready to run: per group its compiled step, parameters, carry, inbox and inputs."""

    groups: list
    steps: list
    params: list
    carries: list
    inboxes: list
    inputs: list
    num_frames: int
    place: object = None


class ProgramsPlacement(Placement):
    """Unit k on `devices[k]`; each device's group of units in a program of its own.

    Args:
      devices: one device string per unit (at least two distinct devices).
      dispatch: "workers" (a thread per group running its own frame loop), "threads" (a thread
        per group, joined every frame) or "plain" (the calling thread).

    Raises:
      ValueError: naming the entry of `devices` that is malformed or names no device, or when
        two names give the same device.
    """

    multi_program = True

    def __init__(self, devices: Sequence[str], dispatch: str = "workers"):
        from sideways_tf.core.backends.jax_stages import distribution_mesh, first_replica, jax_device

        super().__init__(devices)
        if dispatch not in DISPATCH:
            raise ValueError(f"`dispatch` must be one of {DISPATCH}; got {dispatch!r}.")
        names, self.unit_group = groups_of(self.devices)
        first = {name: self.devices.index(name) for name in names}
        self.group_devices = [jax_device(name, first[name]) for name in names]
        if len(set(self.group_devices)) != len(self.group_devices):
            raise ValueError(f"`devices` names the same device twice under different names: {self.devices!r}.")
        self.dispatch = dispatch
        self._functions: dict = {}
        mesh = distribution_mesh()
        self.replicas = 1 if mesh is None else mesh.devices.size // mesh.shape["stage"]
        self._home = None
        self.shardings = [(jax.sharding.SingleDeviceSharding(d),) * 2 for d in self.group_devices]
        if mesh is not None:  # data x depth: each group over the same stage of every replica
            row = first_replica(mesh)
            rows = np.moveaxis(mesh.devices, mesh.axis_names.index("stage"), -1).reshape(-1, len(row))
            self.shardings = []
            for name, device in zip(names, self.group_devices, strict=True):
                if device not in row:
                    raise ValueError(f"devices[{first[name]}]={name!r} is not on the stage axis of the first data "
                                     f"replica of the distribution's mesh, {[str(d) for d in row]}.")
                column = jax.sharding.Mesh(rows[:, row.index(device)], ("batch",))
                self.shardings.append((jax.sharding.NamedSharding(column, jax.sharding.PartitionSpec()),
                                       jax.sharding.NamedSharding(column, jax.sharding.PartitionSpec("batch"))))
            self._home = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    @property
    def num_groups(self) -> int:
        return len(self.group_devices)

    def local(self, tree):
        """`tree`'s arrays on the first group's device (for the one-program paths: exact backprop)."""
        return jax.device_put(tree, self.group_devices[0])

    def home(self, tree):
        """Results handed back to Keras: as they are, or under data x depth on the whole mesh (replicated),
        where the distribution keeps the variables and metrics."""
        return tree if self._home is None else jax.device_put(tree, self._home)

    def total(self, values: Sequence):
        """The sum of scalars computed on the groups' devices, on the top unit's device."""
        here = self.shardings[self.unit_group[-1]][0]
        return self.home(sum(jax.device_put(jnp.asarray(v, jnp.float32), here) for v in values))

    def bind(self, stages) -> None:
        """Learns which unit (hence group) each trainable variable belongs to (for the optimizer's step)."""
        self._stages = list(stages)
        self._unit_of = {id(v): k for k, stage in enumerate(stages) for v in stage.trainable_variables}
        self._position = {id(v): p for stage in stages for p, v in enumerate(stage.trainable_variables)}

    def creating(self, k: int):
        """Unit k's variables are made on its group's device (JAX's default device while it is built),
        so that no device ever holds another group's; under a distribution's mesh, where it puts them."""
        if self._home is not None:
            return contextlib.nullcontext()
        return jax.default_device(self.group_devices[self.unit_group[k]])

    def build_optimizer(self, optimizer, variables: Sequence) -> None:
        """Builds `optimizer` with its slots made in host memory, then moved: each to its group's device
        (`settle`), the optimizer's own counters to the first group's. Keras would make every slot
        on the first device, which would then hold the whole optimizer state at once."""
        if optimizer.built or self._home is not None:
            return
        try:
            host = jax.devices("cpu")[0]
        except RuntimeError:  # no CPU platform (JAX_PLATFORMS without it): where Keras makes them
            host = None
        with jax.default_device(host) if host is not None else contextlib.nullcontext():
            optimizer.build(list(variables))
        self.settle(optimizer, variables)
        for variable in optimizer.variables:
            if host is not None and variable.value.devices() == {host}:
                variable.assign(jax.device_put(variable.value, self.group_devices[0]))

    def settle(self, optimizer, variables: Sequence) -> None:
        """Moves each unit's variables, and the optimizer slots that only its group updates, to its
        group's device, where Keras did not make them (it makes every variable on the first device,
        as does `set_weights`); a variable already there is left alone. Under a distribution's mesh
        (data x depth) the distribution places the variables."""
        if self._home is not None:
            return
        if traced([v.value for v in variables]):
            return
        moves = [(v, self.group_devices[self.unit_group[k]]) for k, stage in enumerate(getattr(self, "_stages", ()))
                 for v in stage.variables]
        if optimizer is not None and optimizer.built:
            grouped = self.group_optimizer(optimizer, variables)
            if grouped is not None:
                owners = grouped.owners([v.value for v in grouped.variables], [v.value for v in optimizer.variables])
                moves += [(optimizer.variables[j], self.group_devices[g]) for j, g in owners.items()]
        for variable, device in moves:
            if variable.value.devices() != {device}:
                variable.assign(jax.device_put(variable.value, device))

    def group_optimizer(self, optimizer, variables: Sequence) -> Optional[GroupOptimizer]:
        """The compiled per-group step of `optimizer` on `variables` (made once), or None when a
        variable belongs to no unit."""
        unit_of = getattr(self, "_unit_of", {})
        if any(id(v) not in unit_of for v in variables):
            return None
        key = (id(optimizer), tuple(id(v) for v in variables))
        if getattr(self, "_optimizer_key", None) != key:
            self._group_optimizer = GroupOptimizer(optimizer, variables,
                                                   [self.unit_group[unit_of[id(v)]] for v in variables],
                                                   [replicated for replicated, _ in self.shardings])
            self._optimizer_key = key
        return self._group_optimizer

    def unit_position(self, variable) -> tuple[int, int]:
        """`(unit, index among its trainable variables)` of a trainable variable."""
        return self._unit_of[id(variable)], self._position[id(variable)]

    def optimizer_step(self, optimizer, variables: Sequence, values: Sequence, optimizer_state: Sequence,
                       gradients: Sequence, keep: Sequence, hold=None) -> tuple[list, list]:
        """One optimizer step, each group's variables in one compiled call on its devices (`GroupOptimizer`).

        Arguments and result as `Placement.optimizer_step`; the results come back on `home`. With
        `hold` given, each group's step takes over the memory of its values and slots.
        """
        grouped = self.group_optimizer(optimizer, variables)
        keep = [False] * len(variables) if keep is None else keep
        if grouped is None:  # a variable of no unit: Keras' own step
            return super().optimizer_step(optimizer, variables, self.home(list(values)),
                                          self.home(list(optimizer_state)), self.home(list(gradients)), keep)
        return self.home(grouped.apply(values, optimizer_state, gradients, keep, hold))

    def apply_gradients(self, optimizer, gradients: Sequence, variables: Sequence) -> None:
        """`optimizer.apply(gradients, variables)` as one compiled step per group (`optimizer_step`)."""
        variables = list(variables)
        if not optimizer.built:
            optimizer.build(variables)
        values, state = self.optimizer_step(optimizer, variables, [v.value for v in variables],
                                            [v.value for v in optimizer.variables], gradients,
                                            [False] * len(variables), hold=False)
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, state, strict=True):
            variable.assign(value)

    # ------------------------------------------------------------ compiled pieces

    def use_loss(self, loss) -> None:
        """The compiled steps hold the loss they were traced with: another loss object drops them."""
        if getattr(self, "_loss", loss) is not loss:
            self._functions.clear()
        self._loss = loss

    def _compiled(self, key, build: Callable):
        if key not in self._functions:
            self._functions[key] = build()
        return self._functions[key]

    # ------------------------------------------------------------ the clip

    def prepare(self, stages, clip: Clip, params: Sequence[Sequence], states: Sequence[Sequence], video,
                activation_shapes, labels=None, sample_weight=None, starts=None) -> "Prepared":
        """Each group's compiled step and its inputs on its device, before the first frame.

        Args:
          stages: the D stages.
          clip: the rule and the loss (`Clip`).
          params, states: per stage, its trainable and non-trainable values.
          video: `[B, T, *F]`.
          activation_shapes: `S_k` of units 0..D-2.
          labels, sample_weight: the clip's targets (training).
          starts: None, or `[B, T]` bool: slot b begins a new video at frame s (streams).
        """
        batch_size, num_frames = int(video.shape[0]), int(video.shape[1])
        groups = plan(self.unit_group, self.group_devices, clip.rule, clip.training, self.shardings)
        if batch_size % self.replicas:
            raise ValueError(f"the batch of {batch_size} clips cannot be split over {self.replicas} data replicas: "
                             f"use a batch size that is a multiple of {self.replicas}.")
        shapes = (batch_size, num_frames, tuple(video.shape[2:]), str(video.dtype))
        base = (clip.rule, clip.training, clip.streaming, starts is None, shapes,
                None if labels is None else (labels.shape, str(labels.dtype)),
                None if sample_weight is None else sample_weight.shape)
        target_spec = None
        if clip.streaming and clip.training:
            target_spec = jax.eval_shape(lambda y, w: clip.frame_target(y, w, 0), labels, sample_weight)
        ready = Prepared(groups, [], [], [], [], [], num_frames, self)
        for g, group in enumerate(groups):
            step = self._compiled(("step", g) + base, lambda group=group: step_function(stages, clip, group))
            init = self._compiled(("init", g) + base, lambda group=group: init_function(
                stages, clip, group, batch_size, num_frames, activation_shapes, target_spec))
            mine = jax.device_put({k: list(params[k]) for k in group.units}, group.replicated)
            carry, inbox = init(mine, jax.device_put({k: list(states[k]) for k in group.units}, group.replicated))
            if self.replicas > 1:  # clips split over the replicas, sums and states one per replica
                carry, inbox = replicas.spread(carry, group), jax.device_put(inbox, group.batched)
            top = len(stages) - 1 in group.units

            def put(x, here: bool = True, where=group.batched):
                return jax.device_put(x, where) if here and x is not None else None

            ready.inputs.append((put(video, 0 in group.units), put(labels, top), put(sample_weight, top),
                                 put(starts)))
            ready.steps.append(step)
            ready.carries.append(carry)
            ready.inboxes.append(inbox)
            ready.params.append(mine)
        return ready

    def run(self, ready: "Prepared", first: int = 0, last: Optional[int] = None, keep_last: bool = False,
            after: Optional[Callable[[int, int], None]] = None) -> None:
        """Runs frames `first..last-1` of a prepared clip through every group (its carries and inboxes change).

        `keep_last`: also move the last frame's pieces into the inboxes (a stream, or a segment
        that another follows); a clip's last pieces are read by no one. `after(g, s)`: called
        once group g has dispatched frame s (by its worker), before it reads frame s + 1's inbox.
        """
        frame_loop.run_frames(ready, self.dispatch, first, ready.num_frames if last is None else last,
                              keep_last, after)

    def run_clip(self, stages, clip: Clip, params: Sequence[Sequence], states: Sequence[Sequence], video,
                 activation_shapes, labels=None, sample_weight=None) -> list[dict]:
        """Runs the T frames of `video` through every group; returns each group's final carry.

        Arguments as in `prepare`. Returns per group its carry after the last frame (on its device).
        """
        ready = self.prepare(stages, clip, params, states, video, activation_shapes, labels, sample_weight)
        self.run(ready)
        return ready.carries

    def train_episode(self, stages, clip: Clip, params, states, video, labels, sample_weight, activation_shapes):
        """One clip's pseudo-gradients: `episode.EpisodeResult` fields, each unit's on its own device.

        Returns:
          `(gradients per stage, states per stage, loss, outputs [B, T, *O], output_valid [B, T])`.
        """
        carries = [replicas.merged(carry, self.replicas) for carry in
                   self.run_clip(stages, clip, params, states, video, activation_shapes, labels, sample_weight)]
        gradients = window_gradients(carries, len(stages))[0]
        new_states = [None] * len(stages)
        for carry in carries:
            for k in carry["states"]:
                new_states[k] = carry["states"][k]
        top = carries[self.unit_group[-1]]
        loss = top["loss_sum"] / jnp.maximum(top["loss_count"], 1.0)
        return self.home((gradients, new_states, loss, batch_major(top["outputs"]), batch_major(top["valid"])))

    def inference_episode(self, stages, rule: Rule, params, states, video, activation_shapes):
        """Predictions `[B, T - latency, *O]` of a clip, on the top unit's device."""
        clip = Clip(rule, None, None, training=False)
        carries = self.run_clip(stages, clip, params, states, video, activation_shapes)
        return self.home(batch_major(carries[self.unit_group[-1]]["outputs"])[:, rule.latency:])


def batch_major(x):
    """`[T, B, ...]` -> `[B, T, ...]`."""
    return jnp.swapaxes(x, 0, 1)
