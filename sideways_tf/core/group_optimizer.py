"""The optimizer's step on units over devices: one compiled update per device group, on its devices.

Given arrays that live on several devices, Keras' optimizer runs op by op: an Adam step of an
8-unit VGG dispatches several hundred small operations from Python (measured: 0.23 s per update
on CPU host devices, most of a streaming step with `update_every=1`). Here each group's update
is one `jax.jit` call on that group's devices: Keras' `optimizer.apply` on the group's own
variables (Keras' optimizers update any subset of the variables they were built on), traced in
a `keras.StatelessScope` that maps the group's parameters and the optimizer variables it
touches. Which optimizer variables those are (the group's slots, the iteration counter, a
learning-rate variable) is read once from a trace of the step: the ones it writes, and the ones
that no group writes. Every group counts the same step, so the iteration counter is taken from
the first group. A `global_clipnorm` is applied before, from the groups' squared norms.

Where the caller hands over the values it passes (`apply` with `hold`: a clip's update, whose
checks are all known before it), each group's parameters and slots are donated: the new values
take the old ones' memory (as in Keras' own compiled step), and a refused step is held inside
the update rather than by keeping the old values alive.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import keras
from keras import ops


def _apply(optimizer, variables, optimizer_variables, values, optimizer_state, gradients):
    """`optimizer.apply(gradients, variables)` on explicit values; returns the new values of both lists."""
    mapping = list(zip(variables, values, strict=True)) + list(zip(optimizer_variables, optimizer_state, strict=True))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        optimizer.apply(list(gradients), list(variables))
    return ([scope.get_current_value(v) for v in variables],
            [scope.get_current_value(v) for v in optimizer_variables])


def written(optimizer, variables: Sequence, values: Sequence, optimizer_state: Sequence) -> set[int]:
    """The indices of `optimizer.variables` that a step of `variables` writes (read from a trace)."""
    def probe(values, state, gradients):
        return _apply(optimizer, variables, optimizer.variables, values, state, gradients)[1]

    spec = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in values]
    closed = jax.make_jaxpr(probe)(spec, [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in optimizer_state], spec)
    inputs = closed.jaxpr.invars[len(values):len(values) + len(optimizer_state)]
    return {j for j, (out, given) in enumerate(zip(closed.jaxpr.outvars, inputs, strict=True)) if out is not given}


class GroupOptimizer:
    """An optimizer's step over variables that live on the groups' devices.

    Args:
      optimizer: a built Keras optimizer (built on `variables` or a superset).
      variables: the model's trainable variables.
      group_of: per variable, its group's index.
      shardings: per group, where its parameters live (a JAX sharding).
    """

    def __init__(self, optimizer, variables: Sequence, group_of: Sequence[int], shardings: Sequence):
        self.optimizer = optimizer
        self.variables = list(variables)
        self.group_of = list(group_of)
        self.members = [[i for i, g in enumerate(group_of) if g == group] for group in range(len(shardings))]
        self.shardings = list(shardings)
        self._steps: dict = {}
        self._touched: dict = {}
        self._writes = None

    def step(self, g: int, values: Sequence, optimizer_state: Sequence,
             donated: bool = False) -> tuple[list[int], Callable]:
        """Group g's touched optimizer variables (indices) and its compiled step (made once).

        `step(values_g, touched_state, gradients_g, keep_g, hold) -> (values_g, touched_state)`, with
        the group's variables in `members[g]` order; `hold` (a bool scalar) keeps every old value and
        slot. `values` and `optimizer_state` (all of them) give the shapes to trace with. `donated`:
        the step takes over the memory of `values_g` and `touched_state`.
        """
        if (g, donated) not in self._steps:
            opt_vars = self.optimizer.variables
            self._learn_writes(values, optimizer_state)
            anyone = set().union(*self._writes)
            touched = sorted(self._writes[g] | (set(range(len(opt_vars))) - anyone))
            variables = [self.variables[i] for i in self.members[g]]
            chosen = [opt_vars[j] for j in touched]

            def step(values, state, gradients, keep, hold):
                new_values, new_state = _apply(self.optimizer, variables, chosen, values, state, gradients)
                return ([ops.where(k | hold, old, new) for k, old, new in zip(keep, values, new_values, strict=True)],
                        [ops.where(hold, old, new) for old, new in zip(state, new_state, strict=True)])

            self._touched[g] = touched
            self._steps[g, donated] = (touched, jax.jit(step, donate_argnums=(0, 1) if donated else ()))
        return self._steps[g, donated]

    def _learn_writes(self, values: Sequence, optimizer_state: Sequence) -> None:
        if self._writes is None:
            self._writes = [written(self.optimizer, [self.variables[i] for i in members],
                                    [values[i] for i in members], optimizer_state)
                            for members in self.members]

    def owners(self, values: Sequence, optimizer_state: Sequence) -> dict[int, int]:
        """`{index in optimizer.variables: group}` for the optimizer variables (slots) that exactly
        one group's step writes; the shared ones (the iteration counter) are left out."""
        self._learn_writes(values, optimizer_state)
        groups_writing: dict[int, list[int]] = {}
        for g, writes in enumerate(self._writes):
            for j in writes:
                groups_writing.setdefault(j, []).append(g)
        return {j: gs[0] for j, gs in groups_writing.items() if len(gs) == 1}

    def merge(self, optimizer_state: Sequence, group_states: dict) -> list:
        """`optimizer_state` with each group's touched values (`group_states[g]`) put back; a variable
        that several groups touch (the iteration counter) takes the first group's."""
        merged, done = list(optimizer_state), set()
        for g in sorted(group_states):
            for j, value in zip(self._touched[g], group_states[g], strict=True):
                if j not in done:
                    merged[j] = value
                    done.add(j)
        return merged

    def apply(self, values: Sequence, optimizer_state: Sequence, gradients: Sequence, keep: Sequence,
              hold=None):
        """One step: `(values, optimizer_state)` after it (each group's on its own devices).

        Args:
          values, gradients: one per variable.
          optimizer_state: the values of `optimizer.variables`.
          keep: one bool scalar per variable: leave it unchanged (its unit did not count).
          hold: None, or a bool scalar: the step was refused (a check failed), keep every old value
            and slot. Given, the groups' steps take over the memory of `values` and of the slots
            they update (the caller must not read them afterwards).
        """
        clip = self.optimizer.global_clipnorm
        if clip:
            squares = [jax.device_put(jnp.sum(jnp.square(jnp.asarray(g, jnp.float32))), self.shardings[0])
                       for g in gradients]
            norm = jnp.sqrt(sum(squares))
            scale = clip * jnp.minimum(1.0 / norm, 1.0 / clip) + (norm - norm)  # NaN where the norm is not finite
            gradients = [g * jax.device_put(scale, self.shardings[self.group_of[i]]).astype(g.dtype)
                         for i, g in enumerate(gradients)]
        new_values, group_states = list(values), {}
        self.optimizer.global_clipnorm = None  # applied above (also while the steps are traced)
        try:
            calls = {}  # every group's arguments first: a value that several groups read (the iteration
            for g, members in enumerate(self.members):  # counter) is copied before one of them takes it over
                if members:
                    touched, step = self.step(g, values, optimizer_state, donated=hold is not None)
                    calls[g] = step, jax.device_put(
                        ([values[i] for i in members], [optimizer_state[j] for j in touched],
                         [gradients[i] for i in members], [jnp.asarray(keep[i], bool) for i in members],
                         jnp.asarray(False if hold is None else hold, bool)), self.shardings[g])
            for g, (step, args) in calls.items():
                out_values, group_states[g] = step(*args)
                for i, value in zip(self.members[g], out_values, strict=True):
                    new_values[i] = value
        finally:
            self.optimizer.global_clipnorm = clip
        return new_values, self.merge(optimizer_state, group_states)
