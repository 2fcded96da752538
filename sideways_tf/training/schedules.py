"""Learning-rate schedules of the papers, in optimizer steps."""

from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="sideways_tf")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `learning_rate` over `warmup_steps`, then /10 at each boundary.

    The papers: warm-up to the initial rate at epoch 5, then /10 at epochs 100 and 200.
    """

    def __init__(self, learning_rate: float, warmup_steps: int, boundaries: Sequence[int], factor: float = 0.1):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]
        self.factor = float(factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = ops.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1)) if self.warmup_steps else 1.0
        drops = sum(ops.cast(step >= b, "float32") for b in self.boundaries) if self.boundaries else 0.0
        return self.learning_rate * warmup * ops.power(self.factor, drops)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "boundaries": self.boundaries, "factor": self.factor}


@keras.saving.register_keras_serializable(package="sideways_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over `warmup_steps`, then a cosine from `learning_rate` to 0 at `total_steps`."""

    def __init__(self, learning_rate: float, warmup_steps: int, total_steps: int):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        warmup = ops.minimum(1.0, (step + 1.0) / warm)
        progress = ops.clip((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        return self.learning_rate * ops.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


def make_schedule(kind: str, learning_rate: float, steps_per_epoch: int, warmup_epochs: int,
                  decay_epochs: Sequence[int], epochs: int):
    """The schedule named `kind` (`"paper"`, `"cosine"` or `"constant"`), in steps."""
    if kind == "constant":
        return learning_rate
    warmup = warmup_epochs * steps_per_epoch
    if kind == "paper":
        return WarmupStepDecay(learning_rate, warmup, [e * steps_per_epoch for e in decay_epochs])
    if kind == "cosine":
        return WarmupCosine(learning_rate, warmup, epochs * steps_per_epoch)
    raise ValueError(f"`schedule` must be 'paper', 'cosine' or 'constant'; got {kind!r}.")
