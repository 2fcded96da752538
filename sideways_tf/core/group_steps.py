"""What one device group computes per frame: its pieces, its compiled step and its carry.

A device group is the units that `devices=` puts on one device (`core.programs` runs one
compiled program per group). The pieces of a step (`pieces`) are what a unit produced that
another unit reads at the next step: its output `h_k` (read by unit k+1 and, through a shortcut,
unit k+2), its gradient message to unit k-1 (`d{k}`) and its shortcut message to unit k-2
(`s{k}`). A group keeps the pieces its own units read from each other; the others arrive in its
inbox. The arithmetic of a unit is `pipeline.unit_step`, the same as in the single program, so
the results equal it.

A clip of a stream (`Clip.streaming`) also restarts slots where a new video begins, keeps the
targets in flight in a delay line and records every step's target, as `episode.train_episode`
does; its carry starts from and returns to an `episode.Stream` (`core.programs`). A group's
window of gradients (what an update applies) is read from its carry (`window_gradients`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import keras
from keras import ops

from sideways_tf.core import pipeline, replicas
from sideways_tf.core.backends.jax_graphs import GraphJit, traced
from sideways_tf.core.schedule import Rule


class Group(NamedTuple):
    """One device group of a plan.

    Attributes:
      units: its units, in order.
      device: the JAX device it runs on.
      reads: the pieces its units read at each step.
      keeps: of those, the ones its own units produce (carried on its device).
      sends: `(piece, group)`: what it produces that another group reads.
      replicated: where its parameters, state and sums live (a JAX sharding: its device, or its
        replicas' devices under data x depth).
      batched: where its per-example arrays live (`[B, ...]`, split over the replicas).
    """

    units: tuple
    device: object
    reads: tuple
    keeps: tuple
    sends: tuple
    replicated: object = None
    batched: object = None


class Clip(NamedTuple):
    """What a clip needs besides the parameters: the static choices of its step functions.

    Attributes:
      rule: the rule.
      frame_target: `frame_target(labels, sample_weight, s)`, the target of frame s (traced).
      top_loss: `top_loss(target, output)`, one step's loss.
      training: train (gradients) or infer.
      streaming: a chunk of streams (restarts, a delay line of targets, every step's target
        recorded) rather than one fresh clip.
    """

    rule: Rule
    frame_target: Optional[Callable]
    top_loss: Optional[Callable]
    training: bool
    streaming: bool = False


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


def plan(unit_group: Sequence[int], devices: Sequence, rule: Rule, training: bool = True,
         shardings: Optional[Sequence[tuple]] = None) -> list[Group]:
    """The groups of units and what each reads, keeps and sends.

    Args:
      unit_group: unit k's group index.
      devices: each group's JAX device (its first, under data x depth).
      rule: the rule.
      training: the pieces of training (activations and messages) or of inference (activations).
      shardings: per group `(replicated, batched)` (default: its device for both).
    """
    depth = len(unit_group)
    crossing = pieces(rule, depth, training)
    groups = []
    for g, device in enumerate(devices):
        units = tuple(k for k in range(depth) if unit_group[k] == g)
        reads = tuple(name for name, (_, readers) in crossing.items() if any(unit_group[r] == g for r in readers))
        keeps = tuple(name for name in reads if unit_group[crossing[name][0]] == g)
        sends = tuple((name, h) for name, (producer, readers) in crossing.items() if unit_group[producer] == g
                      for h in sorted({unit_group[r] for r in readers} - {g}))
        one = jax.sharding.SingleDeviceSharding(device)
        replicated, batched = shardings[g] if shardings is not None else (one, one)
        groups.append(Group(units, device, reads, keeps, sends, replicated, batched))
    return groups


def source(name: str) -> int:
    """The activation a piece is shaped like: `h{k}` like `h_k`, `d{k}` like `h_{k-1}`, `s{k}` like `h_{k-2}`."""
    k = int(name[1:])
    return {"h": k, "d": k - 1, "s": k - 2}[name[0]]


def shape_of(name: str, batch_size: int, activation_shapes: Sequence) -> tuple:
    """`[B, *S]` of a piece (`source`)."""
    return (batch_size,) + tuple(activation_shapes[source(name)])


def _restarted(got: dict, steps, starts):
    """Slots where `starts` (`[B]`) begin a new video: pieces zeroed, step 0 (`pipeline.restart`)."""
    keep = ops.logical_not(starts)
    return ({name: value * pipeline.per_slot(keep, value) for name, value in got.items()},
            ops.where(starts, ops.zeros_like(steps), steps))


def _delay(line, target):
    """Pushes this frame's target into the delay line; returns `(oldest target, new line)`."""
    if isinstance(line, tuple) and not line:
        return target, line
    oldest = keras.tree.map_structure(lambda buf: buf[0], line)
    line = keras.tree.map_structure(lambda buf, t: ops.concatenate([buf[1:], t[None]], axis=0), line, target)
    return oldest, line


def spare_pieces(group: Group) -> dict[str, str]:
    """The inbox pieces whose buffers a step can reuse for a piece it sends: inbox name -> sent name.

    Pieces shaped like the same activation (in the same dtype) match, one to one: in a plain chain
    a group receives `h_{k}` and sends `d_{k+1}`, both shaped like `h_k`.
    """
    free = list(dict.fromkeys(name for name, _ in group.sends))
    matched = {}
    for name in group.reads:
        if name in group.keeps:
            continue
        found = next((sent for sent in free if source(sent) == source(name)), None)
        if found is not None:
            matched[name] = found
            free.remove(found)
    return matched


class GroupStep:
    """A group's compiled step, `(params, carry, inbox, video, labels, sample_weight, starts) -> (carry, outbox)`.

    The carry and the spare inbox pieces (`spare_pieces`) are donated: after a call they are
    deleted, and their buffers hold the new carry and the pieces sent, so that each frame
    allocates nothing for them. `spare` maps each donated inbox piece to the sent piece that
    reuses it.
    """

    def __init__(self, function: Callable, spare: dict, device):
        self.spare = spare
        self._jit = GraphJit(function, device, donate_argnums=(1, 2))

    def _split(self, params, carry, inbox, *inputs):
        spare = {name: inbox[name] for name in self.spare}
        rest = {name: value for name, value in inbox.items() if name not in self.spare}
        return (params, carry, spare, rest, *inputs)

    def __call__(self, *args):
        # Inside a trace the carry's step count or the inputs are tracers (cheaper to look at than all arguments).
        nested = traced((args[1]["s"], *args[3:]))
        return self._jit.variant(nested)(*self._split(*args))

    def lower(self, *args):
        """`jax.jit(...).lower` on the step's arguments (e.g. for XLA's memory analysis)."""
        return self._jit.lower(*self._split(*args))


def step_function(stages, clip: Clip, group: Group) -> GroupStep:
    """The group's step (`GroupStep`): `(params, carry, inbox, video, labels, sample_weight, starts) -> (carry,
    outbox)`, compiled with `jax_graphs`' options for the group's device.

    `starts` is `[B, T]` bool or None (streams only).
    """
    rule, depth = clip.rule, len(stages)
    dtype = stages[0].compute_dtype
    top = depth - 1 in group.units
    sent = tuple(dict.fromkeys(name for name, _ in group.sends))
    # Under data x depth each replica's loss is its share of the batch's (`core.replicas`).
    num_replicas = replicas.count(group)

    def step(params, carry, spare, inbox, video, labels, sample_weight, starts):
        got = {**carry["pieces"], **spare, **inbox}
        steps, s = carry["steps"], carry["s"]
        if starts is not None:
            got, steps = _restarted(got, steps, ops.take(starts, s, axis=1))
        frame = ops.cast(ops.take(video, s, axis=1), dtype) if 0 in group.units else None
        new = dict(carry)
        target = None
        if top and clip.training:
            if clip.streaming:
                target, new["line"] = _delay(carry["line"], clip.frame_target(labels, sample_weight, s))
                new["targets"] = keras.tree.map_structure(lambda buf, t: buf.at[s].set(t), carry["targets"], target)
            else:
                target = clip.frame_target(labels, sample_weight, ops.maximum(s - rule.latency, 0))
        results = {}
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
                    (lambda out: clip.top_loss(target, out) / num_replicas) if k == depth - 1 else None)
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
            # A window emptied by an update (`open` False) starts again from this step's gradients:
            # one select in the same fused add, instead of zero-filling the sums from the host.
            is_open = carry["open"]
            new["acc"] = {k: [ops.where(is_open, a + ops.cast(d, a.dtype), ops.cast(d, a.dtype))
                              for a, d in zip(carry["acc"][k], results[k]["grads"], strict=True)]
                          for k in group.units}
            new["counts"] = {k: ops.where(is_open, carry["counts"][k], 0.0) + ops.mean(ops.cast(
                steps >= rule.first_counted_step(k, depth), "float32")) for k in group.units}
            new["open"] = ops.ones((), "bool")
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

    # Under data x depth, once per replica of the group's column, each on its clips (`core.replicas`).
    function = step if num_replicas == 1 else replicas.per_replica(step, group)
    return GroupStep(function, spare_pieces(group), group.device)


