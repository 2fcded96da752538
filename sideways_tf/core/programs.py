"""Units over devices under JAX: one compiled program per device group, driven from the host.

Each device group (the units that `devices=` puts on one device) gets a `jax.jit` step function
of its own, holding only that group's parameters, non-trainable state, gradient accumulators and
pipeline state on its device. A worker thread per group (`core.workers`, `dispatch="workers"`)
calls its group's step once per frame; JAX dispatches the calls asynchronously, so the groups
compute concurrently, and what crosses a boundary moves device to device with a `jax.device_put`
queued behind the step that made it and ahead of the step that reads it:

    frame s:   group 0: step(s) | group 1: step(s) | ...      (dispatched, not waited for)
               pieces of step s  --device_put-->  the groups that read them at step s+1

(`dispatch="threads"` joins the groups' threads every frame and moves the pieces in one batched
`device_put`; `"plain"` dispatches from the calling thread. Both are kept for measurement.)

The pieces of a step (`pieces`) are what a unit produced that another unit reads at the next
step: its output `h_k` (read by unit k+1 and, through a shortcut, unit k+2), its gradient
message to unit k-1 (`d{k}`) and its shortcut message to unit k-2 (`s{k}`). A group keeps the
pieces its own units read from each other; the others arrive in its inbox. The arithmetic of
a unit is `pipeline.unit_step`, the same as in the single program, so the results equal it.

Nothing waits on the host inside the clip: the loop ends by handing back arrays that live on
their groups' devices (gradients, statistics, the top unit's outputs on the top device).
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
from keras import ops

from sideways_tf.core import pipeline, workers
from sideways_tf.core.placement import Placement, groups_of
from sideways_tf.core.schedule import Rule

DISPATCH = ("workers", "threads", "plain")

# On NVIDIA GPUs a group's step is launched as CUDA graphs that include its convolutions (XLA's
# default leaves them out): measured on an H200, this halves the host's time to launch a VGG-16
# group's step (1.13 -> 0.64 ms), which is what limits short steps. A user's own XLA_FLAGS
# setting of these options wins.
GPU_STEP_OPTIONS = {"xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL,CONVOLUTION",
                    "xla_gpu_graph_min_graph_size": 1}


def compiler_options(device) -> dict:
    """The XLA options of a group's step on `device` (`GPU_STEP_OPTIONS` on NVIDIA GPUs, else none)."""
    if device.platform != "gpu" or "nvidia" not in device.device_kind.lower():
        return {}
    flags = os.environ.get("XLA_FLAGS", "")
    return {name: value for name, value in GPU_STEP_OPTIONS.items() if name not in flags}


class Group(NamedTuple):
    """One device group of a plan.

    Attributes:
      units: its units, in order.
      device: the JAX device it runs on.
      reads: the pieces its units read at each step.
      keeps: of those, the ones its own units produce (carried on its device).
      sends: `(piece, group)`: what it produces that another group reads.
    """

    units: tuple
    device: object
    reads: tuple
    keeps: tuple
    sends: tuple


def pieces(rule: Rule, depth: int, training: bool = True) -> dict[str, tuple[int, tuple[int, ...]]]:
    """What crosses from one step to the next: piece name -> (producing unit, reading units).

    `h{k}`: unit k's output (k < D - 1); with `training`, `d{k}`: unit k's gradient message to
    unit k-1 (k >= 1), and `s{k}`: unit k's shortcut message to unit k-2 (where it sends one).
    """
    found = {f"h{k}": (k, tuple(pipeline.readers(k, rule, depth))) for k in range(depth - 1)}
    if training:
        found.update({f"d{k}": (k, (k - 1,)) for k in range(1, depth)})
        found.update({f"s{k}": (k, (k - 2,)) for k in range(2, depth) if pipeline.sends_shortcut_message(k, rule)})
    return found


