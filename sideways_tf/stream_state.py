"""Stateful streaming: the pipeline state kept in variables from one batch to the next.

`SidewaysModel(stateful=True)` treats consecutive batches as consecutive chunks of the same B
streams (DESIGN section 6). What the frame loop carries (`episode.Stream`: activations,
messages, per-slot validity counters, the open update window and the targets still in flight)
is stored here between batches, like the states of a stateful Keras RNN. The values are
transient: they are not written to checkpoints (a restored model starts its streams afresh).
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

from sideways_tf.core import episode, targets


class StreamState(keras.layers.Layer):
    """Variables holding an `episode.Stream` between batches.

    Made empty with the model (Keras tracks state only from `__init__`/`build`); `create` makes
    the variables once the batch size and the labels' shape are known.
    """

    def __init__(self, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._pack = None
        self.batch_size = None
        self.slots = []

    @property
    def created(self) -> bool:
        return self._pack is not None

    def create(self, template: episode.Stream) -> None:
        """Makes one zero variable per tensor of `template` (an `episode.Stream`)."""
        # Kept inside a function: an attribute holding the structure itself would be rewrapped
        # by Keras' tracking (dicts become TrackedDicts, another tree node type).
        self._pack = functools.partial(keras.tree.pack_sequence_as, template)
        self.batch_size = int(template.pipe.steps.shape[0])
        self.slots = [
            self.add_weight(shape=tuple(x.shape), dtype=x.dtype, initializer="zeros", trainable=False,
                            name=f"stream_{i}")
            for i, x in enumerate(keras.tree.flatten(template))
        ]
        self.built = True

    def value(self) -> episode.Stream:
        """The stored stream (inside a `keras.StatelessScope`: the scope's values)."""
        return self._pack([ops.convert_to_tensor(v.value) for v in self.slots])

    def assign(self, stream: episode.Stream) -> None:
        for variable, value in zip(self.slots, keras.tree.flatten(stream), strict=True):
            variable.assign(ops.cast(value, variable.dtype))

    def reset(self) -> None:
        """Every stream starts afresh at the next batch."""
        for variable in self.slots:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def save_own_variables(self, store):
        """Nothing is saved: stream state is transient."""

    def load_own_variables(self, store):
        """Nothing is restored: the streams start afresh."""


def template(engine, params_per_stage, batch_size: int, label_shape, label_dtype, weight_per_step: bool,
             labels_per_frame: bool, dtype) -> episode.Stream:
    """An `episode.Stream` of zeros for `batch_size` streams whose labels look like `label_shape`.

    Args:
      engine: the model's `Engine`.
      params_per_stage: per stage, its parameters (for the accumulators' shapes).
      batch_size: B.
      label_shape: the labels' shape (batch axis included; the time axis too when per frame).
      label_dtype: their dtype.
      weight_per_step: whether batches carry sample weights.
      labels_per_frame: whether labels are per frame.
      dtype: the activations' dtype.
    """
    shape = (batch_size,) + tuple(1 if d is None else d for d in label_shape[1:])
    labels = np.zeros(shape, dtype=np.dtype(keras.backend.standardize_dtype(label_dtype)))
    weights = ops.ones((batch_size,), "float32") if weight_per_step else None
    first = targets.frame_target(ops.convert_to_tensor(labels), weights, 0, labels_per_frame, False)
    return episode.fresh_stream(params_per_stage, batch_size, engine.activation_shapes, dtype, first,
                                engine.rule().latency)
