"""Aligning labels with the pipeline's outputs: per-clip labels `[B, ...]` or per-frame `[B, T, ...]`."""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf


def is_per_frame(label_shape: Sequence, output_shape: Sequence, num_frames, integer: bool = False) -> bool:
    """Whether labels of `label_shape` are per frame rather than per clip.

    Per-clip labels are `[B]` (sparse) or `[B, *O]` (dense, shaped like one prediction
    `[B, *O]`); per-frame labels are `[B, T]` + the same. A label of the prediction's rank whose
    second axis has length T is per frame, unless it also has exactly the prediction's shape
    (`[B, C]` with `C == T`): then integer labels are read as sparse per-frame labels and
    float labels as one dense (one-hot) label per clip.

    Args:
      label_shape: the labels' static shape, batch axis included.
      output_shape: one prediction's static shape, batch axis included.
      num_frames: T (may be None when unknown).
      integer: whether the labels have an integer dtype.
    """
    rank, out_rank = len(label_shape), len(output_shape)
    if rank == out_rank + 1:
        return True
    if rank == out_rank and rank >= 2 and num_frames is not None and label_shape[1] == num_frames:
        return integer or tuple(label_shape[1:]) != tuple(output_shape[1:])
    return False


def at_frame(values: Optional[tf.Tensor], index, per_frame: bool) -> Optional[tf.Tensor]:
    """The labels (or sample weights) of frame `index`: `[B, T, ...]` -> `[B, ...]`; per clip unchanged."""
    if values is None or not per_frame:
        return values
    return tf.gather(values, index, axis=1)


def flatten_steps(
    outputs: tf.Tensor,
    labels: tf.Tensor,
    sample_weight: Optional[tf.Tensor],
    labels_per_frame: bool,
    weights_per_frame: bool,
):
    """Pairs every valid prediction with its target for the metrics.

    Args:
      outputs: `[B, T', *O]`, the prediction for frame j at index j.
      labels: `[B, ...]` per clip or `[B, T, ...]` per frame.
      sample_weight: None, `[B]` or `[B, T]`.
      labels_per_frame, weights_per_frame: how to read `labels` and `sample_weight`.

    Returns:
      `(labels, predictions, sample_weight)` with a leading axis of `B * T'`.
    """
    valid = tf.shape(outputs)[1]

    def flat(x, per_frame):
        if x is None:
            return None
        if per_frame:
            x = x[:, :valid]
        else:
            x = tf.repeat(tf.expand_dims(x, 1), valid, axis=1)
        flat_x = tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))
        flat_x.set_shape([None] + list(x.shape[2:]))
        return flat_x

    return flat(labels, labels_per_frame), flat(outputs, True), flat(sample_weight, weights_per_frame)