def plan(stage_of: Sequence[int], devices: Sequence, rule: Rule, training: bool = True) -> list[Group]:
    """The groups of units and what each reads, keeps and sends.

    Args:
      stage_of: unit k's group index.
      devices: each group's JAX device.
      rule: the rule.
      training: the pieces of training (activations and messages) or of inference (activations).
    """
    depth = len(stage_of)
    crossing = pieces(rule, depth, training)
    groups = []
    for g, device in enumerate(devices):
        units = tuple(k for k in range(depth) if stage_of[k] == g)
        reads = tuple(name for name, (_, readers) in crossing.items() if any(stage_of[r] == g for r in readers))
        keeps = tuple(name for name in reads if stage_of[crossing[name][0]] == g)
        sends = tuple((name, h) for name, (producer, readers) in crossing.items() if stage_of[producer] == g
                      for h in sorted({stage_of[r] for r in readers} - {g}))
        groups.append(Group(units, device, reads, keeps, sends))
    return groups


def _shape_of(name: str, batch_size: int, activation_shapes: Sequence) -> tuple:
    """`[B, *S]` of a piece: `h{k}` is shaped like `h_k`, `d{k}` like `h_{k-1}`, `s{k}` like `h_{k-2}`."""
    k = int(name[1:])
    source = {"h": k, "d": k - 1, "s": k - 2}[name[0]]
    return (batch_size,) + tuple(activation_shapes[source])


class Clip(NamedTuple):
    """What a clip needs besides the parameters: the static choices of its step functions.

    Attributes:
      rule: the rule.
      frame_target: `frame_target(labels, sample_weight, s)`, the target of frame s (traced).
      top_loss: `top_loss(target, output)`, one step's loss.
      training: train (gradients) or infer.
    """

    rule: Rule
    frame_target: Optional[Callable]
    top_loss: Optional[Callable]
    training: bool


class Prepared(NamedTuple):
    """A clip ready to run: per group its compiled step, parameters, carry, inbox and inputs."""

    groups: list
    steps: list
    params: list
    carries: list
    inboxes: list
    inputs: list
    num_frames: int


