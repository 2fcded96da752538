"""One long-lived worker thread per device group, the groups talking through mailboxes.

How the per-device programs are driven (`core.programs` for the rules, `parallel.gpipe_programs`
for the GPipe baseline): worker g runs its group's own loop, calling its compiled steps in
order. What another group needs is handed over as arrays that JAX has only *queued* (a step's
outputs, or a `device_put` of them to the reader's device), so a worker blocks only on Python
handles, never on a device: each waits for its neighbours' dispatches, not for their results,
and no barrier joins the groups per step.

    boxes.put((g, h), pieces)     worker g, after queueing its step and the copies to group h
    boxes.get((g, h))             worker h, before queueing the step that reads them

A failing worker aborts the others (each `get` then raises `Aborted`), and `run` raises the
first real error once every worker has stopped.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import Callable

import jax

_ABORT = object()
_POOLS: dict[int, concurrent.futures.ThreadPoolExecutor] = {}


class Aborted(Exception):
    """Another worker failed: this one stops too."""


class Mailboxes:
    """FIFO queues between workers, keyed by any hashable (e.g. `(sender, receiver)`), made on first use."""

    def __init__(self):
        self._boxes: dict = {}
        self._lock = threading.Lock()
        self._aborted = False

    def _box(self, key) -> queue.SimpleQueue:
        with self._lock:
            if key not in self._boxes:
                self._boxes[key] = queue.SimpleQueue()
                if self._aborted:
                    self._boxes[key].put(_ABORT)
            return self._boxes[key]

    def put(self, key, value) -> None:
        self._box(key).put(value)

    def get(self, key):
        """The next value put under `key`, waiting for it.

        Raises:
          Aborted: when a worker failed meanwhile.
        """
        value = self._box(key).get()
        if value is _ABORT:
            raise Aborted()
        return value

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            boxes = list(self._boxes.values())
        for box in boxes:
            box.put(_ABORT)


def pool(num_workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """A thread pool of `num_workers` threads, made once per size and kept."""
    if num_workers not in _POOLS:
        _POOLS[num_workers] = concurrent.futures.ThreadPoolExecutor(num_workers, thread_name_prefix="sideways_group")
    return _POOLS[num_workers]


def run(num_groups: int, work: Callable[[int, Mailboxes], object], precision=None) -> list:
    """`work(g, mailboxes)` for every group g, each on its own thread; their results in group order.

    Args:
      num_groups: how many workers.
      work: a group's whole loop; it reads and writes the shared `Mailboxes`.
      precision: JAX's default matmul precision for the workers (JAX's setting is per thread, so
        the caller's is passed on); None leaves JAX's default.

    Raises:
      The first error a worker raised (not counting the aborts it caused in the others).
    """
    boxes = Mailboxes()

    def guarded(g):
        try:
            if precision is None:
                return work(g, boxes)
            with jax.default_matmul_precision(precision):
                return work(g, boxes)
        except BaseException:
            boxes.abort()
            raise

    futures = [pool(num_groups).submit(guarded, g) for g in range(num_groups)]
    concurrent.futures.wait(futures)
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, Aborted)), errors[0])
    return [f.result() for f in futures]
