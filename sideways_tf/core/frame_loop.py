"""How a prepared clip's frames are dispatched to the device groups' compiled steps (`core.programs`).

    dispatch="workers"   a worker thread per group runs its own frame loop (`core.workers`): it
                         calls its step for frame s once the pieces it reads from frame s - 1
                         have been queued to it, and at most `AHEAD` frames ahead of its device
    dispatch="threads"   a thread per group, joined every frame; the pieces moved in one batched
                         `device_put` (kept for measurement)
    dispatch="plain"     the calling thread calls every group's step in turn (kept for measurement)

Inside a trace (Keras' shape inference) every call stays on the calling thread, which holds it.
"""

from __future__ import annotations

import collections
from typing import Callable, Optional

import jax

from sideways_tf.core import workers
from sideways_tf.core.backends.jax_graphs import traced

DISPATCH = ("workers", "threads", "plain")

# How many frames a worker may dispatch ahead of its device. Each step dispatched before the
# previous ones have run holds memory of its own (its outputs, what its transfers read). On two
# H200s, VGG-16 at 224x224, B = 32: each GPU's peak 3.95 / 4.13 GB unbounded, 3.66 / 3.98 at 8,
# 3.51 / 3.74 at 4, 3.42 / 3.65 at 2, 3.32 / 3.50 with every step waited for; at 2 the short
# steps of 112x112 (B = 8, about a millisecond) lost 10-20 % of their speed, at 4 nothing
# beyond the run-to-run noise (`benchmarks/README.md`).
AHEAD = 4


def run_frames(ready, dispatch: str, first: int, last: int, keep_last: bool = False,
               after: Optional[Callable[[int, int], None]] = None) -> None:
    """Runs frames `first..last-1` of `ready` (a `programs.Prepared`; its carries and inboxes change).

    Args:
      ready: the prepared clip: per group its step, parameters, carry, inbox and inputs.
      dispatch: one of `DISPATCH`.
      first, last: the frames to run.
      keep_last: also move the last frame's pieces into the inboxes (a stream, or a segment that
        another follows); a clip's last pieces are read by no one.
      after: `after(g, s)`, called once group g has dispatched frame s, before it reads frame
        s + 1's inbox.
    """
    groups, carries, inboxes = ready.groups, ready.carries, ready.inboxes
    routes = [(g, name, h) for g, group in enumerate(groups) for name, h in group.sends]
    # One batched device_put per frame, to shardings made once: device_put's own per-call work
    # is most of a short step's host time (separate calls per group cost twice as much).
    where = [groups[h].batched for _, _, h in routes]
    # JAX's precision settings are per thread: the dispatching threads take the caller's.
    precision = jax.config.jax_default_matmul_precision

    def call(g):
        return ready.steps[g](ready.params[g], carries[g], inboxes[g], *ready.inputs[g])

    def call_in_thread(g):
        if precision is None:
            return call(g)
        with jax.default_matmul_precision(precision):
            return call(g)

    on_trace = traced((ready.params, ready.inputs))
    pool = None if on_trace or dispatch == "plain" else workers.pool(len(groups))
    if pool is not None and dispatch == "workers":
        _run_workers(ready, routes, where, call, precision, first, last, keep_last, after)
        return
    for s in range(first, last):
        outs = list(pool.map(call_in_thread, range(len(groups)))) if pool is not None else [
            call(g) for g in range(len(groups))]
        carries[:] = [carry for carry, _ in outs]
        for g in range(len(groups)) if after is not None else ():
            after(g, s)
        if routes and (s + 1 < last or keep_last):
            moved = jax.device_put([outs[g][1][name] for g, name, _ in routes], where)
            for (_, name, h), value in zip(routes, moved, strict=True):
                inboxes[h][name] = value


def _run_workers(ready, routes, where, call: Callable, precision, first: int, last: int,
                 keep_last: bool, after: Optional[Callable] = None) -> None:
    """Frames `first..last-1` with one worker per group, each running its own frame loop.

    Worker g calls its step for frame s as soon as the pieces it reads from frame s - 1 have
    been queued to it and its step for frame s - AHEAD has run, then queues its own pieces to the
    groups that read them, one `device_put` per receiving group.
    """
    sends: dict = {}
    for (g, name, h), sharding in zip(routes, where, strict=True):
        sends.setdefault(g, {}).setdefault(h, ([], sharding))[0].append(name)
    receives = {h: sorted({g for g, _, h2 in routes if h2 == h}) for h in range(len(ready.groups))}

    def work(g, boxes):
        def receive():
            for source in receives[g]:
                ready.inboxes[g].update(boxes.get((source, g)))

        sent = collections.deque()  # the pieces of the frames dispatched and not yet waited for
        for s in range(first, last):
            if s > first:
                receive()
            if len(sent) == AHEAD:  # a piece the group also keeps may have been donated since: done
                jax.block_until_ready([x for x in sent.popleft() if not x.is_deleted()])
            ready.carries[g], out = call(g)
            if out:
                sent.append(list(out.values()))
            if after is not None:
                after(g, s)
            if s + 1 < last or keep_last:
                for h, (names, sharding) in sends.get(g, {}).items():
                    moved = jax.device_put([out[name] for name in names], [sharding] * len(names))
                    boxes.put((g, h), dict(zip(names, moved, strict=True)))
        if keep_last and last > first:
            receive()
        return ready.carries[g]

    workers.run(len(ready.groups), work, precision)
