"""`check_finite` under JAX, on every platform: checks as data, the step held, the error raised on the host.

A host callback that raises stops a program on XLA:CPU, but on GPUs JAX only logs the failure
("jax.debug.callback failed") and the step goes on. So no callback is used: while a training
step is traced, each check adds its flag (`all(isfinite(x))`) and its message to the collector
that `collecting()` opens. `hold` then keeps the step's whole previous state (parameters,
optimizer slots, statistics, metrics) where any flag is False and reports the first failed
check's index in the logs; `raising` wraps the compiled train function so that, after each
call, that index turns into `FloatingPointError(message)` on the host. The check reads one
integer per step back from the device (a synchronisation, as any check that must stop a step).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import jax
import jax.numpy as jnp

LOG_KEY = "_check_finite_failed"
_COLLECTORS: list[list] = []


@contextlib.contextmanager
def collecting() -> Iterator[list]:
    """Collects `(flag, message)` of every `check` traced inside the block."""
    checks: list = []
    _COLLECTORS.append(checks)
    try:
        yield checks
    finally:
        _COLLECTORS.pop()


def check(x, message: str):
    """`x`; inside `collecting()` its finiteness becomes a flag of the step.

    Raises:
      RuntimeError: outside a collecting step (a check nobody would read is a silent one).
    """
    if not _COLLECTORS:
        raise RuntimeError(f"check_finite outside a training step cannot stop anything: {message}")
    _COLLECTORS[-1].append((jnp.all(jnp.isfinite(x)), message))
    return x


def refused():
    """None outside a collecting step or before its first check; else a bool scalar: a check so far
    failed, so the step must keep its old state (an update that takes over the old values' memory
    holds them itself with it). Eager flags may live on several devices: gathered on the first's."""
    if not _COLLECTORS or not _COLLECTORS[-1]:
        return None
    flags = [flag for flag, _ in _COLLECTORS[-1]]
    if not any(isinstance(flag, jax.core.Tracer) for flag in flags):
        device = next(iter(flags[0].devices()))
        flags = [jax.device_put(flag, device) for flag in flags]
    return jnp.logical_not(jnp.all(jnp.stack(flags)))


def _deleted(x) -> bool:
    return isinstance(x, jax.Array) and x.is_deleted()


def hold(logs: dict, new_state, old_state, checks: list) -> tuple[dict, object]:
    """The step's logs and state, with the old state kept wherever a check failed.

    Args:
      logs: the step's logs.
      new_state, old_state: the state after and before the step (same structure).
      checks: what `collecting()` gathered.

    Returns:
      `(logs with LOG_KEY: the first failed check's index or -1, state)`.
    """
    if not checks:
        return logs, new_state
    if not any(isinstance(flag, jax.core.Tracer) for flag, _ in checks):
        # An eager step (units on one program per device): the flags live on several devices.
        failed = next((i for i, (flag, _) in enumerate(checks) if not bool(flag)), -1)
        if failed < 0:
            return {**logs, LOG_KEY: failed}, new_state
        # What the optimizer's update took over (donated) it held itself (`refused`): its new value is the old.
        return {**logs, LOG_KEY: failed}, jax.tree.map(lambda new, old: new if _deleted(old) else old,
                                                       new_state, old_state)
    flags = jnp.stack([flag for flag, _ in checks])
    finite = jnp.all(flags)
    state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, old_state)
    failed = jnp.where(finite, -1, jnp.argmin(flags)).astype(jnp.int32)
    return {**logs, LOG_KEY: failed}, state


def raising(train_function: Callable, messages: Callable[[], list], keep: Callable) -> Callable:
    """`train_function(state, data) -> (logs, state)` that raises `FloatingPointError` when a check failed.

    Args:
      train_function: Keras' compiled train function.
      messages: the messages of the checks, in the order of their flags (read after the call,
        once the step has been traced).
      keep: `keep(state)`, called with the state held from before the failed step, before the
        error is raised (Keras' JAX `fit` detaches the variables' values while it runs).
    """

    def checked(state, data):
        logs, state = train_function(state, data)
        if isinstance(logs, dict) and LOG_KEY in logs:
            logs = dict(logs)
            failed = int(logs.pop(LOG_KEY))
            if failed >= 0:
                keep(state)
                raise FloatingPointError(messages()[failed])
        return logs, state

    checked.finite_checked = True
    return checked