def init_function(stages, clip: Clip, group: Group, batch_size: int, num_frames: int, activation_shapes,
                  target_spec=None) -> Callable:
    """The group's `(carry, inbox)` before the first frame, made on its device: `init(params, states)`.

    `target_spec`: with `clip.streaming`, one frame's target structure (shapes and dtypes,
    without the batch axis' size changing), for the delay line and the recorded targets.
    """
    depth = len(stages)
    dtype = stages[0].compute_dtype
    top = depth - 1 in group.units

    def init(params, states):
        carry = {"s": jnp.zeros((), jnp.int32), "steps": jnp.zeros((batch_size,), jnp.int32),
                 "pieces": {name: jnp.zeros(shape_of(name, batch_size, activation_shapes), dtype)
                            for name in group.keeps},
                 "states": {k: list(states[k]) for k in group.units}}
        if clip.training:
            carry["acc"] = {k: [jnp.zeros_like(p) for p in params[k]] for k in group.units}
            carry["counts"] = {k: jnp.zeros((), jnp.float32) for k in group.units}
            carry["open"] = jnp.ones((), bool)  # False once an update has emptied the window
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
            if clip.training and clip.streaming:
                carry["line"] = keras.tree.map_structure(
                    lambda t: jnp.zeros((clip.rule.latency,) + t.shape, t.dtype), target_spec) \
                    if clip.rule.latency else ()
                carry["targets"] = keras.tree.map_structure(
                    lambda t: jnp.zeros((num_frames,) + t.shape, t.dtype), target_spec)
        inbox = {name: jnp.zeros(shape_of(name, batch_size, activation_shapes), dtype)
                 for name in group.reads if name not in group.keeps}
        return carry, inbox

    return jax.jit(init)


