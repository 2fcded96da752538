"""Where the units of a pipeline run: what a computation step asks of its placement.

A step computes every unit's work and adds its parameter gradients to the accumulators
(`run_units`), moves what one unit produced to the units that read it (`share`), and at the end
of the frame loop collects each unit's results from the device that computed them (`gather`,
`unit_accumulators`). `wrap` puts the whole frame loop around that. Inside the loop the
accumulators are in the placement's own form (`carry_accumulators`).

`Placement` is the single-program case: every unit runs in the same program, one after the other
in program order, each in its backend scope (`backends.unit_scope`: under TensorFlow `tf.device`,
so units on different devices still run concurrently; under JAX a name scope). Sharing and
gathering are then the identity.

Under JAX, `devices=` gives the subclass of the JAX backend (`backends.jax_stages`): one compiled
program over a "stage" mesh axis in which each device runs only its own group of units.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Optional, Sequence

import keras
from keras import ops

from sideways_tf.core import backends

UnitWork = Callable[[int], dict]
"""`work(k)`: unit k's results at one step, a dict of tensors (and lists of tensors)."""


def groups_of(devices: Sequence[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The distinct devices in order of first use, and each unit's index into them.

    `["gpu:0", "gpu:0", "gpu:1"]` -> `(("gpu:0", "gpu:1"), (0, 0, 1))`.
    """
    distinct = tuple(dict.fromkeys(devices))
    return distinct, tuple(distinct.index(d) for d in devices)


def add_gradients(accumulators: Sequence, gradients: Sequence) -> list:
    """`accumulators + gradients`, parameter by parameter, in the accumulators' dtypes."""
    return [a + ops.cast(g, a.dtype) for a, g in zip(accumulators, gradients, strict=True)]


class Placement:
    """Every unit in one program, in its backend scope (`devices[k]` under TensorFlow).

    Args:
      devices: None, or one device string per unit.
    """

    def __init__(self, devices: Optional[Sequence[str]] = None):
        self.devices = None if devices is None else list(devices)

    def run_units(self, work: UnitWork, idle: UnitWork, depth: int, accumulators=None) -> tuple[list[dict], object]:
        """`[work(k) for k in range(depth)]`, each in unit k's scope, and the gradients accumulated.

        Args:
          work: unit k's work at this step; with `accumulators`, its entry `"grads"` (one per
            parameter of the unit) is added to them and left out of the results.
          idle: what stands for unit k's results on a device that does not run it: the values it
            passes on unchanged (its state); every other entry is zeros. Unused here, where every
            unit runs.
          depth: D.
          accumulators: None, or the accumulators in this placement's form (`carry_accumulators`).

        Returns:
          `(results per unit, accumulators)`.
        """
        del idle
        backend = backends.current()
        results, accumulators = [], None if accumulators is None else list(accumulators)
        for k in range(depth):
            with backend.unit_scope(k, self.devices):
                result = work(k)
                if accumulators is not None:
                    accumulators[k] = add_gradients(accumulators[k], result.pop("grads"))
                results.append(result)
        return results, accumulators

    def carry_accumulators(self, accumulators: Sequence[Sequence]):
        """Per-unit accumulators -> the form the frame loop carries (here: a list of lists)."""
        return [list(unit) for unit in accumulators]

    def unit_accumulators(self, carried) -> list[list]:
        """The carried form -> per unit, per parameter, as its own device holds them, on every device."""
        return [list(unit) for unit in carried]

    def share(self, value, producer: int, readers: Sequence[int]):
        """`value`, made by unit `producer`, where units `readers` run (here: already there)."""
        del producer, readers
        return value

    def gather(self, value, unit: int):
        """`value`, held valid by the device of `unit`, on every device (here: already)."""
        del unit
        return value

    def wrap(self, fn: Callable) -> Callable:
        """`fn` (the frame loop) run by this placement (here: as it is)."""
        return fn

    def total(self, values: Sequence):
        """The sum of scalars that units computed (each where its unit runs), on one device."""
        return ops.sum(ops.stack(list(values)))

    def creating(self, k: int) -> ContextManager:
        """The context unit k's variables are made in (here: wherever Keras makes them)."""
        del k
        return contextlib.nullcontext()

    def build_optimizer(self, optimizer, variables: Sequence) -> None:
        """Builds `optimizer` for `variables` before Keras does, where its slots must be made
        elsewhere (here: nothing to do; Keras builds it)."""

    def settle(self, optimizer, variables: Sequence) -> None:
        """Puts each unit's variables (and its optimizer slots) where its unit runs, before a step
        (here: nothing to do; `ProgramsPlacement` moves them to their groups' devices)."""

    def apply_gradients(self, optimizer, gradients: Sequence, variables: Sequence) -> None:
        """`optimizer.apply(gradients, variables)`, with each unit's gradients where its unit runs."""
        optimizer.apply(list(gradients), variables)

    def optimizer_step(self, optimizer, variables: Sequence, values: Sequence, optimizer_state: Sequence,
                       gradients: Sequence, keep: Sequence, hold=None) -> tuple[list, list]:
        """One optimizer step on explicit values (JAX: `keras.StatelessScope`).

        Args:
          optimizer: a Keras optimizer.
          variables, values, gradients: the trainable variables, their values, their gradients.
          optimizer_state: the values of `optimizer.variables`.
          keep: None (every variable updated), or one bool scalar per variable: keep its old value.
          hold: None, or a bool scalar: the step was refused. One program holds a refused step in
            its traced checks (`jax_finite.hold`), so it is not read here; per-device programs
            (`ProgramsPlacement`) hold it inside their donated update.

        Returns:
          `(new values, new optimizer_state)`.
        """
        mapping = list(zip(variables, values, strict=True)) + list(zip(optimizer.variables, optimizer_state,
                                                                      strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            optimizer.apply(list(gradients), variables)
        new = [scope.get_current_value(v) for v in variables]
        if keep is not None:
            new = [ops.where(k, old, value) for old, value, k in zip(values, new, keep, strict=True)]
        return new, [scope.get_current_value(v) for v in optimizer.variables]
