"""How a prepared clip's frames are dispatched to the device groups' compiled steps (`core.programs`).

    dispatch="workers"   a worker thread per group runs its own frame loop (`core.workers`): it
                         calls its step for frame s once the pieces it reads from frame s - 1
                         have been queued to it, and at most `AHEAD` frames ahead of its device;
                         a sender thread per group queues the copies of its pieces (`SENDERS`)
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

DISPATCH = ("workers", "threads", "plain")

# How many frames a worker may dispatch ahead of its device. Each step dispatched before the
# previous ones have run holds memory of its own (its outputs, what its transfers read). On two
# H200s, VGG-16 at 224x224, B = 32: each GPU's peak 3.95 / 4.13 GB unbounded, 3.66 / 3.98 at 8,
# 3.51 / 3.74 at 4, 3.42 / 3.65 at 2, 3.32 / 3.50 with every step waited for; at 2 the short
# steps of 112x112 (B = 8, about a millisecond) lost 10-20 % of their speed, at 4 nothing
# beyond the run-to-run noise (`benchmarks/README.md`).
AHEAD = 4

# Whether each group's copies to other devices are queued by a sender thread of its own rather
# than by its worker between two steps. A frame's host work is then split: the worker launches
# step s + 1 while the sender queues the copies of step s's pieces, so a group's host time per
# frame is the longer of the two, not their sum (where a step lasts about a millisecond, the
# host's launches and copies bound the speed-up: `benchmarks/README.md`).
SENDERS = True


def traced(tree) -> bool:
    """Whether `tree` holds a tracer (the clip runs inside a trace)."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


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
    been queued to it and its step for frame s - AHEAD has run. The copies of its pieces to the
    groups that read them (one `device_put` per receiving group) are queued by its sender thread
    (`SENDERS`), in frame order, while it goes on to frame s + 1; a group that also keeps a piece
    it sends queues them itself, before its next step can donate the piece.
    """
    sends: dict = {}
    for (g, name, h), sharding in zip(routes, where, strict=True):
        sends.setdefault(g, {}).setdefault(h, ([], sharding))[0].append(name)
    receives = {h: sorted({g for g, _, h2 in routes if h2 == h}) for h in range(len(ready.groups))}
    inline = {g: not SENDERS or any(name in ready.groups[g].keeps for names, _ in to.values() for name in names)
              for g, to in sends.items()}

    def send(g, out, boxes):
        for h, (names, sharding) in sends[g].items():
            moved = jax.device_put([out[name] for name in names], [sharding] * len(names))
            boxes.put((g, h), dict(zip(names, moved, strict=True)))

    def work(g, boxes):
        def receive():
            for source in receives[g]:
                ready.inboxes[g].update(boxes.get((source, g)))

        sender = None if inline.get(g, True) else workers.sender(g)
        queued, failed = [], []  # the sender's last job; its first error

        def job(out):
            try:
                send(g, out, boxes)
            except BaseException as error:  # the readers stop; this worker raises it
                failed.append(error)
                boxes.abort()

        try:
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
                if g in sends and (s + 1 < last or keep_last):
                    if sender is None:
                        send(g, out, boxes)
                    else:
                        queued[:] = [sender.submit(job, out)]
            if queued:
                queued[0].result()
            if keep_last and last > first:
                receive()
        except workers.Aborted:
            if queued:
                queued[0].result()
            if failed:
                raise failed[0] from None
            raise
        if failed:
            raise failed[0]
        return ready.carries[g]

    workers.run(len(ready.groups), work, precision)