@jax.jit
def _window(sums: dict, counts: dict, is_open):
    return (jax.tree.map(lambda a: jnp.where(is_open, a, jnp.zeros_like(a)), sums),
            jax.tree.map(lambda c: jnp.where(is_open, c, jnp.zeros_like(c)), counts))


def window(carry: dict) -> tuple[dict, dict]:
    """A group's open window: per unit its gradient sums and its count (zeros once an update emptied it)."""
    return _window(carry["acc"], carry["counts"], carry["open"])


@jax.jit
def _means(sums: dict, counts: dict, is_open) -> tuple[dict, dict]:
    counts = {k: jnp.where(is_open, c, jnp.zeros_like(c)) for k, c in counts.items()}
    return ({k: [jnp.where(is_open, a, jnp.zeros_like(a)) / jnp.maximum(counts[k], 1e-12).astype(a.dtype)
                 for a in unit] for k, unit in sums.items()},
            {k: c > 0 for k, c in counts.items()})


def window_means(carry: dict) -> tuple[dict, dict]:
    """A group's window: per unit its gradients' mean over its counted steps, and whether it counted any."""
    return _means(carry["acc"], carry["counts"], carry["open"])


def window_gradients(carries: Sequence[dict], depth: int) -> tuple[list, list]:
    """Per unit, the mean of its gradients over its counted steps in the open window, and whether it
    counted any, on its group's device (one compiled call per group)."""
    gradients, counted = [None] * depth, [None] * depth
    for carry in carries:
        means, any_counted = window_means(carry)
        for k in means:
            gradients[k], counted[k] = means[k], any_counted[k]
    return gradients, counted
