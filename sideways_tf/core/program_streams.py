"""A chunk of streams on per-device programs: restarts, updates every L frames, the pipeline carried on.

The same loop as `episode.train_episode` with a `Stream`, `starts` and an `Updater`, on the
groups of `core.programs`: each group's step restarts its slots where a new video begins and the
top group keeps the targets in flight (`core.group_steps`, `Clip.streaming`). An update is a
point where every group has finished the same frame, so the frames run in segments that end
after each update step (`(stream step + 1) % L == 0`); between two segments the host applies the
optimizer to each unit's window (`Updater.apply`, which runs op by op on the arrays of each
group's own device) and empties the windows, while the pieces of the segment's last frame wait
in the groups' inboxes. With `update_every = 1` that is a segment per frame.

A `Stream` is the single program's form: the carries start from it (`resume`) and return to it
(`export`), so a stateful model keeps its streams across batches as it does on one device. The
gradient message a unit receives is the sum of its pieces `d{k+1}` and `s{k+2}`, which is what
`Stream.pipe.gradients` holds; it resumes as `d{k+1}` with `s{k+2}` zero.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sideways_tf.core import episode, pipeline, replicas
from sideways_tf.core.group_steps import Clip, window, window_gradients, window_means
from sideways_tf.core.programs import Prepared, ProgramsPlacement, batch_major

# What `resume` puts into a fresh carry from the stream.
RESUMED = ("steps", "pieces", "acc", "counts", "open", "line")


def train_stream(place: ProgramsPlacement, stages, clip: Clip, params: Sequence[Sequence],
                 states: Sequence[Sequence], video, labels, sample_weight, activation_shapes,
                 stream: Optional[episode.Stream] = None, starts=None,
                 updater: Optional[episode.Updater] = None, optimizer_state=(),
                 flush: bool = True) -> episode.EpisodeResult:
    """`episode.train_episode` of a chunk of streams, each unit on its group's device.

    Args:
      place: the placement.
      stages, params, states, video, labels, sample_weight, activation_shapes: as in
        `ProgramsPlacement.prepare` (`clip.streaming` is True).
      stream, starts, updater, optimizer_state, flush: as in `episode.train_episode`.

    Returns:
      An `episode.EpisodeResult`; `stream` reads once from the device where the stream stands.
    """
    depth = len(stages)
    ready = place.prepare(stages, clip, params, states, video, [tuple(s) for s in activation_shapes], labels,
                          sample_weight, starts)
    first_step = 0
    if stream is not None:
        resume(ready, stream)
        first_step = int(stream.step)
    num_frames = ready.num_frames
    params = [list(p) for p in params]
    grouped = None
    if updater is not None and updater.optimizer is not None and not updater.optimizer.global_clipnorm:
        grouped = place.group_optimizer(updater.optimizer, updater.variables)
    if grouped is not None:  # each group updates itself after its update steps, in its worker
        own = GroupUpdates(ready, grouped, updater.variables, params, optimizer_state)

        def after(g, s):
            if (first_step + s + 1) % updater.every == 0:
                own.update(g)

        place.run(ready, 0, num_frames, keep_last=True, after=after)
        gradients, counted = window_gradients(single(ready), depth)
        if flush and any(bool(c) for c in counted):
            for g in range(len(ready.groups)):
                own.update(g)
        params, optimizer_state = own.result(depth, optimizer_state)
    else:  # segments that end after each update step; the host updates every group between two
        updates = {s + 1 for s in range(num_frames)
                   if updater is not None and (first_step + s + 1) % updater.every == 0}
        first = 0
        for end in sorted(updates | {num_frames}):
            place.run(ready, first, end, keep_last=True)
            if end in updates:
                params, optimizer_state = update(ready, updater, params, optimizer_state, depth)
            first = end
        gradients, counted = window_gradients(single(ready), depth)
        if updater is not None and flush and any(bool(c) for c in counted):
            params, optimizer_state = update(ready, updater, params, optimizer_state, depth)
    carries = single(ready)
    new_states = [None] * depth
    for carry in carries:
        for k, value in carry["states"].items():
            new_states[k] = value
    top = carries[ready.place.unit_group[depth - 1]]
    return episode.EpisodeResult(*ready.place.home((
        gradients,
        new_states,
        top["loss_sum"] / jnp.maximum(top["loss_count"], 1.0),
        batch_major(top["outputs"]),
        jax.tree.map(batch_major, top["targets"]),
        batch_major(top["valid"]),
        export(ready, clip.rule, depth, first_step + num_frames),
        params,
        optimizer_state,
    )))


class GroupUpdates:
    """The optimizer's updates of a stream's groups, each group's run by its own worker.

    Group g's update reads only its own window and parameters (`GroupOptimizer.step`: its
    variables and the optimizer variables it touches), so it needs no other group: its worker
    dispatches it right after the update step, and the next frame's step reads the new values.

    Args:
      ready: the prepared chunk.
      grouped: the optimizer's per-group steps.
      variables: the trainable variables, in the optimizer state's order.
      params: per stage, the values before the chunk.
      optimizer_state: the values of the optimizer's variables before the chunk.
    """

    def __init__(self, ready: Prepared, grouped, variables, params, optimizer_state):
        place = ready.place
        self.ready, self.grouped = ready, grouped
        self.where = [[place.unit_position(variables[i]) for i in members] for members in grouped.members]
        values = [params[k][p] for k, p in (place.unit_position(v) for v in variables)]
        self.states = {}
        for g, members in enumerate(grouped.members):
            if members:
                touched, _ = grouped.step(g, values, optimizer_state)
                sharding = ready.groups[g].replicated
                self.states[g] = jax.device_put([optimizer_state[j] for j in touched], sharding)

    def update(self, g: int) -> None:
        """Applies group g's window (its units that counted none keep their values) and empties it."""
        if g not in self.states:
            return
        ready = self.ready
        carry = ready.carries[g]
        means, counted = window_means(replicas.merged(carry, ready.place.replicas))
        _, step = self.grouped.step(g, None, None)
        mine = {k: list(v) for k, v in ready.params[g].items()}
        values, self.states[g] = step([mine[k][p] for k, p in self.where[g]], self.states[g],
                                      [means[k][p] for k, p in self.where[g]],
                                      [jnp.logical_not(counted[k]) for k, _ in self.where[g]], False)
        for (k, p), value in zip(self.where[g], values, strict=True):
            mine[k][p] = value
        ready.params[g] = mine
        # A new flag each time: the step donates its carry.
        ready.carries[g] = {**carry, "open": jax.device_put(np.zeros((), bool), ready.groups[g].replicated)}

    def result(self, depth: int, optimizer_state) -> tuple[list, list]:
        """`(params per stage, optimizer_state)` after the chunk."""
        params = [None] * depth
        for mine in self.ready.params:
            for k, values in mine.items():
                params[k] = list(values)
        return params, self.grouped.merge(optimizer_state, self.states)


