"""The Keras side of streaming: stream inputs, and the pipeline state kept from one batch to the next.

`SidewaysModel(stateful=True)` treats consecutive batches as consecutive chunks of the same B
streams (`docs/streaming.md`). What the frame loop carries (`episode.Stream`: activations,
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

RESTART_KEY = "restart"
VIDEO_KEY = "video"


def with_batch_size(x, batch_size: int):
    """`x` `[?, ...]` with its first dimension stated to be `batch_size` (a stateful model's, whose kept
    state has it): TensorFlow's graph of a generator's batches leaves it unknown. As it is where it is
    known, None, or where more than one other dimension is unknown."""
    if x is None or x.shape[0] is not None:
        return x
    rest = [-1 if d is None else int(d) for d in x.shape[1:]]
    return x if rest.count(-1) > 1 else ops.reshape(x, (batch_size, *rest))


def video_and_restarts(x):
    """`x` is a clip `[B, T, *F]` or `{"video": clip, "restart": [B] or [B, T] bool}`.

    Returns:
      `(video, starts)`: starts `[B, T]` bool (None without restarts); a `[B]` flag means the
      slot's chunk begins a new video at its first frame.
    """
    if not isinstance(x, dict):
        return ops.convert_to_tensor(x), None
    unknown = sorted(set(x) - {VIDEO_KEY, RESTART_KEY})
    if VIDEO_KEY not in x or unknown:
        hint = ' For tfds-style examples, map them to pairs: dataset.map(lambda e: (e["video"], e["label"])).'
        raise ValueError(
            f"a dict input must have the key {VIDEO_KEY!r} (the clip [B, T, *F]) and optionally {RESTART_KEY!r} "
            f"([B] or [B, T] bool: a new video starts in that slot); got keys {sorted(x)}."
            + (hint if "label" in x else "")
        )
    video = ops.convert_to_tensor(x[VIDEO_KEY])
    if x.get(RESTART_KEY) is None:
        return video, None
    starts = ops.cast(ops.convert_to_tensor(x[RESTART_KEY]), "bool")
    if len(starts.shape) == 1:
        first = ops.expand_dims(ops.arange(ops.shape(video)[1]) == 0, 0)
        starts = ops.logical_and(ops.expand_dims(starts, 1), first)
    if len(starts.shape) != 2:
        raise ValueError(f"`{RESTART_KEY}` must be [B] or [B, T] bool; got shape {tuple(starts.shape)}.")
    return video, starts


def prepare(model, video_shape, labels, has_weights: bool) -> None:
    """Makes `model.stream_state` (a stateful model's) from the first batch's shapes, or checks them.

    Args:
      model: a built `SidewaysModel` with `stateful=True`.
      video_shape: the batches' clip shape `[B, T, *F]` (B must be known).
      labels: the labels (or their spec), with a known shape.
      has_weights: whether batches carry sample weights.

    Raises:
      ValueError: unknown or changed batch size, or labels without a shape.
    """
    batch_size = video_shape[0]
    if batch_size is None:
        raise ValueError("`stateful=True` needs a fixed batch size: batch the dataset with drop_remainder=True "
                         "(or call train_on_batch with arrays).")
    if model.stream_state.created:
        if model.stream_state.batch_size != batch_size:
            raise ValueError(f"`stateful=True` keeps {model.stream_state.batch_size} streams; got a batch of "
                             f"{batch_size}. Every batch of a stateful model must have the same size.")
        return
    if labels is None or getattr(labels, "shape", None) is None:
        raise ValueError("`stateful=True` needs labels with a known shape to keep the targets in flight.")
    label_shape = tuple(None if d is None else int(d) for d in labels.shape)
    label_dtype = keras.backend.standardize_dtype(labels.dtype)
    engine = model.engine
    per_frame, _ = engine.label_layout(keras.KerasTensor(label_shape, label_dtype), None, video_shape[1])
    params, _ = engine.current_values()
    model.stream_state.create(template(engine, params, batch_size, label_shape, label_dtype, has_weights, per_frame,
                                      model.stages[0].compute_dtype))


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
        # Per replica: under a tf.distribute strategy each replica keeps the streams of its share of
        # the batch, so the slots are read and written locally (on_read), never made equal across
        # replicas; TPUStrategy needs the synchronization spelled out (keras-team/keras#20601).
        self.slots = [
            keras.Variable(initializer="zeros", shape=tuple(x.shape), dtype=x.dtype, trainable=False,
                           name=f"stream_{i}", synchronization="on_read", aggregation="only_first_replica")
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