class ProgramsPlacement(Placement):
    """Unit k on `devices[k]`; each device's group of units in a program of its own.

    Args:
      devices: one device string per unit (at least two distinct devices).
      dispatch: "threads" (one dispatching thread per group) or "plain" (the calling thread).

    Raises:
      ValueError: naming the entry of `devices` that is malformed or names no device, or when
        two names give the same device.
    """

    multi_program = True

    def __init__(self, devices: Sequence[str], dispatch: str = "workers"):
        from sideways_tf.core.backends.jax_stages import jax_device

        super().__init__(devices)
        if dispatch not in DISPATCH:
            raise ValueError(f"`dispatch` must be one of {DISPATCH}; got {dispatch!r}.")
        names, self.stage_of = groups_of(self.devices)
        first = {name: self.devices.index(name) for name in names}
        self.group_devices = [jax_device(name, first[name]) for name in names]
        if len(set(self.group_devices)) != len(self.group_devices):
            raise ValueError(f"`devices` names the same device twice under different names: {self.devices!r}.")
        self.dispatch = dispatch
        self._functions: dict = {}

    @property
    def num_groups(self) -> int:
        return len(self.group_devices)

    def local(self, tree):
        """`tree`'s arrays on the first group's device (for the one-program paths: exact backprop)."""
        return jax.device_put(tree, self.group_devices[0])

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

    def _step_function(self, stages, clip: Clip, g: int, group: Group, options: dict) -> Callable:
        """Group g's step: `(params, carry, inbox, video, labels, sample_weight) -> (carry, outbox)`.

        `options`: XLA's options for it (none inside a trace, where the step is a nested jit)."""
        rule, depth = clip.rule, len(stages)
        dtype = stages[0].compute_dtype
        top = depth - 1 in group.units
        sent = tuple(dict.fromkeys(name for name, _ in group.sends))

        def step(params, carry, inbox, video, labels, sample_weight):
            got = {**carry["pieces"], **inbox}
            steps, s = carry["steps"], carry["s"]
            frame = ops.cast(ops.take(video, s, axis=1), dtype) if 0 in group.units else None
            target = None
            if top and clip.training:
                target = clip.frame_target(labels, sample_weight, ops.maximum(s - rule.latency, 0))
            results, new = {}, dict(carry)
            for k in group.units:
                direct = frame if k == 0 else got[f"h{k - 1}"]
                shortcut = got[f"h{k - 2}"] if (rule.shortcuts and k >= 2) else None
                with jax.named_scope(f"stage_{k}"):
                    if not clip.training:
                        out = pipeline.apply_stage(stages[k], params[k], carry["states"][k], direct, shortcut)[0]
                        results[k] = {"out": out}
                        continue
                    cotangent = None
                    if k < depth - 1:
                        cotangent = pipeline.incoming_message(k, rule, depth, steps, got[f"d{k + 1}"],
                                                              got.get(f"s{k + 2}"))
                    results[k] = pipeline.unit_step(
                        stages[k], k, depth, rule, params[k], carry["states"][k], steps, direct, shortcut, cotangent,
                        (lambda out: clip.top_loss(target, out)) if k == depth - 1 else None)
            produced = {}
            for k, result in results.items():
                if k < depth - 1:
                    produced[f"h{k}"] = result["out"]
                if result.get("direct") is not None:
                    produced[f"d{k}"] = result["direct"]
                if result.get("shortcut") is not None:
                    produced[f"s{k}"] = result["shortcut"]
            new["pieces"] = {name: produced[name] for name in group.keeps}
            if clip.training:
                new["states"] = {k: results[k]["state"] for k in group.units}
                new["acc"] = {k: [a + ops.cast(d, a.dtype) for a, d in zip(carry["acc"][k], results[k]["grads"],
                                                                           strict=True)] for k in group.units}
                new["counts"] = {k: carry["counts"][k] + ops.mean(ops.cast(
                    steps >= rule.first_counted_step(k, depth), "float32")) for k in group.units}
            if top:
                out = results[depth - 1]["out"]
                valid = steps >= rule.first_counted_step(depth - 1, depth)
                new["outputs"] = carry["outputs"].at[s].set(out.astype(carry["outputs"].dtype))
                new["valid"] = carry["valid"].at[s].set(valid)
                if clip.training:
                    new["loss_sum"] = carry["loss_sum"] + results[depth - 1]["loss"]
                    new["loss_count"] = carry["loss_count"] + ops.cast(ops.any(valid), "float32")
            new["steps"], new["s"] = steps + 1, s + 1
            return new, {name: produced[name] for name in sent}

        return jax.jit(step, donate_argnums=(1,), compiler_options=options or None)

    def _init_function(self, stages, clip: Clip, group: Group, batch_size: int, num_frames: int,
                       activation_shapes) -> Callable:
        """Group g's carry before the first frame, made on its device from its parameters and state."""
        depth = len(stages)
        dtype = stages[0].compute_dtype
        top = depth - 1 in group.units

        def init(params, states):
            carry = {"s": jnp.zeros((), jnp.int32), "steps": jnp.zeros((batch_size,), jnp.int32),
                     "pieces": {name: jnp.zeros(_shape_of(name, batch_size, activation_shapes), dtype)
                                for name in group.keeps},
                     "states": {k: list(states[k]) for k in group.units}}
            if clip.training:
                carry["acc"] = {k: [jnp.zeros_like(p) for p in params[k]] for k in group.units}
                carry["counts"] = {k: jnp.zeros((), jnp.float32) for k in group.units}
                carry["loss_sum"] = jnp.zeros((), jnp.float32)
                carry["loss_count"] = jnp.zeros((), jnp.float32)
            if top:
                out = jax.eval_shape(lambda: pipeline.apply_stage(
                    stages[-1], params[depth - 1], states[depth - 1],
                    jnp.zeros((batch_size,) + tuple(activation_shapes[-1]), dtype),
                    jnp.zeros((batch_size,) + tuple(activation_shapes[-2]), dtype)
                    if stages[-1].has_shortcut else None)[0])
                carry["outputs"] = jnp.zeros((num_frames,) + out.shape, out.dtype)
                carry["valid"] = jnp.zeros((num_frames, batch_size), bool)
            inbox = {name: jnp.zeros(_shape_of(name, batch_size, activation_shapes), dtype)
                     for name in group.reads if name not in group.keeps}
            return carry, inbox

        return jax.jit(init)

    # ------------------------------------------------------------ the clip

    def prepare(self, stages, clip: Clip, params: Sequence[Sequence], states: Sequence[Sequence], video,
                activation_shapes, labels=None, sample_weight=None) -> "Prepared":
        """Each group's compiled step and its inputs on its device, before the first frame.

        Args:
          stages: the D stages.
          clip: the rule and the loss (`Clip`).
          params, states: per stage, its trainable and non-trainable values.
          video: `[B, T, *F]`.
          activation_shapes: `S_k` of units 0..D-2.
          labels, sample_weight: the clip's targets (training).
        """
        batch_size, num_frames = int(video.shape[0]), int(video.shape[1])
        groups = plan(self.stage_of, self.group_devices, clip.rule, clip.training)
        shapes = (batch_size, num_frames, tuple(video.shape[2:]), str(video.dtype))
        base = (clip.rule, clip.training, shapes, None if labels is None else (labels.shape, str(labels.dtype)),
                None if sample_weight is None else sample_weight.shape)
        ready = Prepared(groups, [], [], [], [], [], num_frames)
        traced = _traced((params, states, video))
        for g, group in enumerate(groups):
            step = self._compiled(("step", g, traced) + base, lambda g=g, group=group: self._step_function(
                stages, clip, g, group, {} if traced else compiler_options(group.device)))
            init = self._compiled(("init", g) + base, lambda group=group: self._init_function(
                stages, clip, group, batch_size, num_frames, activation_shapes))
            mine = jax.device_put({k: list(params[k]) for k in group.units}, group.device)
            carry, inbox = init(mine, jax.device_put({k: list(states[k]) for k in group.units}, group.device))
            top = len(stages) - 1 in group.units
            ready.inputs.append((jax.device_put(video, group.device) if 0 in group.units else None,
                                 jax.device_put(labels, group.device) if top and labels is not None else None,
                                 jax.device_put(sample_weight, group.device) if top and sample_weight is not None
                                 else None))
            ready.steps.append(step)
            ready.carries.append(carry)
            ready.inboxes.append(inbox)
            ready.params.append(mine)
        return ready

    def run_clip(self, stages, clip: Clip, params: Sequence[Sequence], states: Sequence[Sequence], video,
                 activation_shapes, labels=None, sample_weight=None) -> list[dict]:
        """Runs the T frames of `video` through every group; returns each group's final carry.

        Arguments as in `prepare`. Returns per group its carry after the last frame (on its device).
        """
        ready = self.prepare(stages, clip, params, states, video, activation_shapes, labels, sample_weight)
        groups, carries, inboxes = ready.groups, ready.carries, ready.inboxes
        routes = [(g, name, h) for g, group in enumerate(groups) for name, h in group.sends]
        # One batched device_put per frame, to shardings made once: device_put's own per-call work
        # is most of a short step's host time (separate calls per group cost twice as much).
        where = [jax.sharding.SingleDeviceSharding(groups[h].device) for _, _, h in routes]
        # JAX's precision settings are per thread: the dispatching threads take the caller's.
        precision = jax.config.jax_default_matmul_precision

        def call(g):
            return ready.steps[g](ready.params[g], carries[g], inboxes[g], *ready.inputs[g])

        def call_in_thread(g):
            if precision is None:
                return call(g)
            with jax.default_matmul_precision(precision):
                return call(g)

        # Inside a trace (Keras' shape inference) the calls stay on this thread, which holds the trace.
        pool = None if _traced((params, states, video)) or self.dispatch == "plain" else workers.pool(len(groups))
        if pool is not None and self.dispatch == "workers":
            return _run_workers(ready, routes, where, call, precision)
        for _ in range(ready.num_frames):
            outs = list(pool.map(call_in_thread, range(len(groups)))) if pool is not None else [
                call(g) for g in range(len(groups))]
            carries = [carry for carry, _ in outs]
            if routes:
                moved = jax.device_put([outs[g][1][name] for g, name, _ in routes], where)
                for (_, name, h), value in zip(routes, moved, strict=True):
                    inboxes[h][name] = value
        return carries

    def train_episode(self, stages, clip: Clip, params, states, video, labels, sample_weight, activation_shapes):
        """One clip's pseudo-gradients: `episode.EpisodeResult` fields, each unit's on its own device.

        Returns:
          `(gradients per stage, states per stage, loss, outputs [B, T, *O], output_valid [B, T])`.
        """
        carries = self.run_clip(stages, clip, params, states, video, activation_shapes, labels, sample_weight)
        gradients, new_states = [None] * len(stages), [None] * len(stages)
        for group, carry in zip(plan(self.stage_of, self.group_devices, clip.rule), carries, strict=True):
            for k in group.units:
                count = jnp.maximum(carry["counts"][k], 1e-12)
                gradients[k] = [a / count.astype(a.dtype) for a in carry["acc"][k]]
                new_states[k] = carry["states"][k]
        top = carries[self.stage_of[-1]]
        loss = top["loss_sum"] / jnp.maximum(top["loss_count"], 1.0)
        return gradients, new_states, loss, _batch_major(top["outputs"]), _batch_major(top["valid"])

    def inference_episode(self, stages, rule: Rule, params, states, video, activation_shapes):
        """Predictions `[B, T - latency, *O]` of a clip, on the top unit's device."""
        clip = Clip(rule, None, None, training=False)
        carries = self.run_clip(stages, clip, params, states, video, activation_shapes)
        return _batch_major(carries[self.stage_of[-1]]["outputs"])[:, rule.latency:]