def update(ready: Prepared, updater: episode.Updater, params: list, optimizer_state, depth: int):
    """Applies each unit's window mean (`Updater.apply`), empties the windows, hands the groups their new values.

    Returns:
      `(params per stage, optimizer_state)` after the update.
    """
    params, optimizer_state = updater.apply(params, optimizer_state,
                                            *ready.place.home(window_gradients(single(ready), depth)))
    for g, group in enumerate(ready.groups):
        ready.carries[g] = {**ready.carries[g], "open": jax.device_put(jnp.zeros((), bool), group.replicated)}
        ready.params[g] = jax.device_put({k: list(params[k]) for k in group.units}, group.replicated)
    return [list(p) for p in params], optimizer_state


def resume(ready: Prepared, stream: episode.Stream) -> None:
    """Puts `stream` (the single program's form) into the groups' fresh carries and inboxes."""
    pipe = stream.pipe
    for g, group in enumerate(ready.groups):
        carry = dict(ready.carries[g])
        values = {}
        for name in group.reads:
            kind, k = name[0], int(name[1:])
            if kind == "h":
                value = pipe.activations[k]
            elif kind == "d":
                value = pipe.gradients[k - 1]
            else:  # already summed into d{k-1}'s message
                value = jnp.zeros_like(pipe.activations[k - 2])
            # A copy: the steps donate their inbox and carry, and the stream's arrays stay the caller's.
            values[name] = jax.device_put(value, group.batched, may_alias=False)
        carry["steps"] = jax.device_put(pipe.steps, group.batched)
        carry["pieces"] = {name: values[name] for name in group.keeps}
        ready.inboxes[g].update({name: values[name] for name in group.reads if name not in group.keeps})
        carry["acc"] = jax.device_put({k: list(stream.accumulators[k]) for k in group.units}, group.replicated)
        carry["counts"] = jax.device_put({k: stream.counts[k] for k in group.units}, group.replicated)
        carry["open"] = jax.device_put(jnp.ones((), bool), group.replicated)
        if "line" in carry:
            carry["line"] = jax.device_put(stream.targets, group.replicated)
        # Under data x depth: each replica starts from its share of the stream's window (`replicas.spread`).
        ready.carries[g] = {**carry, **replicas.spread({key: carry[key] for key in RESUMED if key in carry}, group)}


def export(ready: Prepared, rule, depth: int, step: int) -> episode.Stream:
    """The groups' carries and inboxes after a segment as an `episode.Stream` (each part on its device)."""
    held, steps = {}, {}
    for g, group in enumerate(ready.groups):
        got = {**ready.carries[g]["pieces"], **ready.inboxes[g]}
        for k in group.units:
            held[k], steps[k] = got, ready.carries[g]["steps"]
    activations = tuple(held[k + 1][f"h{k}"] for k in range(depth - 1))
    gradients = tuple(pipeline.incoming_message(k, rule, depth, steps[k], held[k][f"d{k + 1}"],
                                                held[k].get(f"s{k + 2}")) for k in range(depth - 1))
    top = ready.carries[ready.place.unit_group[depth - 1]]
    accumulators, counts = [None] * depth, [None] * depth
    for carry in single(ready):
        sums, window_counts = window(carry)
        for k in sums:
            accumulators[k], counts[k] = sums[k], window_counts[k]
    return episode.Stream(pipe=pipeline.PipelineState(steps=top["steps"], activations=activations,
                                                      gradients=gradients),
                          accumulators=accumulators, counts=counts, step=jnp.asarray(step, jnp.int32),
                          targets=top.get("line", ()))


def single(ready: Prepared) -> list[dict]:
    """The groups' carries in the single-device form (`replicas.merged`: the replicas' windows and states as one)."""
    return [replicas.merged(carry, ready.place.replicas) for carry in ready.carries]