def _traced(tree) -> bool:
    """Whether `tree` holds a tracer (the clip runs inside a trace)."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def _run_workers(ready: "Prepared", routes, where, call: Callable, precision) -> list:
    """The clip with one worker per group (`core.workers`), each running its own frame loop.

    Worker g calls its step for frame s as soon as the pieces it reads from frame s - 1 have
    been queued to it, then queues its own pieces to the groups that read them, one `device_put`
    per receiving group. Returns each group's final carry.
    """
    num_frames = ready.num_frames
    sends: dict = {}
    for (g, name, h), sharding in zip(routes, where, strict=True):
        sends.setdefault(g, {}).setdefault(h, ([], sharding))[0].append(name)
    receives = {h: sorted({g for g, _, h2 in routes if h2 == h}) for h in range(len(ready.groups))}

    def work(g, boxes):
        for s in range(num_frames):
            if s:
                for source in receives[g]:
                    ready.inboxes[g].update(boxes.get((source, g)))
            ready.carries[g], out = call(g)
            if s + 1 < num_frames:
                for h, (names, sharding) in sends.get(g, {}).items():
                    moved = jax.device_put([out[name] for name in names], [sharding] * len(names))
                    boxes.put((g, h), dict(zip(names, moved, strict=True)))
        return ready.carries[g]

    return workers.run(len(ready.groups), work, precision)


def _batch_major(x):
    """`[T, B, ...]` -> `[B, T, ...]`."""
    return jnp.swapaxes(x, 0, 1)
